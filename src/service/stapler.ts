import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { errorCode, StaplerError } from '../errors.js';
import type { RefreshConfig } from '../config/schema.js';
import type { ResponderClient } from '../fetch/responder-client.js';
import { Scheduler } from '../fetch/scheduler.js';
import { algOfKey, certIdKey, certIdOf, type HashName } from '../pki/certid.js';
import { backoffMs, nextRefreshAt, servableUntil, type Rand } from '../pki/freshness.js';
import { buildOcspRequest } from '../pki/request.js';
import { verifyOcspResponseAsync, type SignerMemo } from '../pki/verify.js';
import type { CertRecord } from '../sources/certificates.js';
import type { StapleStore } from '../store/store.js';
import { WriteBehind } from '../store/write-behind.js';
import { releaseMemory } from '../util/memory.js';
import { logFetchFailure, logNewStaple, retryDelayMs } from './transitions.js';
import { forEachLimited } from '../util/pool.js';
import type { Clock } from '../util/clock.js';
import { LocalCoordinator, type FetchCoordinator } from '../fleet/coordinator.js';
import { servableStaple, Staple, stateOf, viewOf, type CertificateView, type Entry } from './staple.js';

export interface StaplerOptions {
  clock: Clock;
  client: ResponderClient;
  store: StapleStore;
  log: Logger;
  refresh: RefreshConfig;
  /** Concurrent upstream fetches in all. */
  concurrency: number;
  /** Send a nonce upstream (off by default, RFC 9919 §2.1). */
  nonce: boolean;
  rand?: Rand;
  /** Staple writes wait this long and coalesce (see WriteBehind); default 500 ms. */
  persistDelayMs?: number;
  /** How staples are obtained: fetched (default), or shared across a fleet (src/fleet). */
  coordinator?: FetchCoordinator;
  /** Told of every upstream fetch: responder URL, `ok` or the error code, seconds taken (metrics). */
  onFetch?: (url: string, result: string, seconds: number) => void;
}

/**
 * What the OCSP routes answer for a CertID: the staple, or why not (mapped to OCSP statuses in http/).
 * `wait`: a fetch that will settle it is under way; ask again when `until` resolves (bounded by the fetch
 * timeout) rather than send tryLater to a client that asked at start-up or in a new form.
 */
export type Answer =
  | { kind: 'staple'; staple: Staple; maxAgeSeconds: number }
  | { kind: 'unknown' }
  | { kind: 'tryLater' }
  | { kind: 'wait'; until: Promise<void> };

/** Persisted staples read and re-verified at once during start-up. */
const PRIME_CONCURRENCY = 32;
/** Longest a fetched staple waits to be written while fetches are busy (see WriteBehind). */
const PERSIST_MAX_DELAY_MS = 10_000;
/**
 * A drain of at least this many staple writes is a burst big enough to release memory after (see
 * releaseMemory): below it the heap the burst grew is a few MB, and a full GC also drops the JIT's warm
 * state, which costs the serving path more for a while than those MB are worth.
 */
const BURST_WRITES = 10_000;
/** Names listed per kind by readiness() (the counts are whole). */
const READINESS_NAMES = 100;

/** Scheduler key of the SHA-256 form's job (certificate names cannot contain '#'). */
const ALT = '#sha256';

export type StapleListener = (record: CertRecord, staple: Staple, why: 'fetched' | 'loaded') => void;

/**
 * Owns the certificate entries, their staples and their schedule. Network and disk I/O happen outside
 * the entries; every change to an entry is one synchronous commit after the awaits (STYLE rule 8).
 */
export class Stapler {
  readonly #o: StaplerOptions;
  readonly #rand: Rand;
  readonly #entries = new Map<string, Entry>();
  readonly #byCertId = new Map<string, Entry>();
  /** Entries by leaf fingerprint: the entry itself, or a Set when the same certificate is configured under two names. */
  readonly #byFingerprint = new Map<string, Entry | Set<Entry>>();
  readonly #scheduler: Scheduler;
  readonly #memo: SignerMemo = new Map();
  readonly #writes: WriteBehind;
  readonly #listeners: StapleListener[] = [];
  /** Aborted at stop: a hung upstream must not hold up a SIGTERM (containers get ~10 s). */
  readonly #abort = new AbortController();
  #started = false;
  readonly #coordinator: FetchCoordinator;

  constructor(o: StaplerOptions) {
    this.#o = o;
    this.#rand = o.rand ?? Math.random;
    this.#coordinator = o.coordinator ?? new LocalCoordinator();
    this.#writes = new WriteBehind({ delayMs: o.persistDelayMs ?? 500, maxDelayMs: PERSIST_MAX_DELAY_MS, defer: () => this.#scheduler.busy, onDrained: (n) => this.#afterWrites(n), concurrency: 8, log: o.log });
    // Every fetch in flight listens on this one signal (up to fetch.concurrency of them): not a leak.
    setMaxListeners(0, this.#abort.signal);
    this.#scheduler = new Scheduler({
      clock: o.clock,
      concurrency: o.concurrency,
      run: (key) => (key.endsWith(ALT) ? this.#refreshAlt(key.slice(0, -ALT.length)) : this.#refresh(key)),
      onError: (name, e) => o.log.error({ cert: name, err: e }, 'refresh job failed unexpectedly'),
    });
  }

  onStaple(l: StapleListener): void {
    this.#listeners.push(l);
  }

  /**
   * Replaces the set of configured certificates: unchanged ones keep their staple and schedule; a changed
   * one (renewed, new issuer or URL) starts afresh and its old persisted staple is dropped. Learned
   * certificates are not part of the configured set and stay.
   */
  async setRecords(records: CertRecord[]): Promise<void> {
    const next = new Map(records.map((r) => [r.name, r]));
    for (const [name, e] of this.#entries) {
      if (e.record.learned) continue;
      const r = next.get(name);
      if (!r || !sameCertificate(e.record, r)) this.#remove(name, r?.leaf.fingerprint === e.record.leaf.fingerprint ? undefined : e.record.leaf.fingerprint);
      else e.record = r;
    }
    const added: Entry[] = [];
    for (const r of records) {
      if (this.#entries.has(r.name)) continue;
      const e = this.#add(r);
      added.push(e);
    }
    if (this.#started) await this.#primeAll(added);
  }

  /** The certificates in use. */
  records(): CertRecord[] {
    return [...this.#entries.values()].map((e) => e.record);
  }

  /** CertID map keys under which requests find a certificate. */
  keysOf(name: string): readonly string[] {
    return this.#entries.get(name)?.keys ?? [];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /**
   * Adds one learned certificate and resolves once it has a staple or its first fetch failed: a persisted
   * staple is used if it still verifies, otherwise it is fetched now (concurrent callers join that fetch).
   */
  async addLearned(r: CertRecord): Promise<void> {
    if (!r.learned) throw new RangeError('addLearned: record is not marked learned');
    if (this.#entries.has(r.name)) return;
    const e = this.#add(r);
    await this.#prime(e, { fetchNow: true });
  }

  /** Drops a certificate (learned and idle, for instance) and its persisted staple. */
  remove(name: string): void {
    const e = this.#entries.get(name);
    if (e) this.#remove(name, e.record.leaf.fingerprint);
  }

  /** Loads persisted staples (re-verified, served before any upstream contact), then schedules fetches. */
  async start(): Promise<void> {
    this.#started = true;
    await this.#primeAll([...this.#entries.values()]);
    const loaded = [...this.#entries.values()].filter((e) => e.staple).length;
    this.#o.log.info({ certificates: this.#entries.size, servedFromDisk: loaded }, 'persisted staples loaded');
  }

  /**
   * Primes entries a bounded number at a time: 100,000 at once would open 100,000 files. The store is
   * listed once first, so certificates with nothing persisted (all of them on a first start) cost no
   * failed file open each while their first fetches are already running.
   */
  async #primeAll(entries: Entry[]): Promise<void> {
    const present = await this.#o.store.keys().catch((err: unknown) => {
      this.#o.log.warn({ code: errorCode(err, 'STORE_IO'), err: String(err) }, 'listing persisted staples failed; trying each');
      return undefined;
    });
    return forEachLimited(entries, PRIME_CONCURRENCY, (e) => this.#prime(e, { present }));
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#scheduler.stop();
    await this.#coordinator.close();
    await this.#writes.flush();
    this.#o.client.close();
  }

  /** Hot path: a map lookup and a time comparison. */
  answer(key: string): Answer {
    const e = this.#byCertId.get(key);
    if (!e) return { kind: 'unknown' };
    const alg = algOfKey(key);
    const nowMs = this.#o.clock.now().getTime();
    const s = alg === 'sha1' ? e.staple : e.alt;
    const until = s ? servableUntil(s.nextUpdateMs, this.#o.refresh.marginSeconds) : 0;
    if (s && nowMs < until) {
      const due = this.#scheduler.dueMs(alg === 'sha1' ? e.record.name : e.record.name + ALT) ?? Infinity;
      return { kind: 'staple', staple: s, maxAgeSeconds: Math.max(0, Math.floor((Math.min(due, until) - nowMs) / 1000)) };
    }
    return this.#whenMissing(e, alg);
  }

  /** No servable staple in the asked form: join a fetch under way, start the SHA-256 form's first one, or tryLater. */
  #whenMissing(e: Entry, alg: HashName): Answer {
    const key = alg === 'sha1' ? e.record.name : e.record.name + ALT;
    const running = this.#scheduler.running(key);
    if (running) return { kind: 'wait', until: running };
    if (alg === 'sha256' && e.record.url && this.#scheduler.dueAt(key) === undefined && this.#started) {
      return { kind: 'wait', until: this.#scheduler.runNow(key) };
    }
    return { kind: 'tryLater' };
  }

  list(): CertificateView[] {
    return [...this.#entries.values()].map((e) => this.#view(e));
  }

  get(name: string): CertificateView | undefined {
    const e = this.#entries.get(name);
    return e && this.#view(e);
  }

  /** The servable staple of a certificate, by name. */
  staple(name: string): Staple | undefined {
    const e = this.#entries.get(name);
    return e && servableStaple(e, this.#o.clock.now(), this.#o.refresh.marginSeconds);
  }

  /**
   * Another node published a staple for this fingerprint (fleet mode): verify it here like a fetched one
   * and commit it to every certificate with that fingerprint, which runs the sinks and reschedules.
   */
  async adoptShared(fingerprint: string): Promise<void> {
    const targets = this.#withFingerprint(fingerprint).filter((e) => e.record.url);
    if (targets.length === 0) return;
    const der = await this.#coordinator.shared(fingerprint).catch(() => undefined);
    if (!der) return;
    for (const e of targets) {
      let staple: Staple;
      try {
        staple = await this.#verify(e.record, der, undefined);
      } catch (err) {
        this.#o.log.warn({ cert: e.record.name, code: errorCode(err, 'OCSP_MALFORMED') }, 'shared staple failed verification: ignored');
        continue;
      }
      if (e.staple && staple.thisUpdateMs <= e.staple.thisUpdateMs) continue;
      const next = this.#commitSuccess(e, e.generation, staple, undefined);
      if (next && !this.#scheduler.running(e.record.name)) this.#scheduler.schedule(e.record.name, next);
    }
  }

  /** Every certificate with a servable staple now (for a sink that must be given everything again). */
  current(): Array<[CertRecord, Staple]> {
    const now = this.#o.clock.now();
    const out: Array<[CertRecord, Staple]> = [];
    for (const e of this.#entries.values()) {
      const s = servableStaple(e, now, this.#o.refresh.marginSeconds);
      if (s) out.push([e.record, s]);
    }
    return out;
  }

  /** Fetches now (joining a fetch already under way) and returns the resulting view. */
  async refresh(name: string): Promise<CertificateView> {
    const e = this.#entries.get(name);
    if (!e) throw new StaplerError('NOT_FOUND', name);
    if (e.record.url) await this.#scheduler.runNow(name);
    return this.#view(this.#entries.get(name) ?? e);
  }

  /**
   * Ready when every certificate with a responder has a servable staple or has failed its first fetch,
   * and no must-staple certificate lacks a servable staple (clients hard-fail without one, RFC 7633 §4.2).
   * One pass, no allocation per certificate (/readyz is polled while 100,000 are still pending); names are
   * listed up to READINESS_NAMES of each kind, the counts are whole.
   */
  readiness(): { ready: boolean; waiting: string[]; waitingCount: number; mustStapleMissing: string[]; mustStapleMissingCount: number; store: { kind: 'local' | 'redis'; connected: boolean } } {
    const now = this.#o.clock.now();
    const waiting: string[] = [];
    const mustStapleMissing: string[] = [];
    let waitingCount = 0;
    let mustStapleMissingCount = 0;
    for (const e of this.#entries.values()) {
      const st = stateOf(e, now, this.#o.refresh.marginSeconds);
      if (st === 'pending' && ++waitingCount <= READINESS_NAMES) waiting.push(e.record.name);
      if (e.record.leaf.mustStaple && e.record.url && (st === 'pending' || st === 'failing') && ++mustStapleMissingCount <= READINESS_NAMES) mustStapleMissing.push(e.record.name);
    }
    const ready = this.#started && waitingCount === 0 && mustStapleMissingCount === 0;
    return { ready, waiting, waitingCount, mustStapleMissing, mustStapleMissingCount, store: this.#coordinator.status() };
  }

  #view(e: Entry): CertificateView {
    return viewOf(e, this.#o.clock.now(), this.#o.refresh.marginSeconds, this.#scheduler.dueAt(e.record.name));
  }

  #add(r: CertRecord): Entry {
    const keys = r.url ? (['sha1', 'sha256'] as const).map((a) => certIdKey(certIdOf(r.leaf, r.issuer, a))) : [];
    const e: Entry = { record: r, keys, staple: undefined, alt: undefined, altFailures: 0, failures: 0, lastError: undefined, generation: 0, reported: 'pending' };
    this.#entries.set(r.name, e);
    const fp = r.leaf.fingerprint;
    const same = this.#byFingerprint.get(fp);
    if (!same) this.#byFingerprint.set(fp, e);
    else if (same instanceof Set) same.add(e);
    else this.#byFingerprint.set(fp, new Set([same, e]));
    if (r.url) {
      this.#byCertId.set(keys[0]!, e);
      this.#byCertId.set(keys[1]!, e);
    }
    if (!r.url) this.#o.log.debug({ cert: r.name }, 'no OCSP URL: not applicable');
    return e;
  }

  /** After the writes of a burst (start-up, resync) are on disk, let V8 give back what the burst took. */
  #afterWrites(written: number): void {
    if (written < BURST_WRITES || this.#scheduler.busy) return;
    void releaseMemory().then((done) => {
      if (done) this.#o.log.debug({ written }, 'released memory after a burst of staple writes');
    });
  }

  #withFingerprint(fp: string): Entry[] {
    const same = this.#byFingerprint.get(fp);
    return same === undefined ? [] : same instanceof Set ? [...same] : [same];
  }

  #remove(name: string, dropPersistedFp: string | undefined): void {
    const e = this.#entries.get(name);
    if (!e) return;
    e.generation++;
    this.#entries.delete(name);
    this.#scheduler.remove(name);
    this.#scheduler.remove(name + ALT);
    for (const k of e.keys) if (this.#byCertId.get(k) === e) this.#byCertId.delete(k);
    const fp = e.record.leaf.fingerprint;
    const same = this.#byFingerprint.get(fp);
    if (same === e) this.#byFingerprint.delete(fp);
    else if (same instanceof Set) {
      same.delete(e);
      if (same.size === 1) this.#byFingerprint.set(fp, [...same][0]!);
    }
    const shared = dropPersistedFp !== undefined && this.#byFingerprint.has(dropPersistedFp);
    if (dropPersistedFp && !shared) this.#writes.enqueue(dropPersistedFp, () => this.#o.store.delete(dropPersistedFp));
    this.#o.log.info({ cert: name }, 'certificate removed');
  }

  /** Serve what the disk holds (after re-verifying it now), then schedule the first refresh. */
  async #prime(e: Entry, o: { fetchNow?: boolean; present?: ReadonlySet<string> | undefined } = {}): Promise<void> {
    const { record } = e;
    if (!record.url) return;
    const gen = e.generation;
    let loaded: Staple | undefined;
    try {
      const fp = record.leaf.fingerprint;
      const stored = !o.present || o.present.has(fp) ? await this.#o.store.get(fp) : undefined;
      if (stored) loaded = await this.#verify(record, stored.der, undefined);
    } catch (err) {
      this.#o.log.warn({ cert: record.name, code: errorCode(err, 'STORE_CORRUPT'), err: String(err) }, 'persisted staple unusable, skipping it');
    }
    if (this.#entries.get(record.name) !== e || e.generation !== gen) return;
    const now = this.#o.clock.now();
    if (loaded && !e.staple) {
      e.staple = loaded;
      this.#o.log.debug({ cert: record.name, state: stateOf(e, now, this.#o.refresh.marginSeconds) }, 'serving persisted staple');
      this.#emit(record, loaded, 'loaded');
    }
    if (!e.staple && o.fetchNow) return this.#scheduler.runNow(record.name);
    const at = e.staple ? nextRefreshAt(e.staple, now, { ...this.#o.refresh, minIntervalSeconds: 0 }, this.#rand) : now;
    this.#scheduler.schedule(record.name, at);
  }

  /** Full verification; the signature is checked off the event loop (see verifySignatureAsync). */
  async #verify(record: CertRecord, der: Uint8Array, nonce: Uint8Array | undefined): Promise<Staple> {
    const now = this.#o.clock.now();
    const policy = { skewSeconds: this.#o.refresh.skewSeconds, marginSeconds: this.#o.refresh.marginSeconds };
    const v = await verifyOcspResponseAsync({ der, leaf: record.leaf, issuer: record.issuer, now, policy, nonce, memo: this.#memo });
    return new Staple(v, now);
  }

  /** Request and verify one form (SHA-1 or SHA-256 CertID) of a certificate's staple. Nothing is committed. */
  async #fetch(record: CertRecord, url: string, alg: HashName): Promise<{ staple: Staple; maxAge: number | undefined }> {
    const nonce = this.#o.nonce ? new Uint8Array(randomBytes(16)) : undefined;
    const request = buildOcspRequest([certIdOf(record.leaf, record.issuer, alg)], { nonce });
    const started = performance.now();
    try {
      const res = await this.#o.client.fetch(url, request, this.#abort.signal);
      const staple = await this.#verify(record, res.body, nonce);
      this.#o.onFetch?.(url, 'ok', (performance.now() - started) / 1000);
      return { staple, maxAge: res.maxAgeSeconds };
    } catch (err) {
      this.#o.onFetch?.(url, errorCode(err, 'FETCH_CONNECT'), (performance.now() - started) / 1000);
      throw err;
    }
  }

  /** One scheduled fetch: request, verify, commit. Returns when to run next. */
  async #refresh(name: string): Promise<Date | null> {
    const e = this.#entries.get(name);
    const url = e?.record.url;
    if (!e || !url) return null;
    const { record, generation } = e;
    if (record.leaf.notAfterMs <= this.#o.clock.now().getTime()) {
      this.#o.log.info({ cert: name }, 'certificate expired: no more refreshes');
      return null;
    }
    let got: { staple: Staple; maxAge: number | undefined };
    try {
      got = await this.#coordinator.obtain({
        fingerprint: record.leaf.fingerprint,
        name,
        held: e.staple,
        direct: () => this.#fetch(record, url, 'sha1'),
        verify: (der) => this.#verify(record, der, undefined),
      });
    } catch (err) {
      return this.#commitFailure(e, generation, err);
    }
    return this.#commitSuccess(e, generation, got.staple, got.maxAge);
  }

  /**
   * The SHA-256 form: fetched when first asked for, then kept fresh on its own schedule. A failure keeps
   * the form held (or none) and backs off; it is logged at debug only, the SHA-1 form decides the state.
   */
  async #refreshAlt(name: string): Promise<Date | null> {
    const e = this.#entries.get(name);
    const url = e?.record.url;
    if (!e || !url || e.record.leaf.notAfterMs <= this.#o.clock.now().getTime()) return null;
    const generation = e.generation;
    try {
      const { staple } = await this.#fetch(e.record, url, 'sha256');
      if (this.#entries.get(name) !== e || e.generation !== generation) return null;
      if (!e.alt || staple.thisUpdateMs >= e.alt.thisUpdateMs) e.alt = staple;
      e.altFailures = 0;
      return nextRefreshAt(e.alt, this.#o.clock.now(), this.#o.refresh, this.#rand);
    } catch (err) {
      if (this.#entries.get(name) !== e || e.generation !== generation) return null;
      e.altFailures++;
      const delay = backoffMs(e.altFailures, this.#o.refresh, this.#rand, err instanceof StaplerError ? err.retryAfter : undefined);
      this.#o.log.debug({ cert: name, code: errorCode(err, 'FETCH_CONNECT'), form: 'sha256' }, 'OCSP fetch of the SHA-256 form failed');
      return new Date(this.#o.clock.now().getTime() + delay);
    }
  }

  #commitSuccess(e: Entry, generation: number, fresh: Staple, maxAge: number | undefined): Date | null {
    if (this.#entries.get(e.record.name) !== e || e.generation !== generation) return null;
    const held = e.staple;
    // Never replace a staple with an older one (RFC 9919 §4: a CDN or a lagging replica can serve stale data).
    if (held && fresh.thisUpdateMs < held.thisUpdateMs) {
      return this.#commitFailure(e, generation, new StaplerError('OCSP_OLDER', `thisUpdate ${fresh.thisUpdate.toISOString()} < ${held.thisUpdate.toISOString()}`));
    }
    const now = this.#o.clock.now();
    const changed = !held || !held.body.equals(fresh.body);
    if (changed) e.staple = fresh;
    e.failures = 0;
    e.lastError = undefined;
    const after = stateOf(e, now, this.#o.refresh.marginSeconds);
    if (changed || after !== e.reported) logNewStaple(this.#o.log, e, e.reported, after);
    e.reported = after;
    if (changed) {
      this.#persist(e, fresh);
      this.#emit(e.record, fresh, 'fetched');
    }
    // A fresh response keeps the fraction-of-window schedule; an unchanged one waits out the upstream max-age.
    return nextRefreshAt(e.staple!, now, this.#o.refresh, this.#rand, changed ? undefined : maxAge);
  }

  #commitFailure(e: Entry, generation: number, err: unknown): Date | null {
    if (this.#entries.get(e.record.name) !== e || e.generation !== generation) return null;
    const code = errorCode(err, 'FETCH_CONNECT');
    if (code === 'FETCH_ABORTED') return null; // shutting down: not a failure of the responder
    const now = this.#o.clock.now();
    const repeated = e.lastError?.code === code;
    e.failures++;
    e.lastError = { code, message: err instanceof Error ? err.message : String(err), at: now };
    const after = stateOf(e, now, this.#o.refresh.marginSeconds);
    const changed = after !== e.reported;
    e.reported = after;
    const backoff = backoffMs(e.failures, this.#o.refresh, this.#rand, err instanceof StaplerError ? err.retryAfter : undefined);
    const delay = retryDelayMs(e, now.getTime(), this.#o.refresh, backoff);
    logFetchFailure(this.#o.log, e, { state: after, changed, repeated, delayMs: delay });
    return new Date(now.getTime() + delay);
  }

  #emit(record: CertRecord, s: Staple, why: 'fetched' | 'loaded'): void {
    for (const l of this.#listeners) {
      try {
        l(record, s, why);
      } catch (err) {
        this.#o.log.error({ cert: record.name, err }, 'staple listener failed');
      }
    }
  }

  #persist(e: Entry, s: Staple): void {
    const fp = e.record.leaf.fingerprint;
    // The metadata is built when the write runs: 100,000 pending writes at start-up hold a closure each,
    // not six strings each.
    this.#writes.enqueue(fp, () =>
      this.#o.store.put(fp, {
        der: s.body,
        meta: {
          name: e.record.name,
          fetchedAt: s.fetchedAt.toISOString(),
          url: e.record.url ?? '',
          status: s.status.kind,
          thisUpdate: s.thisUpdate.toISOString(),
          nextUpdate: s.nextUpdate.toISOString(),
        },
      }),
    );
  }
}

function sameCertificate(a: CertRecord, b: CertRecord): boolean {
  return a.leaf.fingerprint === b.leaf.fingerprint && a.issuer.fingerprint === b.issuer.fingerprint && a.url === b.url;
}
