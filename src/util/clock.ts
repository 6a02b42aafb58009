/** Time as a seam: the scheduler, freshness and cache headers take a Clock; tests pass a fake one. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): Date;
  /** now() as epoch milliseconds, without a Date: the serving path asks once per request. */
  nowMs(): number;
  /** Calls `fn` after `ms`; the timer never keeps the process alive (unref'd). */
  setTimer(fn: () => void, ms: number): Timer;
}

// setTimeout's delay is a signed 32-bit millisecond count; longer waits are re-armed in steps.
const MAX_DELAY = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => new Date(),
  nowMs: () => Date.now(),
  setTimer(fn, ms) {
    let handle: NodeJS.Timeout;
    const due = Date.now() + ms;
    const arm = () => {
      const left = due - Date.now();
      handle = setTimeout(left > MAX_DELAY ? arm : fn, Math.min(Math.max(0, left), MAX_DELAY));
      handle.unref();
    };
    arm();
    return { cancel: () => clearTimeout(handle) };
  },
};
