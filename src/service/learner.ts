import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { StaplerError } from '../errors.js';
import type { LearningConfig } from '../config/schema.js';
import { hash, toHex } from '../pki/bytes.js';
import { parseCertificate, type CertInfo } from '../pki/certificate.js';
import { certIdKey, type CertId } from '../pki/certid.js';
import { certificatesFromPem } from '../pki/pem.js';
import { boundedName, globToRegExp, type CertRecord } from '../sources/certificates.js';
import type { Clock, Timer } from '../util/clock.js';
import { DropReport, TokenBucket } from '../util/token-bucket.js';
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
  /** New certificates learned: a token bucket (default 600 a minute, 100 at once); beyond it, tryLater. */
  maxNewPerMinute?: number;
  newBurst?: number;
  /** A certificate whose first fetch failed is answered tryLater for this long, not refetched (default 300). */
  failureTtlSeconds?: number;
  clock: Clock;
  log: Logger;
}

/** The schema's defaults (config/schema.ts), for callers that build a Learner without a config. */
const DEFAULTS = { maxNewPerMinute: 600, newBurst: 100, failureTtlSeconds: 300 };
/** Learnings refused by the rate limit are logged at most once per this interval, with the count. */
const DROP_LOG_INTERVAL_MS = 60_000;
/** Eviction looks at most this many of the least recently used entries for one without a staple. */
const EVICT_SCAN = 4096;

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
  /**
   * CertID keys answered tryLater without a fetch until a time (ms): a first fetch failed (for
   * failureTtl), or the learning rate was exceeded (until the next token). Insertion order, bounded.
   */
  readonly #refused = new Map<string, number>();
  readonly #bucket: TokenBucket;
  readonly #drops: DropReport;
  readonly #failureTtlMs: number;
  readonly #tokenMs: number;
  #sweep: Timer | undefined;

  constructor(o: LearnerOptions) {
    if (!(o.maxEntries > 0) || !(o.idleTimeoutSeconds > 0)) throw new RangeError('Learner: maxEntries and idleTimeoutSeconds must be > 0');
    const l = { ...DEFAULTS, ...o };
    if (!(l.failureTtlSeconds > 0)) throw new RangeError('Learner: failureTtlSeconds must be > 0');
    this.#o = o;
    this.#bucket = new TokenBucket({ perMinute: l.maxNewPerMinute, burst: l.newBurst, nowMs: o.clock.now().getTime() });
    this.#tokenMs = Math.ceil(60_000 / l.maxNewPerMinute);
    this.#failureTtlMs = l.failureTtlSeconds * 1000;
    this.#drops = new DropReport({
      clock: o.clock,
      intervalMs: DROP_LOG_INTERVAL_MS,
      report: (n) => o.log.warn({ refused: n }, `certificates not learned: over learning.maxNewPerMinute (${l.maxNewPerMinute}); answered tryLater`),
    });
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
    this.#drops.stop();
  }

  /** Learnings refused by the rate limit so far. */
  get refusedByRate(): number {
    return this.#drops.total;
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
    if (name === undefined) return a.kind === 'unknown' && this.#isRefused(key) ? { kind: 'tryLater' } : a;
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
      // Known, or refused for now: the caller's lookup answers (a staple, or tryLater).
      if (this.#o.stapler.has(name) || this.#isRefused(certIdKey(id))) return true;
      const now = this.#o.clock.now().getTime();
      if (!this.#bucket.take(now)) {
        // Over the learning rate (issue 12 item 7): tryLater until the next token, counted and logged.
        this.#refuse([certIdKey(id)], now + this.#tokenMs);
        this.#drops.drop();
        return true;
      }
      await this.#start(name, issuer, id);
      return true;
    }
    return false;
  }

  /** Adds the entry, fetches it, and settles the outcome before anyone waiting on it looks again. */
  #start(name: string, issuer: TrustedIssuer, id: CertId): Promise<void> {
    this.#evictIfFull();
    const record: CertRecord = { name, source: `learned from a request (issuer ${issuer.cert.subject})`, leaf: learnedLeaf(issuer.cert, id.serialNumber), issuer: issuer.cert, url: issuer.responder, learned: true };
    const p = this.#o.stapler
      .addLearned(record)
      .then(() => this.#afterFirstFetch(name))
      .finally(() => this.#pending.delete(name));
    this.#pending.set(name, p);
    this.#touch(name);
    for (const k of this.#o.stapler.keysOf(name)) this.#keyToName.set(k, name);
    this.#o.log.info({ cert: name, issuer: issuer.cert.subject }, 'learning a certificate from a request');
    return p;
  }

  /**
   * A first fetch that brought no staple is not retried on its own (issue 12 item 7: 100 unknown serials
   * with the CA answering unauthorized made 200 fetches in 40 s, each retried on backoff): the entry goes,
   * and its CertIDs are answered tryLater for failureTtl; a request after that learns it afresh.
   */
  #afterFirstFetch(name: string): void {
    if (!this.#o.stapler.has(name) || this.#o.stapler.staple(name)) return;
    const keys = this.#o.stapler.keysOf(name);
    this.#forget(name);
    this.#refuse(keys, this.#o.clock.now().getTime() + this.#failureTtlMs);
    this.#o.log.info({ cert: name, retryAfterSeconds: this.#failureTtlMs / 1000 }, 'learned certificate got no staple on its first fetch: answering tryLater for a while');
  }

  #refuse(keys: readonly string[], until: number): void {
    for (const k of keys) {
      this.#refused.delete(k);
      this.#refused.set(k, until);
    }
    // Two keys per certificate: bounded like the entries themselves.
    while (this.#refused.size > this.#o.maxEntries * 2) this.#refused.delete(this.#refused.keys().next().value!);
  }

  #isRefused(key: string): boolean {
    const until = this.#refused.get(key);
    if (until === undefined) return false;
    if (until > this.#o.clock.now().getTime()) return true;
    this.#refused.delete(key);
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
    const now = this.#o.clock.now().getTime();
    for (const [k, until] of this.#refused) if (until <= now) this.#refused.delete(k);
    return dropped;
  }

  #touch(name: string): void {
    this.#lastUsed.delete(name);
    this.#lastUsed.set(name, this.#o.clock.now().getTime());
  }

  /**
   * At the bound, working entries (a servable staple, recently asked for) go last: the least recently
   * used entry without a staple goes first, else the least recently used one. Entries being learned stay.
   */
  #evictIfFull(): void {
    while (this.#lastUsed.size >= this.#o.maxEntries) {
      const victim = this.#victim();
      if (victim === undefined) return;
      this.#forget(victim);
    }
  }

  #victim(): string | undefined {
    let oldest: string | undefined;
    let seen = 0;
    for (const name of this.#lastUsed.keys()) {
      if (this.#pending.has(name)) continue;
      oldest ??= name;
      if (!this.#o.stapler.staple(name)) return name;
      if (++seen >= EVICT_SCAN) break;
    }
    return oldest;
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
