import type { Clock, Timer } from './clock.js';

/**
 * A token bucket: up to `burst` at once, refilled at `perMinute`. Time comes in as epoch milliseconds, so
 * the caller's Clock decides (tests use a fake one).
 */
export class TokenBucket {
  readonly #ratePerMs: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(o: { perMinute: number; burst: number; nowMs: number }) {
    if (!(o.perMinute > 0)) throw new RangeError('TokenBucket: perMinute must be > 0');
    if (!(o.burst >= 1)) throw new RangeError('TokenBucket: burst must be >= 1');
    this.#ratePerMs = o.perMinute / 60_000;
    this.#burst = o.burst;
    this.#tokens = o.burst;
    this.#at = o.nowMs;
  }

  /** Takes one token if there is one. */
  take(nowMs: number): boolean {
    if (nowMs > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (nowMs - this.#at) * this.#ratePerMs);
      this.#at = nowMs;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/**
 * Counts what a limit dropped and reports it at most once per interval: the first drop at once, the ones
 * after it in one line when the interval ends. A flood of drops must not become a flood of log lines.
 */
export class DropReport {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #report: (dropped: number) => void;
  #pending = 0;
  #quietUntil = -Infinity;
  #timer: Timer | undefined;
  total = 0;

  constructor(o: { clock: Clock; intervalMs: number; report: (dropped: number) => void }) {
    if (!(o.intervalMs > 0)) throw new RangeError('DropReport: intervalMs must be > 0');
    this.#clock = o.clock;
    this.#intervalMs = o.intervalMs;
    this.#report = o.report;
  }

  drop(): void {
    this.total++;
    this.#pending++;
    if (this.#clock.now().getTime() >= this.#quietUntil) this.#flush();
    else this.#timer ??= this.#clock.setTimer(() => this.#flush(), this.#quietUntil - this.#clock.now().getTime());
  }

  /** Reports what is pending now (at stop). */
  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (this.#pending) this.#report(this.#pending);
    this.#pending = 0;
  }

  #flush(): void {
    this.#timer = undefined;
    if (this.#pending === 0) return;
    this.#report(this.#pending);
    this.#pending = 0;
    this.#quietUntil = this.#clock.now().getTime() + this.#intervalMs;
  }
}
