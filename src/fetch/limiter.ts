/** A counting semaphore: at most `limit` holders at once, the rest wait in FIFO order. */
export class Semaphore {
  readonly #limit: number;
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Semaphore limit must be a positive integer, got ${limit}`);
    this.#limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  async acquire(): Promise<() => void> {
    if (this.#active >= this.#limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    };
  }
}

/** One semaphore per key (responder host), created on first use. */
export class KeyedSemaphore {
  readonly #limit: number;
  readonly #byKey = new Map<string, Semaphore>();

  constructor(limit: number) {
    this.#limit = limit;
    new Semaphore(limit); // validates the option at construction
  }

  async acquire(key: string): Promise<() => void> {
    let s = this.#byKey.get(key);
    if (!s) this.#byKey.set(key, (s = new Semaphore(this.#limit)));
    const release = await s.acquire();
    return () => {
      release();
      if (s.active === 0 && s.waiting === 0) this.#byKey.delete(key);
    };
  }
}
