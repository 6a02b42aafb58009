import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { StaplerError } from '../errors.js';
import type { LearningConfig } from '../config/schema.js';
import { hash, toHex } from '../pki/bytes.js';
import { parseCertificate, type CertInfo } from '../pki/certificate.js';
import type { CertId } from '../pki/certid.js';
import { certificatesFromPem } from '../pki/pem.js';
import { boundedName, globToRegExp, type CertRecord } from '../sources/certificates.js';
import type { Clock, Timer } from '../util/clock.js';
import type { Answer, Stapler } from './stapler.js';

/** An issuer whose certificates may be learned, and the only responder they are ever fetched from. */
export interface TrustedIssuer {
  cert: CertInfo;
  responder: string;
}

export interface LearnerOptions {
  stapler: Stapler;
  issuers: TrustedIssuer[];
  maxEntries: number;
  idleTimeoutSeconds: number;
  clock: Clock;
  log: Logger;
}

const FAR_FUTURE = new Date(Date.UTC(9999, 0, 1));

function issuerKey(alg: string, nameHash: Uint8Array, keyHash: Uint8Array): string {
  return `${alg}:${toHex(nameHash)}:${toHex(keyHash)}`;
}

/**
 * A stand-in for a certificate we only know by CertID: enough for the Stapler to build the request, verify
 * the answer (RFC 6960 §4.1.1: name hash, key hash, serial) and persist it. Its issuer Name is the trusted
 * issuer's subject, which is what the request's issuerNameHash was matched against.
 */
export function learnedLeaf(issuer: CertInfo, serial: Uint8Array): CertInfo {
  const serialHex = toHex(serial);
  return {
    der: new Uint8Array(0),
    fingerprint: toHex(hash('sha256', Buffer.from(`learned:${issuer.fingerprint}:${serialHex}`))),
    serialNumber: serial.slice(),
    serialHex,
    subject: `serial ${serialHex} (learned from a request)`,
    issuerNameDer: issuer.subjectNameDer,
    subjectNameDer: new Uint8Array(0),
    spkiDer: new Uint8Array(0),
    publicKeyBits: new Uint8Array(0),
    notBefore: new Date(0),
    notAfter: FAR_FUTURE,
    notAfterMs: FAR_FUTURE.getTime(),
    ocspUrls: [],
    mustStaple: false,
    isCA: false,
    ekuOcspSigning: false,
    ocspNoCheck: false,
  };
}

/**
 * Learning mode (issue 3): a request for a certificate staplerd does not know, under a trusted issuer, is
 * fetched from that issuer's configured responder (never from anything in the request), verified,
 * cached, answered, and kept fresh while it is asked for. Idle entries are dropped; the number of learned
 * entries is bounded (least recently asked for goes first).
 */
export class Learner {
  readonly #o: LearnerOptions;
  readonly #byIssuerKey = new Map<string, TrustedIssuer>();
  /** Learned certificate name → last time it was asked for (ms); insertion order is refreshed on use. */
  readonly #lastUsed = new Map<string, number>();
  readonly #keyToName = new Map<string, string>();
  readonly #pending = new Map<string, Promise<void>>();
  #sweep: Timer | undefined;

  constructor(o: LearnerOptions) {
    if (!(o.maxEntries > 0) || !(o.idleTimeoutSeconds > 0)) throw new RangeError('Learner: maxEntries and idleTimeoutSeconds must be > 0');
    this.#o = o;
    for (const i of o.issuers) {
      for (const alg of ['sha1', 'sha256'] as const) this.#byIssuerKey.set(issuerKey(alg, hash(alg, i.cert.subjectNameDer), hash(alg, i.cert.publicKeyBits)), i);
    }
  }

  get size(): number {
    return this.#lastUsed.size;
  }

  start(): void {
    const every = Math.max(1000, Math.min(60_000, (this.#o.idleTimeoutSeconds * 1000) / 4));
    const tick = () => {
      this.sweep();
      this.#sweep = this.#o.clock.setTimer(tick, every);
    };
    this.#sweep = this.#o.clock.setTimer(tick, every);
  }

  stop(): void {
    this.#sweep?.cancel();
  }

  /**
   * The Stapler's answer, noting use of learned entries so they stay fresh while asked for. While a
   * certificate is being learned its entry already exists but has neither a staple nor (while its persisted
   * staple is read and re-verified) a fetch running, so the Stapler says tryLater: a request arriving then
   * waits for the learning instead (issue 11: a stampede of nginx workers got tryLater, i.e. 5 minutes
   * without a staple each).
   */
  answer(key: string): Answer {
    const a = this.#o.stapler.answer(key);
    const name = this.#keyToName.get(key);
    if (name === undefined) return a;
    this.#touch(name);
    const pending = a.kind === 'tryLater' ? this.#pending.get(name) : undefined;
    return pending ? { kind: 'wait', until: pending } : a;
  }

  /** Learns the first CertID under a trusted issuer; false when none is (the caller answers unauthorized). */
  async learn(ids: CertId[]): Promise<boolean> {
    for (const id of ids) {
      const issuer = this.#byIssuerKey.get(issuerKey(id.hashAlgorithm, id.issuerNameHash, id.issuerKeyHash));
      if (!issuer) continue;
      const name = boundedName(`learned-${issuer.cert.fingerprint.slice(0, 12)}-${toHex(id.serialNumber)}`);
      const pending = this.#pending.get(name);
      if (pending) return pending.then(() => true);
      if (this.#o.stapler.has(name)) return true;
      this.#evictIfFull();
      const record: CertRecord = { name, source: `learned from a request (issuer ${issuer.cert.subject})`, leaf: learnedLeaf(issuer.cert, id.serialNumber), issuer: issuer.cert, url: issuer.responder, learned: true };
      const p = this.#o.stapler.addLearned(record).finally(() => this.#pending.delete(name));
      this.#pending.set(name, p);
      this.#touch(name);
      for (const k of this.#o.stapler.keysOf(name)) this.#keyToName.set(k, name);
      this.#o.log.info({ cert: name, issuer: issuer.cert.subject }, 'learning a certificate from a request');
      await p;
      return true;
    }
    return false;
  }

  /** Drops learned certificates nobody asked for within the idle timeout. */
  sweep(): number {
    const cutoff = this.#o.clock.now().getTime() - this.#o.idleTimeoutSeconds * 1000;
    let dropped = 0;
    for (const [name, at] of this.#lastUsed) {
      if (at >= cutoff) break; // insertion order is use order: the rest are newer
      this.#forget(name);
      dropped++;
    }
    if (dropped) this.#o.log.info({ dropped }, 'dropped idle learned certificates');
    return dropped;
  }

  #touch(name: string): void {
    this.#lastUsed.delete(name);
    this.#lastUsed.set(name, this.#o.clock.now().getTime());
  }

  #evictIfFull(): void {
    while (this.#lastUsed.size >= this.#o.maxEntries) {
      const oldest = this.#lastUsed.keys().next().value;
      if (oldest === undefined) return;
      this.#forget(oldest);
    }
  }

  #forget(name: string): void {
    for (const k of this.#o.stapler.keysOf(name)) this.#keyToName.delete(k);
    this.#lastUsed.delete(name);
    this.#o.stapler.remove(name);
  }
}

/** Trusted issuers from config: each entry a PEM file (every certificate in it) or a directory of them. */
export async function loadTrustedIssuers(c: LearningConfig, source: string): Promise<TrustedIssuer[]> {
  const out: TrustedIssuer[] = [];
  for (const [i, l] of c.issuers.entries()) {
    const where = `${source}: learning.issuers[${i}]`;
    try {
      const files = l.certificate ? [l.certificate] : (await readdir(l.directory!)).filter((n) => globToRegExp(l.pattern).test(n)).sort().map((n) => join(l.directory!, n));
      for (const file of files) {
        for (const der of certificatesFromPem(new Uint8Array(await readFile(file)), file)) out.push({ cert: parseCertificate(der, file), responder: l.responder });
      }
    } catch (e) {
      if (e instanceof StaplerError) throw e.within(where);
      throw new StaplerError('CERT_FILE', `${where}: ${(e as Error).message}`, { cause: e });
    }
  }
  return out;
}
