import type { Staple } from '../service/staple.js';
import type { CertRecord } from '../sources/certificates.js';

/**
 * Somewhere a staple must go after it changes (and at start): a file nginx or HAProxy reads, a HAProxy
 * stats socket. Push is idempotent: the runner may push the same staple again after a failure or when the
 * other side restarted.
 */
export interface StapleSink {
  /** Stable, human-readable identity for logs and metrics ("file:/etc/haproxy/{name}.pem.ocsp"). */
  readonly name: string;
  accepts(record: CertRecord, staple: Staple): boolean;
  push(record: CertRecord, staple: Staple): Promise<void>;
  /** Calls `onReset` when the other side lost what it was given (HAProxy restarted): push everything again. */
  watch?(onReset: () => void): () => void;
  /**
   * The certificate is gone (removed from the config, or a learned one dropped): clear what was written
   * for it. `next` is the certificate replacing it under the same name, if any (a renewal).
   */
  remove?(record: CertRecord, next: CertRecord | undefined): Promise<void>;
  close?(): Promise<void>;
}

/**
 * What both HAProxy and a sensible file consumer accept: a good or revoked status (HAProxy refuses unknown),
 * and exactly one SingleResponse (HAProxy matches exactly one CertID).
 */
export function haproxyAcceptable(s: Staple): boolean {
  return (s.status.kind === 'good' || s.status.kind === 'revoked') && s.singleCount === 1;
}

export function filterAccepts(filter: readonly string[] | undefined, record: CertRecord): boolean {
  return !filter || filter.includes(record.name);
}
