import v8 from 'node:v8';
import vm from 'node:vm';
import type { Clock, Timer } from './clock.js';

type Gc = (o?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => Promise<void> | void;
let gc: Gc | null | undefined;

/**
 * Asks V8 for one full, concurrent garbage collection, after which it shrinks the heap and gives freed
 * pages back to the system. Used once after a burst (start-up fetches, a resync: hundreds of thousands of
 * short-lived objects promoted while the writes were pending): V8 sizes the heap for the burst's peak and
 * would otherwise keep that size until its memory reducer notices an idle process, if ever. At 100,000
 * certificates this is ~100-200 MB of resident memory. The marking runs concurrently; the loop pauses for
 * tens of milliseconds at most. `gc` is obtained at run time, so no command line needs --expose-gc.
 */
export async function releaseMemory(o: { compact?: boolean } = {}): Promise<boolean> {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as Gc;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  // `compact`: this one collection evacuates every fragmented page, not only the few V8's heuristics pick
  // outside its memory-reducing mode (which node never enters on its own). The flag is read on the main
  // thread when a full collection selects its pages, and is off again before anything else runs.
  if (o.compact) v8.setFlagsFromString('--compact-on-every-full-gc');
  try {
    await gc({ type: 'major', execution: 'async' });
  } finally {
    if (o.compact) v8.setFlagsFromString('--no-compact-on-every-full-gc');
  }
  return true;
}

/** What the settler reads of V8's young generation: its reserved size and the bytes allocated in it. */
export interface NewSpace {
  size: number;
  used: number;
}

export function newSpaceNow(): NewSpace {
  const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
  return { size: s?.space_size ?? 0, used: s?.space_used_size ?? 0 };
}

/** Bytes the old generation holds beyond what is in use (its fragmentation and growth headroom). */
export function oldSpaceSlackNow(): number {
  const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'old_space');
  return s ? s.space_size - s.space_used_size : 0;
}

export interface MemorySettlerOptions {
  clock: Clock;
  /**
   * How often to look; a collection waits for QUIET_LOOKS whole quiet intervals. Default 5 s: V8 judges the
   * allocation rate over the last 5 s (GCTracer kThroughputTimeFrameMs) and shrinks the young generation
   * only if that was low, so a daemon settles 10-15 s after it goes quiet.
   */
  everyMs?: number;
  /** Seams for tests; default: V8's own statistics and releaseMemory. */
  newSpace?: () => NewSpace;
  oldSlack?: () => number;
  release?: (o: { compact: boolean }) => Promise<boolean>;
  onRelease?: (before: NewSpace, after: NewSpace) => void;
}

/** Below this the young generation is at (or near) V8's minimum: nothing worth a collection. */
const SETTLED_NEW_SPACE = 4 * 1024 * 1024;
/** Allocation in one interval up to this still counts as quiet (timers, connection checks, a probe). */
const QUIET_ALLOCATION = 512 * 1024;
/**
 * Quiet intervals in a row before collecting. After one (6 s, in a first version), V8 still counted the
 * end of a start-up burst's writes in its allocation rate about half the time and kept the young
 * generation grown, which made that collection (with compaction, the dearest kind) a wasted one.
 */
const QUIET_LOOKS = 2;
/**
 * Old-generation slack above which the collection also compacts every fragmented page. Compaction moves
 * every live object and pauses the loop for it (about 200 ms at 20,000 certificates on this machine), so
 * it is spent only where it returns tens of MB: 85 MB of slack at 100,000 certificates, ~5 MB at 20,000.
 */
const COMPACT_SLACK = 32 * 1024 * 1024;

/**
 * Gives memory back once the daemon goes quiet. After any busy spell (the start-up fetches, a resync, a
 * load of requests) V8 keeps the young generation at its grown size, 32 MB on Node 20, and the old one
 * with its slack, for as long as nothing allocates: no allocation means no collection, so even its
 * memory reducer never looks. At 20,000 certificates that was ~55 MB of a 206 MB RSS after 15 s idle.
 * One full collection run while the allocation rate is low lets V8 shrink the young generation to its
 * minimum (V8 Heap::ReduceNewSpaceSize), and, where the old generation's slack is large, compaction of
 * every fragmented page (releaseMemory's `compact`) brings that one to about what is live. The settler
 * looks every `everyMs` (one small statistics call; the next look is armed only after this one ends, so
 * two never overlap) and collects once per growth of the young generation, only after QUIET_LOOKS whole quiet
 * intervals, so a daemon under load is never collected by it, and an idle one only once. The collection's
 * marking is concurrent; its pauses measured ~50 ms at 20,000 certificates without compaction.
 */
export class MemorySettler {
  readonly #o: Required<Omit<MemorySettlerOptions, 'onRelease'>> & Pick<MemorySettlerOptions, 'onRelease'>;
  #timer: Timer | undefined;
  #last: NewSpace | undefined;
  /** The young generation's size after the last collection this settler ran: collect again only above it. */
  #settledSize = SETTLED_NEW_SPACE;
  /** Collections in a row that left the young generation grown (V8 decides; two tries, then wait for growth). */
  #misses = 0;
  /** Quiet intervals in a row. */
  #quietLooks = 0;

  constructor(o: MemorySettlerOptions) {
    this.#o = { everyMs: 5000, newSpace: newSpaceNow, oldSlack: oldSpaceSlackNow, release: releaseMemory, ...o };
  }

  start(): void {
    this.#arm();
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #arm(): void {
    this.#timer = this.#o.clock.setTimer(() => void this.#look().finally(() => this.#timer && this.#arm()), this.#o.everyMs);
  }

  async #look(): Promise<void> {
    const now = this.#o.newSpace();
    const last = this.#last;
    this.#last = now;
    // Quiet: no scavenge since the last look (used only grew) and little allocated.
    const quiet = last !== undefined && now.used >= last.used && now.used - last.used <= QUIET_ALLOCATION;
    this.#quietLooks = quiet ? this.#quietLooks + 1 : 0;
    if (this.#quietLooks < QUIET_LOOKS || now.size <= this.#settledSize) return;
    if (!(await this.#o.release({ compact: this.#o.oldSlack() > COMPACT_SLACK }))) return this.stop();
    const after = this.#o.newSpace();
    this.#misses = after.size > SETTLED_NEW_SPACE ? this.#misses + 1 : 0;
    this.#settledSize = this.#misses >= 2 ? after.size : SETTLED_NEW_SPACE;
    if (this.#misses >= 2) this.#misses = 0;
    this.#last = after;
    this.#o.onRelease?.(now, after);
  }
}
