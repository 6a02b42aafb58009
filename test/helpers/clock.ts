import type { Clock, Timer } from '../../src/util/clock.js';

/** A clock that only moves when told to; timers fire in due order as it advances. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start: Date | number = Date.UTC(2026, 10, 24, 12, 0, 0)) {
    this.#now = typeof start === 'number' ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  nowMs(): number {
    return this.#now;
  }

  get pending(): number {
    return this.#timers.size;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return { cancel: () => void this.#timers.delete(id) };
  }

  /** Moves time forward by `ms`, firing due timers one by one and letting async work settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets pending promise chains and I/O callbacks run (a few macrotask turns). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}
