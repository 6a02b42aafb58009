/**
 * Case 5: many tracked certificates with staples (fetched from the project's responder): RSS, the CPU
 * the daemon burns while nothing is due (no per-certificate timers spinning), then the read side at that
 * size (reads.ts).
 */
import { spawnDaemon, statesOf, waitPersisted, waitReady } from './daemon.js';
import { createFixture } from './fixture.js';
import { cpuSeconds, epochMs, memoryMB, sleep } from './proc.js';
import { measureReads, type ReadsResult } from './reads.js';

export interface ScaleResult {
  certificates: number;
  setup: { mintMs: number; writeMs: number };
  /** Spawn to /readyz 200: loading N files and fetching N staples, ms. */
  spawnToReadyMs: number;
  states: Record<string, number>;
  /** RSS when ready, after the idle window, and the peak (VmHWM), MB. */
  rssReadyMB: number;
  rssIdleMB: number;
  peakMB: number;
  idleWindowSec: number;
  /**
   * CPU seconds per minute while idle, and as % of one core, over a window of the same length that starts
   * two windows after the first: those hold the one-off collections after the burst (the burst release,
   * the MemorySettler), this one the steady state the target is about.
   */
  idleCpuSecPerMin: number;
  idleCpuPct: number;
  /** The same over the two windows before (after the burst's writes, with its one-off collections). */
  firstWindowCpuPct: number;
  /** Scrape, JSON pages and status page at this size, after the idle window. */
  reads: ReadsResult;
}

export async function scaleCase(o: { certs: number; idleSec: number; concurrency: number; logLevel: string; nodeArgs?: string[] }): Promise<ScaleResult> {
  const fx = await createFixture({ label: 'scale', count: o.certs, concurrency: o.concurrency, logLevel: o.logLevel });
  try {
    const daemon = await spawnDaemon(fx.configPath, o.nodeArgs ?? [], 1_800_000);
    try {
      const ready = await waitReady(daemon, 250, 1_800_000);
      const states = await statesOf(daemon);
      await waitPersisted(fx.dataDir, o.certs, 600_000);
      // Nothing is due for ~25 minutes now; the responder is not needed and would only add noise.
      await fx.upstream.stop();
      await sleep(2000);
      const pid = daemon.child.pid;
      const c0 = cpuSeconds(pid);
      const t0 = epochMs();
      await sleep(o.idleSec * 1000);
      const seconds = (epochMs() - t0) / 1000;
      const mem = memoryMB(pid);
      // The one-off collections after the burst (the burst release, then the MemorySettler once two of its
      // 5 s looks are quiet) fall within ~20 s of the writes; the steady window starts after them.
      await sleep(o.idleSec * 1000);
      const firstSeconds = (epochMs() - t0) / 1000;
      const firstCpu = cpuSeconds(pid) - c0;
      const c1 = cpuSeconds(pid);
      const t1 = epochMs();
      await sleep(o.idleSec * 1000);
      const steadySeconds = (epochMs() - t1) / 1000;
      const cpu = cpuSeconds(pid) - c1;
      const reads = await measureReads(daemon.url, o.certs);
      return {
        certificates: o.certs,
        setup: { mintMs: fx.mintMs, writeMs: fx.writeMs },
        spawnToReadyMs: ready.at - daemon.spawnedAt,
        states,
        rssReadyMB: ready.rssMB,
        rssIdleMB: mem.rss,
        peakMB: mem.peak,
        idleWindowSec: seconds,
        idleCpuSecPerMin: (cpu / steadySeconds) * 60,
        idleCpuPct: (cpu / steadySeconds) * 100,
        firstWindowCpuPct: (firstCpu / firstSeconds) * 100,
        reads,
      };
    } finally {
      await daemon.child.stop();
    }
  } finally {
    await fx.cleanup();
  }
}
