/**
 * staplerd as the benchmark runs it: `node dist/src/cli.js serve -c <tmp>/staplerd.yaml` in a child
 * process, listening on port 0 (the URL is read from its "listening" log line), certificates from one
 * watched directory of PEM bundles.
 */
import { writeFile } from 'node:fs/promises';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, cpuSeconds, epochMs, httpRequest, memoryMB, pollUntil, sleep, spawnNode, type Child } from './proc.js';

export interface DaemonConfig {
  dir: string;
  certsDir: string;
  dataDir: string;
  /** fetch.concurrency and fetch.perHostConcurrency, both set explicitly. */
  concurrency: number;
  logLevel: string;
}

export const OCSP_PREFIX = '/ocsp';

export async function writeDaemonConfig(c: DaemonConfig): Promise<string> {
  const doc = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: c.dataDir,
    logLevel: c.logLevel,
    ocsp: { pathPrefix: OCSP_PREFIX },
    directories: [{ path: c.certsDir, pattern: '*.pem' }],
    fetch: { concurrency: c.concurrency, perHostConcurrency: c.concurrency },
  };
  const path = join(c.dir, 'staplerd.yaml');
  // JSON is YAML: no quoting questions for temp paths.
  await writeFile(path, `# written by npm run bench\n${JSON.stringify(doc, null, 2)}\n`);
  return path;
}

export interface RunningDaemon {
  child: Child;
  url: string;
  /** epochMs() just before spawn. */
  spawnedAt: number;
}

export async function spawnDaemon(configPath: string, nodeArgs: string[] = [], timeoutMs = 600_000): Promise<RunningDaemon> {
  const spawnedAt = epochMs();
  const child = spawnNode(CLI, ['serve', '-c', configPath], nodeArgs);
  try {
    const line = await child.waitLine<{ msg?: string; url?: string }>((l) => typeof l.url === 'string' && /listening/.test(l.msg ?? ''), timeoutMs);
    return { child, url: line.url!, spawnedAt };
  } catch (e) {
    await child.stop('SIGKILL');
    throw e;
  }
}

/** Polls /readyz until 200; returns epochMs() of the first 200 and the RSS/CPU sampled right then. */
/**
 * Polls /readyz every `everyMs` once few certificates are left waiting, and every 100 ms before that:
 * each poll walks every certificate, and polling 10,000 of them at 50 Hz would load the daemon it times.
 */
export async function waitReady(d: RunningDaemon, everyMs: number, timeoutMs: number): Promise<{ at: number; rssMB: number; cpuSec: number }> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const r = await httpRequest(`${d.url}/readyz`).catch(() => undefined);
    if (r?.status === 200) return { at: epochMs(), rssMB: memoryMB(d.child.pid).rss, cpuSec: cpuSeconds(d.child.pid) };
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for /readyz 200`);
    let waiting = Infinity;
    try {
      waiting = (JSON.parse(r?.body.toString('utf8') ?? '') as { waitingCount?: number }).waitingCount ?? Infinity;
    } catch {
      // not up yet
    }
    await sleep(waiting > SLOW_POLL_ABOVE ? Math.max(everyMs, 100) : everyMs);
  }
}

/** Certificates still waiting above which /readyz is polled slowly. */
const SLOW_POLL_ABOVE = 300;

/** Certificates by state: the JSON API's counts (over every certificate, whatever the page). */
export async function statesOf(d: RunningDaemon): Promise<Record<string, number>> {
  const r = await httpRequest(`${d.url}/v1/certificates?limit=1`);
  if (r.status !== 200) throw new Error(`/v1/certificates answered ${r.status}`);
  const counts = (JSON.parse(r.body.toString('utf8')) as { counts: Record<string, number> }).counts;
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
}

/** Waits until `count` staples are on disk (persistence is asynchronous to readiness). */
export async function waitPersisted(dataDir: string, count: number, timeoutMs: number): Promise<void> {
  await pollUntil(
    async () => {
      const names = await readdir(join(dataDir, 'staples'));
      return names.filter((n) => n.endsWith('.der')).length >= count ? true : undefined;
    },
    200,
    timeoutMs,
    `${count} persisted staples`,
  );
}
