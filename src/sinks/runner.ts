import type { Logger } from 'pino';
import { errorCode } from '../errors.js';
import type { Staple } from '../service/staple.js';
import type { CertRecord } from '../sources/certificates.js';
import type { StapleSink } from './sink.js';

export interface SinkRunnerOptions {
  sinks: StapleSink[];
  log: Logger;
  retryInitialMs: number;
  retryMaxMs: number;
  /** Every servable staple now, for a full re-push after the other side restarted. */
  current: () => Array<[CertRecord, Staple]>;
  /** Deliver learned certificates' staples too (learning.sinks); off by default: anyone can have one learned. */
  learned?: boolean;
  /** Called after each push attempt (metrics). */
  onResult?: (sink: string, result: string) => void;
}

interface Lane {
  sink: StapleSink;
  /** Latest staple waiting per certificate: a newer staple replaces an older one not yet pushed. */
  pending: Map<string, [CertRecord, Staple]>;
  running: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Per certificate: consecutive failures, when it may be tried again, last error code logged. */
  failures: Map<string, number>;
  retryAt: Map<string, number>;
  lastCode: Map<string, string>;
  /** The certificate being pushed now, and whether it was removed meanwhile (then a failure is not retried). */
  inFlight: string | undefined;
  removedInFlight: boolean;
  unwatch: (() => void) | undefined;
}

/**
 * Delivers staples to sinks: one lane per sink, pushes in order, and coalesces: only the newest staple per
 * certificate is ever waiting. A failed push is retried with capped exponential backoff for that
 * certificate alone: one certificate HAProxy rejects does not hold back the others, and a failing sink
 * never blocks another one or the fetching side.
 */
export class SinkRunner {
  readonly #o: SinkRunnerOptions;
  readonly #lanes: Lane[];
  #stopped = false;

  constructor(o: SinkRunnerOptions) {
    if (!(o.retryInitialMs > 0) || o.retryMaxMs < o.retryInitialMs) throw new RangeError('SinkRunner: need 0 < retryInitialMs <= retryMaxMs');
    this.#o = o;
    this.#lanes = o.sinks.map((sink) => ({
      sink,
      pending: new Map(),
      running: undefined,
      timer: undefined,
      failures: new Map(),
      retryAt: new Map(),
      lastCode: new Map(),
      inFlight: undefined,
      removedInFlight: false,
      unwatch: undefined,
    }));
  }

  get size(): number {
    return this.#lanes.length;
  }

  start(): void {
    for (const lane of this.#lanes) lane.unwatch = lane.sink.watch?.(() => this.resync(lane.sink.name));
  }

  offer(record: CertRecord, staple: Staple): void {
    if (record.learned && !this.#o.learned) return;
    for (const lane of this.#lanes) {
      if (!lane.sink.accepts(record, staple)) continue;
      lane.pending.set(record.name, [record, staple]);
      lane.retryAt.delete(record.name); // a new staple is worth trying at once
      this.#kick(lane);
    }
  }

  /** Queue every current staple for one sink (or all), e.g. after HAProxy restarted. */
  resync(sinkName?: string): void {
    const all = this.#o.current();
    for (const lane of this.#lanes) {
      if (sinkName && lane.sink.name !== sinkName) continue;
      for (const [r, s] of all) {
        if ((r.learned && !this.#o.learned) || !lane.sink.accepts(r, s)) continue;
        lane.pending.set(r.name, [r, s]);
        lane.retryAt.delete(r.name);
      }
      this.#kick(lane);
    }
  }

  /**
   * A certificate was removed (or replaced by `next` under the same name): forget what is waiting or
   * backing off for it, so a failing push stops retrying (issue 12 item 8), and let each sink clear what
   * it wrote for it.
   */
  forget(record: CertRecord, next?: CertRecord): Promise<void> {
    const removals: Array<Promise<void>> = [];
    for (const lane of this.#lanes) {
      lane.pending.delete(record.name);
      if (lane.inFlight === record.name) lane.removedInFlight = true;
      lane.failures.delete(record.name);
      lane.retryAt.delete(record.name);
      lane.lastCode.delete(record.name);
      if (!lane.sink.remove || (record.learned && !this.#o.learned)) continue;
      removals.push(
        lane.sink.remove(record, next).catch((err: unknown) => {
          this.#o.log.warn({ sink: lane.sink.name, cert: record.name, code: errorCode(err, 'SINK_WRITE'), err: (err as Error).message }, 'sink could not clear a removed certificate');
        }),
      );
    }
    return Promise.all(removals).then(() => undefined);
  }

  /** Waits until no lane is pushing (tests, and a flush at stop). Items waiting for a retry stay queued. */
  async idle(): Promise<void> {
    while (this.#lanes.some((l) => l.running)) await Promise.all(this.#lanes.map((l) => l.running));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const lane of this.#lanes) {
      lane.unwatch?.();
      clearTimeout(lane.timer);
    }
    await Promise.allSettled(this.#lanes.map((l) => l.running));
    await Promise.allSettled(this.#lanes.map((l) => l.sink.close?.()));
  }

  #kick(lane: Lane): void {
    if (this.#stopped || lane.running || lane.pending.size === 0) return;
    clearTimeout(lane.timer);
    lane.timer = undefined;
    lane.running = this.#drain(lane).finally(() => {
      lane.running = undefined;
      this.#arm(lane);
    });
  }

  /** One timer per lane, for the earliest retry among the certificates still waiting. */
  #arm(lane: Lane): void {
    if (this.#stopped || lane.pending.size === 0) return;
    const now = Date.now();
    let next = Infinity;
    for (const name of lane.pending.keys()) next = Math.min(next, lane.retryAt.get(name) ?? now);
    clearTimeout(lane.timer);
    lane.timer = setTimeout(() => {
      lane.timer = undefined;
      this.#kick(lane);
    }, Math.max(0, next - now));
    lane.timer.unref();
  }

  async #drain(lane: Lane): Promise<void> {
    for (const [name, item] of lane.pending) {
      if (this.#stopped) return;
      if ((lane.retryAt.get(name) ?? 0) > Date.now()) continue; // backing off: the others go first
      lane.pending.delete(name);
      lane.inFlight = name;
      lane.removedInFlight = false;
      try {
        await lane.sink.push(item[0], item[1]);
        this.#succeeded(lane, name);
      } catch (err) {
        this.#failed(lane, name, item, err);
      } finally {
        lane.inFlight = undefined;
      }
    }
  }

  #succeeded(lane: Lane, name: string): void {
    lane.failures.delete(name);
    lane.retryAt.delete(name);
    if (lane.lastCode.delete(name)) this.#o.log.info({ sink: lane.sink.name, cert: name }, 'sink push recovered');
    this.#o.onResult?.(lane.sink.name, 'ok');
  }

  #failed(lane: Lane, name: string, item: [CertRecord, Staple], err: unknown): void {
    const code = errorCode(err, 'SINK_WRITE');
    this.#o.onResult?.(lane.sink.name, code);
    if (lane.removedInFlight) return; // removed meanwhile: nothing to retry
    if (!lane.pending.has(name)) lane.pending.set(name, item); // retry it, unless a newer staple came
    const n = (lane.failures.get(name) ?? 0) + 1;
    lane.failures.set(name, n);
    const delay = Math.min(this.#o.retryMaxMs, this.#o.retryInitialMs * 2 ** Math.min(20, n - 1));
    if (lane.pending.get(name) === item) lane.retryAt.set(name, Date.now() + delay); // a newer staple goes at once
    const fields = { sink: lane.sink.name, cert: name, code, err: (err as Error).message, retryInMs: delay };
    // One line per certificate and error code; repeats go to debug.
    if (lane.lastCode.get(name) !== code) this.#o.log.warn(fields, 'sink push failed');
    else this.#o.log.debug(fields, 'sink push failed again');
    lane.lastCode.set(name, code);
  }
}
