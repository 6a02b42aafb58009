import type { Logger } from 'pino';
import { servableUntil, type RefreshPolicy } from '../pki/freshness.js';
import type { Entry, EntryState } from './staple.js';

/**
 * When to retry after a failed fetch: the backoff, but however long it has grown, once more 30 s before the
 * held staple stops being servable and once right after, so that losing it is noticed (and logged) at that
 * moment, not an hour later.
 */
export function retryDelayMs(e: Entry, nowMs: number, p: Pick<RefreshPolicy, 'marginSeconds'>, backoff: number): number {
  const servableIn = e.staple ? servableUntil(e.staple.nextUpdateMs, p.marginSeconds) - nowMs : -1;
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
