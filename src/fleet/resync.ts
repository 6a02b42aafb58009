import type { Logger } from 'pino';
import type { Stapler } from '../service/stapler.js';
import type { RedisCoordinator } from './redis-coordinator.js';

/**
 * After (re)connecting to the shared store: publish what this node fetched meanwhile (where it is newer),
 * then adopt what other nodes published (verified). Idempotent; runs on every reconnect of either the
 * command or the subscriber connection, since a publication can be missed while the subscriber is away.
 */
export async function resyncWithFleet(coordinator: RedisCoordinator, stapler: Stapler, log: Logger): Promise<void> {
  try {
    const mine = stapler.current().map(([r, st]) => ({ fingerprint: r.leaf.fingerprint, staple: st }));
    const pushed = await coordinator.sync(mine);
    for (const fp of new Set(stapler.records().map((r) => r.leaf.fingerprint))) await stapler.adoptShared(fp);
    log.info({ shared: pushed }, 'resynchronised with the shared store');
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'resynchronising with the shared store failed; will retry on the next reconnect');
  }
}
