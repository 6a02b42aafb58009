import type { Logger } from 'pino';
import { errorCode, StaplerError } from '../errors.js';
import type { RefreshConfig } from '../config/schema.js';
import type { ResponderClient } from '../fetch/responder-client.js';
import type { Rand } from '../pki/freshness.js';
import type { CertRecord } from '../sources/certificates.js';
import type { StapleStore } from '../store/store.js';
import { forEachLimited } from '../util/pool.js';
import type { Clock } from '../util/clock.js';
import { LocalCoordinator, type FetchCoordinator } from '../fleet/coordinator.js';
import { StapleAnswers, type Answer, type Readiness } from './answers.js';
import { CertIndex } from './cert-index.js';
import { FleetAdopter } from './fleet-adopter.js';
import { StaplePersistence } from './persistence.js';
import { Refresher } from './refresher.js';
import { StapleFetcher } from './staple-fetcher.js';
import { stateOf, type CertBrief, type CertificateView, type Entry, type Staple } from './staple.js';

export type { Answer } from './answers.js';

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

/** Persisted staples read and re-verified at once during start-up. */
const PRIME_CONCURRENCY = 32;

export type StapleListener = (record: CertRecord, staple: Staple, why: 'fetched' | 'loaded') => void;
/** A certificate left (removed, dropped when idle), or `next` replaced it under the same name. */
export type RemovalListener = (record: CertRecord, next: CertRecord | undefined) => void;

/**
 * The service's front: wires the index (CertIndex), the refresh cycle (Refresher, fetching through
 * StapleFetcher), the answers (StapleAnswers), persistence (StaplePersistence) and fleet adoption
 * (FleetAdopter), and runs start-up priming. Network and disk I/O happen outside the entries; every
 * change to an entry is one synchronous commit after the awaits (STYLE rule 8).
 */
export class Stapler {
  readonly #o: StaplerOptions;
  readonly #index = new CertIndex();
  readonly #fetcher: StapleFetcher;
  readonly #refresher: Refresher;
  readonly #answers: StapleAnswers;
  readonly #persistence: StaplePersistence;
  readonly #adopter: FleetAdopter;
  readonly #coordinator: FetchCoordinator;
  readonly #listeners: StapleListener[] = [];
  readonly #removalListeners: RemovalListener[] = [];
  #started = false;

  constructor(o: StaplerOptions) {
    this.#o = o;
    const { clock, log, refresh } = o;
    const coordinator = (this.#coordinator = o.coordinator ?? new LocalCoordinator());
    const index = this.#index;
    const fetcher = (this.#fetcher = new StapleFetcher({ clock, client: o.client, refresh, nonce: o.nonce, onFetch: o.onFetch }));
    this.#persistence = new StaplePersistence({ store: o.store, log, delayMs: o.persistDelayMs, busy: () => this.#refresher.busy });
    const onNew = (e: Entry, s: Staple) => {
      this.#persistence.put(e, s);
      this.#emit(e.record, s, 'fetched');
    };
    const refresher = (this.#refresher = new Refresher({ clock, index, fetcher, coordinator, refresh, concurrency: o.concurrency, rand: o.rand ?? Math.random, log, onNew }));
    this.#answers = new StapleAnswers({ clock, index, jobs: refresher, refresh, started: () => this.#started });
    this.#adopter = new FleetAdopter({ index, coordinator, fetcher, refresher, log });
  }

  onStaple(l: StapleListener): void {
    this.#listeners.push(l);
  }

  /** Sinks clear what they hold for a removed certificate (issue 12 item 8). */
  onRemoved(l: RemovalListener): void {
    this.#removalListeners.push(l);
  }

  /**
   * Replaces the set of configured certificates: unchanged ones keep their staple and schedule; a changed
   * one (renewed, new issuer or URL) starts afresh and its old persisted staple is dropped. Learned
   * certificates are not part of the configured set and stay.
   */
  async setRecords(records: CertRecord[]): Promise<void> {
    const { added, removed } = this.#index.sync(records);
    const byName = new Map(records.map((r) => [r.name, r]));
    for (const r of removed) this.#forget(r.entry, r.dropPersisted, byName.get(r.entry.record.name));
    if (this.#started) await this.#primeAll(added);
  }

  /** The certificates in use. */
  records(): CertRecord[] {
    return [...this.#index.values()].map((e) => e.record);
  }

  /** CertID map keys under which requests find a certificate. */
  keysOf(name: string): readonly string[] {
    return this.#index.get(name)?.keys ?? [];
  }

  has(name: string): boolean {
    return this.#index.has(name);
  }

  /**
   * Adds one learned certificate and resolves once it has a staple or its first fetch failed: a persisted
   * staple is used if it still verifies, otherwise it is fetched now (concurrent callers join that fetch).
   */
  async addLearned(r: CertRecord): Promise<void> {
    if (!r.learned) throw new RangeError('addLearned: record is not marked learned');
    if (this.#index.has(r.name)) return;
    const e = this.#add(r);
    await this.#prime(e, { fetchNow: true });
  }

  /** Drops a certificate (learned and idle, for instance) and its persisted staple. */
  remove(name: string): void {
    const r = this.#index.remove(name);
    if (r) this.#forget(r.entry, r.dropPersisted);
  }

  /** Loads persisted staples (re-verified, served before any upstream contact), then schedules fetches. */
  async start(): Promise<void> {
    this.#started = true;
    await this.#primeAll([...this.#index.values()]);
    const loaded = [...this.#index.values()].filter((e) => e.staple).length;
    this.#o.log.info({ certificates: this.#index.size, servedFromDisk: loaded }, 'persisted staples loaded');
  }

  async stop(): Promise<void> {
    this.#fetcher.abort();
    await this.#refresher.stop();
    await this.#coordinator.close();
    await this.#persistence.flush();
    this.#fetcher.close();
  }

  /** Hot path: a map lookup and a time comparison. */
  answer(key: string): Answer {
    return this.#answers.answer(key);
  }

  list(): CertificateView[] {
    return this.#answers.list();
  }

  /** See StapleAnswers.briefs. */
  briefs(): IterableIterator<CertBrief> {
    return this.#answers.briefs();
  }

  get(name: string): CertificateView | undefined {
    const e = this.#index.get(name);
    return e && this.#answers.view(e);
  }

  /** The servable staple of a certificate, by name. */
  staple(name: string): Staple | undefined {
    return this.#answers.staple(name);
  }

  /** Another node published a staple for this fingerprint (fleet mode): verify, then commit (FleetAdopter). */
  adoptShared(fingerprint: string): Promise<void> {
    return this.#adopter.adopt(fingerprint);
  }

  /** Every certificate with a servable staple now (for a sink that must be given everything again). */
  current(): Array<[CertRecord, Staple]> {
    return this.#answers.current();
  }

  /** Fetches now (joining a fetch already under way) and returns the resulting view. */
  async refresh(name: string): Promise<CertificateView> {
    const e = this.#index.get(name);
    if (!e) throw new StaplerError('NOT_FOUND', name);
    if (e.record.url) await this.#refresher.runNow(name);
    return this.#answers.view(this.#index.get(name) ?? e);
  }

  /** See StapleAnswers.readiness; plus the shared store's connection. */
  readiness(): Readiness & { store: { kind: 'local' | 'redis'; connected: boolean } } {
    return { ...this.#answers.readiness(), store: this.#coordinator.status() };
  }

  #add(r: CertRecord): Entry {
    const e = this.#index.add(r);
    if (!r.url) this.#o.log.debug({ cert: r.name }, 'no OCSP URL: not applicable');
    return e;
  }

  #forget(e: Entry, dropPersisted: string | undefined, next?: CertRecord): void {
    this.#refresher.forget(e.record.name);
    if (dropPersisted) this.#persistence.drop(dropPersisted);
    this.#o.log.info({ cert: e.record.name }, 'certificate removed');
    for (const l of this.#removalListeners) {
      try {
        l(e.record, next);
      } catch (err) {
        this.#o.log.error({ cert: e.record.name, err }, 'removal listener failed');
      }
    }
  }

  /**
   * Primes entries a bounded number at a time: 100,000 at once would open 100,000 files. The store is
   * listed once first, so certificates with nothing persisted (all of them on a first start) cost no
   * failed file open each while their first fetches are already running.
   */
  async #primeAll(entries: Entry[]): Promise<void> {
    const present = await this.#persistence.present();
    return forEachLimited(entries, PRIME_CONCURRENCY, (e) => this.#prime(e, { present }));
  }

  /** Serve what the disk holds (after re-verifying it now), then schedule the first refresh. */
  async #prime(e: Entry, o: { fetchNow?: boolean; present?: ReadonlySet<string> | undefined } = {}): Promise<void> {
    const { record } = e;
    if (!record.url) return;
    const gen = e.generation;
    let loaded: Staple | undefined;
    try {
      const der = await this.#persistence.load(record.leaf.fingerprint, o.present);
      const verified = der && (await this.#fetcher.verify(record, der));
      // Written by an older version, perhaps: an `unknown` is not a staple (issue 13 item 2).
      if (verified && verified.status.kind === 'unknown') throw new StaplerError('OCSP_CERT_UNKNOWN', 'persisted response says unknown');
      loaded = verified || undefined;
    } catch (err) {
      this.#o.log.warn({ cert: record.name, code: errorCode(err, 'STORE_CORRUPT'), err: String(err) }, 'persisted staple unusable, skipping it');
    }
    if (!this.#index.isCurrent(e, gen)) return;
    if (loaded && !e.staple) {
      e.staple = loaded;
      this.#o.log.debug({ cert: record.name, state: stateOf(e, this.#o.clock.now(), this.#o.refresh.marginSeconds) }, 'serving persisted staple');
      this.#emit(record, loaded, 'loaded');
    }
    if (!e.staple && o.fetchNow) return this.#refresher.runNow(record.name);
    this.#refresher.scheduleFirst(e);
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
}
