import type { Logger } from 'pino';
import { errorCode, StaplerError } from '../errors.js';
import { backoffMs, nextRefreshAt, servableUntil, unknownRetryMs, type Rand, type RefreshPolicy } from '../pki/freshness.js';
import { stateOf, type Entry, type EntryState, type Staple } from './staple.js';

/** What a commit needs besides the entry: the time, the policy, randomness for jitter, the log. */
export interface CommitContext {
  now: Date;
  policy: RefreshPolicy;
  rand: Rand;
  log: Logger;
}

/** A commit's outcome: when to run next (null: drop the job) and what the caller must pass on. */
export interface Commit {
  next: Date | null;
  /** `new`: the entry holds a different staple now (persist it, run the sinks). `unknown`: nothing to pass on. */
  event: { kind: 'new'; staple: Staple } | { kind: 'kept' } | { kind: 'unknown' } | { kind: 'failed' } | { kind: 'aborted' };
}

/**
 * A verified response arrived for the SHA-1 form: one synchronous step on the entry (STYLE rule 8).
 * Never replaces a staple by an older one (RFC 9919 §4: a CDN or a lagging replica can serve stale data).
 */
export function commitSuccess(e: Entry, fresh: Staple, maxAge: number | undefined, c: CommitContext): Commit {
  if (fresh.status.kind === 'unknown') return commitUnknown(e, fresh, c);
  const held = e.staple;
  if (held && fresh.thisUpdateMs < held.thisUpdateMs) {
    return commitFailure(e, new StaplerError('OCSP_OLDER', `thisUpdate ${fresh.thisUpdate.toISOString()} < ${held.thisUpdate.toISOString()}`), c);
  }
  // Only a newer thisUpdate replaces the held staple (issue 12 item 1): the same thisUpdate with other bytes
  // (re-signed, another replica) says nothing new, and every node and sink keeps one set of bytes.
  const changed = !held || fresh.thisUpdateMs > held.thisUpdateMs;
  if (changed) e.staple = fresh;
  e.failures = 0;
  e.lastError = undefined;
  e.unknown = undefined;
  e.unknownCount = 0;
  const after = stateOf(e, c.now, c.policy.marginSeconds);
  if (changed || after !== e.reported) logNewStaple(c.log, e, e.reported, after);
  e.reported = after;
  // A fresh response keeps the fraction-of-window schedule; an unchanged one waits out the upstream max-age.
  const next = nextRefreshAt(e.staple!, c.now, c.policy, c.rand, changed ? undefined : maxAge);
  return { next, event: changed ? { kind: 'new', staple: fresh } : { kind: 'kept' } };
}

/**
 * The CA answered `unknown` (issue 13 item 2): a signed answer, but not a staple. The held good or revoked
 * staple stays and is served while servable; the answer is kept for the views only, and asked again soon
 * (1, 2, 4 ... minutes: a certificate issued minutes ago usually becomes known within minutes).
 */
export function commitUnknown(e: Entry, fresh: Staple, c: CommitContext): Commit {
  if (!e.unknown || fresh.thisUpdateMs >= e.unknown.thisUpdateMs) e.unknown = fresh;
  e.unknownCount++;
  e.failures = 0;
  e.lastError = { code: 'OCSP_CERT_UNKNOWN', message: `responder answered unknown (thisUpdate ${fresh.thisUpdate.toISOString()}): not served`, at: c.now };
  const after = stateOf(e, c.now, c.policy.marginSeconds);
  const changed = after !== e.reported || e.unknownCount === 1;
  e.reported = after;
  const delay = retryDelayMs(e, c.now.getTime(), c.policy, unknownRetryMs(e.unknownCount, c.policy, c.rand));
  const fields = { cert: e.record.name, code: 'OCSP_CERT_UNKNOWN', state: after, answers: e.unknownCount, thisUpdate: fresh.thisUpdate.toISOString(), retryInSeconds: Math.round(delay / 1000) };
  if (changed) c.log.warn(fields, 'responder does not know the certificate (unknown): not served, asking again soon');
  else c.log.debug(fields, 'responder still answers unknown');
  return { next: new Date(c.now.getTime() + delay), event: { kind: 'unknown' } };
}

/** A fetch failed: count it, log the change (not every attempt), back off. The held staple stays. */
export function commitFailure(e: Entry, err: unknown, c: CommitContext): Commit {
  const code = errorCode(err, 'FETCH_CONNECT');
  if (code === 'FETCH_ABORTED') return { next: null, event: { kind: 'aborted' } }; // shutting down: not the responder's failure
  const repeated = e.lastError?.code === code;
  e.failures++;
  e.lastError = { code, message: err instanceof Error ? err.message : String(err), at: c.now };
  const after = stateOf(e, c.now, c.policy.marginSeconds);
  const changed = after !== e.reported;
  e.reported = after;
  const backoff = backoffMs(e.failures, c.policy, c.rand, err instanceof StaplerError ? err.retryAfter : undefined);
  const delay = retryDelayMs(e, c.now.getTime(), c.policy, backoff);
  logFetchFailure(c.log, e, { state: after, changed, repeated, delayMs: delay });
  return { next: new Date(c.now.getTime() + delay), event: { kind: 'failed' } };
}

/** The SHA-256 form: it never decides the state, so a failure only backs off (see Refresher). */
export function commitAlt(e: Entry, got: Staple | { error: unknown }, c: CommitContext): Date {
  if (!('error' in got) && got.status.kind === 'unknown') got = { error: new StaplerError('OCSP_CERT_UNKNOWN') };
  if (!('error' in got)) {
    if (!e.alt || got.thisUpdateMs > e.alt.thisUpdateMs) e.alt = got;
    e.altFailures = 0;
    return nextRefreshAt(e.alt, c.now, c.policy, c.rand);
  }
  e.altFailures++;
  const err = got.error;
  c.log.debug({ cert: e.record.name, code: errorCode(err, 'FETCH_CONNECT'), form: 'sha256' }, 'OCSP fetch of the SHA-256 form failed');
  return new Date(c.now.getTime() + backoffMs(e.altFailures, c.policy, c.rand, err instanceof StaplerError ? err.retryAfter : undefined));
}

/**
 * When to retry after a failed fetch: the backoff, but however long it has grown, once more 30 s before the
 * held staple stops being servable and once right after, so that losing it is noticed (and logged) at that
 * moment, not an hour later.
 */
export function retryDelayMs(e: Entry, nowMs: number, p: Pick<RefreshPolicy, 'marginSeconds'>, backoff: number): number {
  const servableIn = e.staple ? servableUntil(e.staple.nextUpdateMs, p.marginSeconds, e.staple.thisUpdateMs) - nowMs : -1;
  if (servableIn > 60_000) return Math.min(backoff, servableIn - 30_000);
  if (servableIn >= 0) return Math.min(backoff, servableIn + 1);
  return backoff;
}

/** One line per change, not per attempt: a responder that stays down does not flood the log. */
export function logFetchFailure(log: Logger, e: Entry, o: { state: EntryState; changed: boolean; repeated: boolean; delayMs: number }): void {
  const err = e.lastError!;
  const fields = { cert: e.record.name, code: err.code, error: err.message, failures: e.failures, state: o.state, retryInSeconds: Math.round(o.delayMs / 1000) };
  if (!o.changed && o.repeated) return void log.debug(fields, 'OCSP fetch failed again');
  const mustStapleLost = o.state === 'failing' && e.record.leaf.mustStaple;
  log[mustStapleLost ? 'error' : 'warn'](fields, mustStapleLost ? 'must-staple certificate has no valid staple' : 'OCSP fetch failed');
}

/**
 * A new staple: revoked is an error line; a first staple (pending → good) is the expected course and at
 * start-up would be one line per certificate, so it is debug; recoveries and other changes are info.
 */
export function logNewStaple(log: Logger, e: Entry, before: EntryState, after: EntryState): void {
  const s = e.staple!;
  const quiet = after !== 'revoked' && !(before !== after && before !== 'pending');
  if (quiet && !log.isLevelEnabled('debug')) return; // 10,000 first staples at start-up: no fields built
  const fields = { cert: e.record.name, state: after, previous: before, thisUpdate: s.thisUpdate.toISOString(), nextUpdate: s.nextUpdate.toISOString() };
  if (after === 'revoked') log.error({ ...fields, revokedAt: s.status.kind === 'revoked' ? s.status.at.toISOString() : undefined }, 'certificate is REVOKED');
  else if (before !== after && before !== 'pending') log.info(fields, 'staple state changed');
  else log.debug(fields, before === 'pending' ? 'first staple' : 'staple refreshed');
}
