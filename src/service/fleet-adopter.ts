import type { Logger } from 'pino';
import { errorCode } from '../errors.js';
import type { FetchCoordinator } from '../fleet/coordinator.js';
import type { CertIndex } from './cert-index.js';
import type { Refresher } from './refresher.js';
import type { StapleFetcher } from './staple-fetcher.js';
import type { Staple } from './staple.js';

export interface FleetAdopterOptions {
  index: CertIndex;
  coordinator: FetchCoordinator;
  fetcher: StapleFetcher;
  refresher: Refresher;
  log: Logger;
}

/**
 * Another node published a staple (fleet mode): the notice becomes verify-then-commit, like boulder's
 * checked source around its base. The shared bytes are verified here for every certificate with that
 * fingerprint, exactly as a fetched response, and only then committed (which runs the sinks and
 * reschedules).
 */
export class FleetAdopter {
  readonly #o: FleetAdopterOptions;

  constructor(o: FleetAdopterOptions) {
    this.#o = o;
  }

  async adopt(fingerprint: string): Promise<void> {
    const targets = this.#o.index.withFingerprint(fingerprint).filter((e) => e.record.url);
    if (targets.length === 0) return;
    const der = await this.#o.coordinator.shared(fingerprint).catch(() => undefined);
    if (!der) return;
    for (const e of targets) {
      const generation = e.generation;
      let staple: Staple;
      try {
        staple = await this.#o.fetcher.verify(e.record, der);
      } catch (err) {
        this.#o.log.warn({ cert: e.record.name, code: errorCode(err, 'OCSP_MALFORMED') }, 'shared staple failed verification: ignored');
        continue;
      }
      // A shared `unknown` is not a staple (issue 13 item 2); nodes ask the CA themselves on the short schedule.
      if (staple.status.kind === 'unknown') continue;
      if (e.staple && staple.thisUpdateMs <= e.staple.thisUpdateMs) continue;
      this.#o.refresher.adopt(e, generation, staple);
    }
  }
}
