import type { Logger } from 'pino';
import { errorCode } from '../errors.js';
import type { StapleStore } from '../store/store.js';
import { WriteBehind } from '../store/write-behind.js';
import { releaseMemory } from '../util/memory.js';
import type { Entry, Staple } from './staple.js';

export interface StaplePersistenceOptions {
  store: StapleStore;
  log: Logger;
  /** Staple writes wait this long and coalesce (see WriteBehind); default 500 ms. */
  delayMs?: number | undefined;
  /** True while fetches are busy: writes wait (up to PERSIST_MAX_DELAY_MS) so fetches go first. */
  busy: () => boolean;
}

/** Longest a fetched staple waits to be written while fetches are busy (see WriteBehind). */
const PERSIST_MAX_DELAY_MS = 10_000;
/**
 * A drain of at least this many staple writes is a burst big enough to release memory after at once (see
 * releaseMemory): at 100,000 certificates that is 100-200 MB right after the writes. Smaller bursts wait
 * for the MemorySettler, which collects once the daemon has gone quiet.
 */
const BURST_WRITES = 10_000;

/**
 * Staples on disk: write-behind of new staples, deletes of unused ones, reads for priming at start. What
 * is read back is raw bytes; the caller verifies them like a fetched response before serving them.
 */
export class StaplePersistence {
  readonly #o: StaplePersistenceOptions;
  readonly #writes: WriteBehind;

  constructor(o: StaplePersistenceOptions) {
    this.#o = o;
    this.#writes = new WriteBehind({ delayMs: o.delayMs ?? 500, maxDelayMs: PERSIST_MAX_DELAY_MS, defer: o.busy, onDrained: (n) => this.#afterWrites(n), concurrency: 8, log: o.log });
  }

  /** Fingerprints with something persisted, or undefined when listing failed (then each is tried). */
  async present(): Promise<ReadonlySet<string> | undefined> {
    return this.#o.store.keys().catch((err: unknown) => {
      this.#o.log.warn({ code: errorCode(err, 'STORE_IO'), err: String(err) }, 'listing persisted staples failed; trying each');
      return undefined;
    });
  }

  /** The persisted (unverified) bytes for a leaf; `present` spares a failed open for those not listed. */
  async load(fingerprint: string, present: ReadonlySet<string> | undefined): Promise<Uint8Array | undefined> {
    if (present && !present.has(fingerprint)) return undefined;
    return (await this.#o.store.get(fingerprint))?.der;
  }

  put(e: Entry, s: Staple): void {
    const fp = e.record.leaf.fingerprint;
    // The metadata is built when the write runs: 100,000 pending writes at start-up hold a closure each,
    // not six strings each.
    this.#writes.enqueue(fp, () =>
      this.#o.store.put(fp, {
        der: s.body,
        meta: {
          name: e.record.name,
          fetchedAt: s.fetchedAt.toISOString(),
          url: e.record.url ?? '',
          status: s.status.kind,
          thisUpdate: s.thisUpdate.toISOString(),
          nextUpdate: s.nextUpdate.toISOString(),
        },
      }),
    );
  }

  drop(fingerprint: string): void {
    this.#writes.enqueue(fingerprint, () => this.#o.store.delete(fingerprint));
  }

  flush(): Promise<void> {
    return this.#writes.flush();
  }

  /** After the writes of a burst (start-up, resync) are on disk, let V8 give back what the burst took. */
  #afterWrites(written: number): void {
    if (written < BURST_WRITES || this.#o.busy()) return;
    void releaseMemory().then((done) => {
      if (done) this.#o.log.debug({ written }, 'released memory after a burst of staple writes');
    });
  }
}
