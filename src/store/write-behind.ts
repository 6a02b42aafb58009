import type { Logger } from 'pino';
import { forEachLimited } from '../util/pool.js';

/**
 * Staple writes, a moment later and coalesced: the burst of fetches at start-up (or a fleet resync) is not
 * slowed by thousands of file writes and fsyncs competing for the same CPU, and a staple replaced again
 * within the delay is written once. While `defer()` says a burst is under way, writes wait longer, up to
 * `maxDelayMs` after the oldest pending one. Per key the latest operation wins (a delete after a put is a
 * delete), and operations on one key never overlap, so an older staple can never land after a newer one.
 * `flush` writes everything pending at once (stop). A crash loses at most the last `maxDelayMs` of
 * staples, which are then fetched again: files on disk are always complete (atomic writes underneath).
 */
export class WriteBehind {
  readonly #delayMs: number;
  readonly #maxDelayMs: number;
  readonly #defer: () => boolean;
  readonly #concurrency: number;
  readonly #log: Logger;
  readonly #pending = new Map<string, () => Promise<void>>();
  readonly #running = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #draining: Promise<void> | undefined;
  /** When the oldest write now pending was enqueued (performance.now()). */
  #oldest = 0;

  readonly #onDrained: (written: number) => void;

  constructor(o: { delayMs: number; maxDelayMs?: number; defer?: () => boolean; onDrained?: (written: number) => void; concurrency: number; log: Logger }) {
    if (!(o.delayMs >= 0) || !(o.concurrency >= 1)) throw new RangeError('WriteBehind: delayMs >= 0 and concurrency >= 1');
    this.#delayMs = o.delayMs;
    this.#maxDelayMs = Math.max(o.delayMs, o.maxDelayMs ?? o.delayMs);
    this.#defer = o.defer ?? (() => false);
    this.#onDrained = o.onDrained ?? (() => undefined);
    this.#concurrency = o.concurrency;
    this.#log = o.log;
  }

  get pending(): number {
    return this.#pending.size;
  }

  enqueue(key: string, op: () => Promise<void>): void {
    if (this.#pending.size === 0) this.#oldest = performance.now();
    this.#pending.set(key, op);
    this.#arm();
  }

  #arm(): void {
    if (this.#timer || this.#draining) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#defer() && performance.now() - this.#oldest < this.#maxDelayMs - this.#delayMs) this.#arm();
      else void this.#drain();
    }, this.#delayMs);
    this.#timer.unref();
  }

  /** Runs everything pending now and waits for it (and for writes already running). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#pending.size > 0 || this.#draining) await (this.#draining ?? this.#drain());
    await Promise.allSettled([...this.#running.values()]);
  }

  #drain(): Promise<void> {
    this.#draining ??= (async () => {
      let written = 0;
      while (this.#pending.size > 0) {
        const batch = [...this.#pending];
        this.#pending.clear();
        this.#oldest = performance.now();
        written += batch.length;
        await forEachLimited(batch, this.#concurrency, ([key, op]) => this.#run(key, op));
      }
      this.#onDrained(written);
    })().finally(() => {
      this.#draining = undefined;
      if (this.#pending.size > 0) this.#arm();
    });
    return this.#draining;
  }

  async #run(key: string, op: () => Promise<void>): Promise<void> {
    const p = (this.#running.get(key) ?? Promise.resolve())
      .then(op)
      .catch((err: unknown) => this.#log.error({ key, err }, 'persisting staple failed'));
    this.#running.set(key, p);
    await p;
    if (this.#running.get(key) === p) this.#running.delete(key);
  }
}
