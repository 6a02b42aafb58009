import { createHash } from 'node:crypto';
import type { ErrorCode } from '../errors.js';
import { isServable } from '../pki/freshness.js';
import type { CertStatus } from '../pki/response.js';
import type { VerifiedResponse } from '../pki/verify.js';
import type { CertRecord } from '../sources/certificates.js';

/** A verified OCSP response ready to serve, with its constant headers computed once (RFC 5019 §6.2). */
export interface Staple {
  readonly body: Buffer;
  readonly status: CertStatus;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly producedAt: Date;
  readonly fetchedAt: Date;
  readonly singleCount: number;
  readonly etag: string;
  readonly lastModified: string;
  readonly expires: string;
}

export function toStaple(v: VerifiedResponse, fetchedAt: Date): Staple {
  // An exact-size buffer of its own: Buffer.from() would copy into node's shared 8 KiB pool, where every
  // long-lived staple pins the slab it shares with short-lived garbage (about 1.6x the body per staple).
  const body = Buffer.allocUnsafeSlow(v.der.byteLength);
  body.set(v.der);
  return Object.freeze({
    body,
    status: v.status,
    thisUpdate: v.thisUpdate,
    nextUpdate: v.nextUpdate,
    producedAt: v.producedAt,
    fetchedAt,
    singleCount: v.singleCount,
    etag: `"${createHash('sha256').update(body).digest('hex')}"`,
    lastModified: v.thisUpdate.toUTCString(),
    expires: v.nextUpdate.toUTCString(),
  });
}

export type EntryState = 'pending' | 'good' | 'revoked' | 'unknown' | 'failing' | 'not_applicable' | 'expired';

export interface LastError {
  code: ErrorCode;
  message: string;
  at: Date;
}

/** Mutable per-certificate state, owned by Stapler and changed only in synchronous commit steps. */
export interface Entry {
  record: CertRecord;
  /** CertID map keys (SHA-1 and SHA-256) under which requests find this entry. */
  keys: string[];
  staple: Staple | undefined;
  failures: number;
  lastError: LastError | undefined;
  /** Bumped when the record is replaced; a fetch that started under an older generation is discarded. */
  generation: number;
  /**
   * The same status with a SHA-256 CertID, fetched only once a client asked in that form: a response must
   * carry the CertID the request used (RFC 6960 §4.2.1), and nearly every client (nginx, HAProxy, Apache
   * through OpenSSL) uses SHA-1. Memory only; it does not decide the state.
   */
  alt: Staple | undefined;
  altFailures: number;
  /**
   * The state last written to the log. States also change silently with time (a staple ages out), so
   * transitions are logged against this, not against the state just before a commit.
   */
  reported: EntryState;
}

/** The state is derived, never stored: a staple that aged past nextUpdate − margin stops counting by itself. */
export function stateOf(e: Entry, now: Date, marginSeconds: number): EntryState {
  if (!e.record.url) return 'not_applicable';
  if (e.record.leaf.notAfter.getTime() <= now.getTime()) return 'expired';
  const s = servableStaple(e, now, marginSeconds);
  if (s) return s.status.kind;
  return e.failures > 0 ? 'failing' : 'pending';
}

export function servableStaple(e: Entry, now: Date, marginSeconds: number): Staple | undefined {
  const s = e.staple;
  return s && isServable(s.nextUpdate, now, marginSeconds) ? s : undefined;
}

export interface CertificateView {
  name: string;
  source: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  mustStaple: boolean;
  ocspUrl: string | null;
  state: EntryState;
  /** The OCSP certStatus of the held staple (RFC 6960 §4.2.1), times as ISO strings. */
  status: { kind: 'good' } | { kind: 'revoked'; at: string; reason?: number } | { kind: 'unknown' } | null;
  thisUpdate: string | null;
  nextUpdate: string | null;
  producedAt: string | null;
  fetchedAt: string | null;
  nextRefresh: string | null;
  failures: number;
  lastError: { code: ErrorCode; message: string; at: string } | null;
}

function statusView(st: CertStatus): NonNullable<CertificateView['status']> {
  if (st.kind !== 'revoked') return { kind: st.kind };
  return { kind: 'revoked', at: st.at.toISOString(), ...(st.reason !== undefined && { reason: st.reason }) };
}

export function viewOf(e: Entry, now: Date, marginSeconds: number, nextRefresh: Date | undefined): CertificateView {
  const { leaf, issuer } = e.record;
  const s = e.staple;
  const iso = (d: Date | undefined) => (d ? d.toISOString() : null);
  return {
    name: e.record.name,
    source: e.record.source,
    subject: leaf.subject,
    issuer: issuer.subject,
    serial: leaf.serialHex,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    mustStaple: leaf.mustStaple,
    ocspUrl: e.record.url ?? null,
    state: stateOf(e, now, marginSeconds),
    status: s ? statusView(s.status) : null,
    thisUpdate: iso(s?.thisUpdate),
    nextUpdate: iso(s?.nextUpdate),
    producedAt: iso(s?.producedAt),
    fetchedAt: iso(s?.fetchedAt),
    nextRefresh: iso(nextRefresh),
    failures: e.failures,
    lastError: e.lastError ? { code: e.lastError.code, message: e.lastError.message, at: e.lastError.at.toISOString() } : null,
  };
}
