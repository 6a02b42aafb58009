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
  /** Called after each push attempt (metrics). */
  onResult?: (sink: string, result: string) => void;
}

interface Lane {
  sink: StapleSink;
  /** Latest staple waiting per certificate: a newer staple replaces an older one not yet pushed. */
  pending: Map<string, [CertRecord, Staple]>;
  running: Promise<void> | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  failures: number;
  lastCode: Map<string, string>;
  unwatch: (() => void) | undefined;
}

/**
 * Delivers staples to sinks: one lane per sink, pushes in order, retries with capped exponential backoff,
 * and coalesces: only the newest staple per certificate is ever waiting. A failing sink never blocks
 * another one or the fetching side.
 */
export class SinkRunner {
  readonly #o: SinkRunnerOptions;
  readonly #lanes: Lane[];
  #stopped = false;

  constructor(o: SinkRunnerOptions) {
    if (!(o.retryInitialMs > 0) || o.retryMaxMs < o.retryInitialMs) throw new RangeError('SinkRunner: need 0 < retryInitialMs <= retryMaxMs');
    this.#o = o;
    this.#lanes = o.sinks.map((sink) => ({ sink, pending: new Map(), running: undefined, retryTimer: undefined, failures: 0, lastCode: new Map(), unwatch: undefined }));
  }

  get size(): number {
    return this.#lanes.length;
  }

  start(): void {
    for (const lane of this.#lanes) lane.unwatch = lane.sink.watch?.(() => this.resync(lane.sink.name));
  }

  offer(record: CertRecord, staple: Staple): void {
    for (const lane of this.#lanes) {
      if (!lane.sink.accepts(record, staple)) continue;
      lane.pending.set(record.name, [record, staple]);
      this.#kick(lane);
    }
  }

  /** Queue every current staple for one sink (or all), e.g. after HAProxy restarted. */
  resync(sinkName?: string): void {
    const all = this.#o.current();
    for (const lane of this.#lanes) {
      if (sinkName && lane.sink.name !== sinkName) continue;
      for (const [r, s] of all) if (lane.sink.accepts(r, s)) lane.pending.set(r.name, [r, s]);
      this.#kick(lane);
    }
  }

  /** Waits until every lane is idle with nothing pending (tests, and a flush at stop). */
  async idle(): Promise<void> {
    while (this.#lanes.some((l) => l.running)) await Promise.all(this.#lanes.map((l) => l.running));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const lane of this.#lanes) {
      lane.unwatch?.();
      clearTimeout(lane.retryTimer);
    }
    await Promise.allSettled(this.#lanes.map((l) => l.running));
    await Promise.allSettled(this.#lanes.map((l) => l.sink.close?.()));
  }

  #kick(lane: Lane): void {
    if (this.#stopped || lane.running || lane.retryTimer || lane.pending.size === 0) return;
    lane.running = this.#drain(lane).finally(() => {
      lane.running = undefined;
      if (!lane.retryTimer) this.#kick(lane);
    });
  }

  async #drain(lane: Lane): Promise<void> {
    const log = this.#o.log;
    for (const [name, item] of lane.pending) {
      if (this.#stopped) return;
      lane.pending.delete(name);
      const [record, staple] = item;
      try {
        await lane.sink.push(record, staple);
        lane.failures = 0;
        if (lane.lastCode.delete(name)) log.info({ sink: lane.sink.name, cert: name }, 'sink push recovered');
        this.#o.onResult?.(lane.sink.name, 'ok');
      } catch (err) {
        const code = errorCode(err, 'SINK_WRITE');
        this.#o.onResult?.(lane.sink.name, code);
        if (!lane.pending.has(name)) lane.pending.set(name, item); // retry it, unless a newer staple came
        lane.failures++;
        const delay = Math.min(this.#o.retryMaxMs, this.#o.retryInitialMs * 2 ** Math.min(20, lane.failures - 1));
        const fields = { sink: lane.sink.name, cert: name, code, err: (err as Error).message, retryInMs: delay };
        // One line per certificate and error code; repeats go to debug.
        if (lane.lastCode.get(name) !== code) log.warn(fields, 'sink push failed');
        else log.debug(fields, 'sink push failed again');
        lane.lastCode.set(name, code);
        lane.retryTimer = setTimeout(() => {
          lane.retryTimer = undefined;
          this.#kick(lane);
        }, delay);
        lane.retryTimer.unref();
        return;
      }
    }
  }
}
