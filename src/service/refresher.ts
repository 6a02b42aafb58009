import type { Logger } from 'pino';
import type { RefreshConfig } from '../config/schema.js';
import { Scheduler } from '../fetch/scheduler.js';
import { nextRefreshAt, type Rand } from '../pki/freshness.js';
import type { FetchCoordinator } from '../fleet/coordinator.js';
import type { Clock } from '../util/clock.js';
import type { CertIndex } from './cert-index.js';
import type { StapleFetcher, Fetched } from './staple-fetcher.js';
import type { Entry, Staple } from './staple.js';
import { commitAlt, commitFailure, commitSuccess, type Commit, type CommitContext } from './transitions.js';

/** Which CertID form a job keeps fresh: SHA-1 (every common client, decides the state) or SHA-256. */
export type Form = 'sha1' | 'sha256';

export interface RefresherOptions {
  clock: Clock;
  index: CertIndex;
  fetcher: StapleFetcher;
  coordinator: FetchCoordinator;
  refresh: RefreshConfig;
  /** Concurrent upstream fetches in all. */
  concurrency: number;
  rand: Rand;
  log: Logger;
  /** An entry holds a different staple now: persist it and pass it on (sinks, hooks). */
  onNew: (e: Entry, staple: Staple) => void;
}

/** Scheduler key of a job: the name for the SHA-1 form; certificate names cannot contain '#'. */
const ALT = '#sha256';
const keyOf = (name: string, form: Form): string => (form === 'sha1' ? name : name + ALT);

/**
 * The refresh cycle: owns the Scheduler (jobs keyed by name and form). Each job is scan, act, apply: read
 * what the entry needs, fetch outside it, then one synchronous commit (transitions.ts) that returns when
 * to run next; a commit for an entry replaced meanwhile (a newer generation) is dropped.
 */
export class Refresher {
  readonly #o: RefresherOptions;
  readonly #scheduler: Scheduler;

  constructor(o: RefresherOptions) {
    this.#o = o;
    this.#scheduler = new Scheduler({
      clock: o.clock,
      concurrency: o.concurrency,
      run: (key) => (key.endsWith(ALT) ? this.#refreshAlt(key.slice(0, -ALT.length)) : this.#refresh(key)),
      onError: (key, e) => o.log.error({ cert: key, err: e }, 'refresh job failed unexpectedly'),
    });
  }

  /** Every fetch slot is taken: a burst (start-up, a resync) is under way. */
  get busy(): boolean {
    return this.#scheduler.busy;
  }

  dueAt(name: string, form: Form = 'sha1'): Date | undefined {
    return this.#scheduler.dueAt(keyOf(name, form));
  }

  dueMs(name: string, form: Form): number | undefined {
    return this.#scheduler.dueMs(keyOf(name, form));
  }

  running(name: string, form: Form): Promise<void> | undefined {
    return this.#scheduler.running(keyOf(name, form));
  }

  /** Runs the job now, or joins the one under way. */
  runNow(name: string, form: Form = 'sha1'): Promise<void> {
    return this.#scheduler.runNow(keyOf(name, form));
  }

  schedule(name: string, at: Date): void {
    this.#scheduler.schedule(name, at);
  }

  /** Drops both forms' jobs of a removed entry. */
  forget(name: string): void {
    this.#scheduler.remove(name);
    this.#scheduler.remove(keyOf(name, 'sha256'));
  }

  /** A staple held before any fetch (loaded from disk): first refresh at its usual time, else now. */
  scheduleFirst(e: Entry): void {
    const now = this.#o.clock.now();
    const at = e.staple ? nextRefreshAt(e.staple, now, { ...this.#o.refresh, minIntervalSeconds: 0 }, this.#o.rand) : now;
    this.#scheduler.schedule(e.record.name, at);
  }

  /** A verified staple from elsewhere (the fleet): committed like a fetched one, and rescheduled. */
  adopt(e: Entry, generation: number, staple: Staple): void {
    if (!this.#o.index.isCurrent(e, generation)) return;
    const c = this.#apply(e, commitSuccess(e, staple, undefined, this.#ctx()));
    if (c.next && !this.#scheduler.running(e.record.name)) this.#scheduler.schedule(e.record.name, c.next);
  }

  stop(): Promise<void> {
    return this.#scheduler.stop();
  }

  #ctx(): CommitContext {
    return { now: this.#o.clock.now(), policy: this.#o.refresh, rand: this.#o.rand, log: this.#o.log };
  }

  /** Passes a commit's event on. */
  #apply(e: Entry, c: Commit): Commit {
    if (c.event.kind === 'new') this.#o.onNew(e, c.event.staple);
    return c;
  }

  /** One scheduled fetch of the SHA-1 form: obtain (fetch or fleet), then commit. Returns when to run next. */
  async #refresh(name: string): Promise<Date | null> {
    const e = this.#o.index.get(name);
    const url = e?.record.url;
    if (!e || !url) return null;
    const { record, generation } = e;
    if (record.leaf.notAfterMs <= this.#o.clock.now().getTime()) {
      this.#o.log.info({ cert: name }, 'certificate expired: no more refreshes');
      return null;
    }
    let got: Fetched | undefined;
    let error: unknown;
    try {
      got = await this.#o.coordinator.obtain({
        fingerprint: record.leaf.fingerprint,
        name,
        held: e.staple,
        direct: () => this.#o.fetcher.fetch(record, url, 'sha1'),
        verify: (der) => this.#o.fetcher.verify(record, der),
      });
    } catch (err) {
      error = err;
    }
    if (!this.#o.index.isCurrent(e, generation)) return null;
    const c = got ? commitSuccess(e, got.staple, got.maxAge, this.#ctx()) : commitFailure(e, error, this.#ctx());
    return this.#apply(e, c).next;
  }

  /**
   * The SHA-256 form: fetched when first asked for, then kept fresh on its own schedule. A failure keeps
   * the form held (or none) and backs off; it is logged at debug only, the SHA-1 form decides the state.
   */
  async #refreshAlt(name: string): Promise<Date | null> {
    const e = this.#o.index.get(name);
    const url = e?.record.url;
    if (!e || !url || e.record.leaf.notAfterMs <= this.#o.clock.now().getTime()) return null;
    const generation = e.generation;
    const got = await this.#o.fetcher.fetch(e.record, url, 'sha256').then(
      (f) => f.staple,
      (error: unknown) => ({ error }),
    );
    if (!this.#o.index.isCurrent(e, generation)) return null;
    return commitAlt(e, got, this.#ctx());
  }
}
