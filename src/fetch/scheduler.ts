import type { Clock, Timer } from '../util/clock.js';
import { Semaphore } from './limiter.js';

/** Runs one job for `key`; resolves to when it should run next, or null to drop it from the schedule. */
export type Job = (key: string) => Promise<Date | null>;

export interface SchedulerOptions {
  clock: Clock;
  /** Jobs running at once; the rest wait their turn (bounds in-flight upstream fetches). */
  concurrency: number;
  run: Job;
  onError?: (key: string, e: unknown) => void;
}

/**
 * One timer for the earliest due key, never one per key: 100,000 certificates cost one pending timeout.
 * A key is in at most one of: scheduled (heap), running. `runNow` joins a running job instead of starting
 * a second one, so a burst of refresh requests for one certificate is one upstream fetch.
 */
export class Scheduler {
  readonly #o: SchedulerOptions;
  readonly #slots: Semaphore;
  readonly #due = new Map<string, number>();
  readonly #heap: Array<[number, string]> = [];
  readonly #running = new Map<string, Promise<void>>();
  #timer: Timer | undefined;
  #timerAt = Infinity;
  #stopped = false;

  constructor(o: SchedulerOptions) {
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1) throw new RangeError('Scheduler: concurrency must be a positive integer');
    this.#o = o;
    this.#slots = new Semaphore(o.concurrency);
  }

  get size(): number {
    return this.#due.size;
  }

  /** Every fetch slot taken: a burst (start-up, a resync) is under way. */
  get busy(): boolean {
    return this.#running.size >= this.#o.concurrency;
  }

  dueAt(key: string): Date | undefined {
    const t = this.#due.get(key);
    return t === undefined ? undefined : new Date(t);
  }

  /** dueAt as epoch milliseconds, without allocating (the serve path asks on every hit). */
  dueMs(key: string): number | undefined {
    return this.#due.get(key);
  }

  schedule(key: string, at: Date): void {
    if (this.#stopped) return;
    const t = at.getTime();
    this.#due.set(key, t);
    heapPush(this.#heap, [t, key]);
    this.#arm();
  }

  remove(key: string): void {
    this.#due.delete(key); // the heap entry is skipped lazily
  }

  /** The run in progress for `key`, if any. */
  running(key: string): Promise<void> | undefined {
    return this.#running.get(key);
  }

  /** Runs the job for `key` now (or joins the run in progress) and resolves when it is done. */
  runNow(key: string): Promise<void> {
    const running = this.#running.get(key);
    if (running) return running;
    this.#due.delete(key);
    return this.#start(key);
  }

  /** Stops scheduling and waits for running jobs to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    await Promise.allSettled([...this.#running.values()]);
  }

  #start(key: string): Promise<void> {
    const p = (async () => {
      const release = await this.#slots.acquire();
      let next: Date | null = null;
      try {
        next = await this.#o.run(key);
      } catch (e) {
        this.#o.onError?.(key, e);
      } finally {
        release();
        this.#running.delete(key);
      }
      if (next && !this.#due.has(key)) this.schedule(key, next);
      this.#arm();
    })();
    this.#running.set(key, p);
    return p;
  }

  /** Scan, queue, act: start every due key while slots are free, then arm one timer for the next. */
  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (this.#stopped) return;
    const now = this.#o.clock.now().getTime();
    // Start at most as many as can run; the others stay in the heap until a slot frees up.
    let budget = Math.max(1, this.#o.concurrency * 2 - this.#running.size);
    while (this.#heap.length > 0 && budget > 0) {
      const [t, key] = this.#heap[0]!;
      if (this.#due.get(key) !== t) {
        heapPop(this.#heap); // stale: removed or rescheduled
        continue;
      }
      if (t > now) break;
      heapPop(this.#heap);
      this.#due.delete(key);
      if (!this.#running.has(key)) {
        void this.#start(key);
        budget--;
      }
    }
    this.#arm();
  }

  #arm(): void {
    if (this.#stopped) return;
    while (this.#heap.length > 0 && this.#due.get(this.#heap[0]![1]) !== this.#heap[0]![0]) heapPop(this.#heap);
    const head = this.#heap[0];
    if (!head) return;
    // When every slot is busy, the next job is started by a finishing job's #arm, not by a timer.
    if (this.#running.size >= this.#o.concurrency * 2) return;
    if (this.#timer && this.#timerAt <= head[0]) return;
    this.#timer?.cancel();
    this.#timerAt = head[0];
    this.#timer = this.#o.clock.setTimer(() => this.#fire(), Math.max(0, head[0] - this.#o.clock.now().getTime()));
  }
}

function less(a: [number, string], b: [number, string]): boolean {
  return a[0] < b[0];
}

function heapPush(h: Array<[number, string]>, v: [number, string]): void {
  h.push(v);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!less(h[i]!, h[p]!)) break;
    [h[i], h[p]] = [h[p]!, h[i]!];
    i = p;
  }
}

function heapPop(h: Array<[number, string]>): [number, string] | undefined {
  const top = h[0];
  const last = h.pop();
  if (h.length > 0 && last) {
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!)) m = l;
      if (r < h.length && less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
  return top;
}
