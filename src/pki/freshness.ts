/**
 * When to refresh, when to retry, whether a staple may be served. Pure: times in, times out.
 */
export interface RefreshPolicy {
  /** Refresh at thisUpdate + fraction × (nextUpdate − thisUpdate); RFC 9919 §4 and certmagic use 0.5. */
  fraction: number;
  /** Up to this fraction of the validity window is taken off the refresh time at random, so a fleet spreads. */
  jitter: number;
  /** Never schedule a refresh sooner than this after now, seconds (protects the CA from tight loops). */
  minIntervalSeconds: number;
  /** First retry delay after a failure, seconds; doubles per consecutive failure. */
  backoffInitialSeconds: number;
  /** Cap on the retry delay, seconds. */
  backoffMaxSeconds: number;
  /** A staple is served only while now < nextUpdate − margin, the margin at most a tenth of its window. */
  marginSeconds: number;
}

export interface Window {
  thisUpdate: Date;
  nextUpdate: Date;
}

/** Random source in [0, 1), injected so tests are deterministic. */
export type Rand = () => number;

/**
 * Refresh time for a staple. `notBeforeSeconds` is the upstream `Cache-Control: max-age` (RFC 9919 §6.2)
 * when the responder just gave us the response we already held: it will not change before then, so asking
 * sooner is wasted. It is never honoured past one retry interval before the staple stops being servable.
 */
export function nextRefreshAt(w: Window, now: Date, p: RefreshPolicy, rand: Rand, notBeforeSeconds?: number): Date {
  const t = w.thisUpdate.getTime();
  const span = Math.max(0, w.nextUpdate.getTime() - t);
  let at = t + p.fraction * span - rand() * p.jitter * span;
  if (notBeforeSeconds !== undefined && notBeforeSeconds > 0) at = Math.max(at, now.getTime() + notBeforeSeconds * 1000);
  const servableEnd = servableUntil(w.nextUpdate, p.marginSeconds, w.thisUpdate);
  // Leave at least one retry interval before the staple stops being servable.
  at = Math.min(at, servableEnd - p.backoffInitialSeconds * 1000);
  return new Date(Math.max(at, now.getTime() + p.minIntervalSeconds * 1000));
}

/**
 * Delay before retry number `failures` (1 = first failure): exponential with "equal jitter" (half fixed,
 * half random) so retries neither synchronise nor collapse to zero; Retry-After raises it, the cap bounds it.
 */
export function backoffMs(failures: number, p: RefreshPolicy, rand: Rand, retryAfterSeconds?: number): number {
  const exp = Math.min(p.backoffMaxSeconds, p.backoffInitialSeconds * 2 ** Math.min(30, Math.max(0, failures - 1)));
  let delay = exp / 2 + (rand() * exp) / 2;
  if (retryAfterSeconds !== undefined && retryAfterSeconds > 0) delay = Math.max(delay, retryAfterSeconds);
  return Math.min(delay, p.backoffMaxSeconds) * 1000;
}

/** First retry after a CA answered `unknown`, seconds: CAs answer it for certificates issued minutes ago. */
const UNKNOWN_FIRST_RETRY_SECONDS = 60;

/**
 * Delay before asking again after the `n`-th `unknown` in a row (1 = first): 1, 2, 4, 8 ... minutes, since a
 * newly issued certificate usually becomes known within minutes, then the failure cap (backoffMax). Up to a
 * tenth is taken off at random so a fleet does not ask in step.
 */
export function unknownRetryMs(n: number, p: Pick<RefreshPolicy, 'backoffMaxSeconds'>, rand: Rand): number {
  const s = Math.min(p.backoffMaxSeconds, UNKNOWN_FIRST_RETRY_SECONDS * 2 ** Math.min(30, Math.max(0, n - 1)));
  return (s - rand() * 0.1 * s) * 1000;
}

const ms = (d: Date | number): number => (typeof d === 'number' ? d : d.getTime());

/**
 * Epoch ms until which a staple may be served: nextUpdate − margin, where the margin is at most a tenth of
 * the validity window when thisUpdate is given (issue 13 item 3: a response valid for 4 minutes was never
 * served under a 5-minute margin). HAProxy's own 300 s rule is the HAProxy sink's, not this one.
 */
export function servableUntil(nextUpdate: Date | number, marginSeconds: number, thisUpdate?: Date | number): number {
  const next = ms(nextUpdate);
  const margin = marginSeconds * 1000;
  return next - (thisUpdate === undefined ? margin : Math.min(margin, Math.max(0, next - ms(thisUpdate)) / 10));
}

export function isServable(nextUpdate: Date | number, now: Date, marginSeconds: number, thisUpdate?: Date | number): boolean {
  return now.getTime() < servableUntil(nextUpdate, marginSeconds, thisUpdate);
}
