/**
 * The read side at scale (issue 14): size and time of a scrape, of JSON pages (first, deep, filtered) and
 * of the status page, and how long the event loop stalls while a scrape runs (a /healthz round trip on a
 * kept-alive connection, sent back to back during scrapes; idle it takes well under a millisecond).
 */
import { Agent, request } from 'node:http';
import { encodeCursor } from '../src/http/catalog.js';

export interface ReadFigure {
  what: string;
  path: string;
  /** Median of the runs: ms from sending to the last byte, and body bytes. */
  ms: number;
  bytes: number;
  status: number;
}

export interface ReadsResult {
  figures: ReadFigure[];
  /** Longest /healthz round trip while scrapes ran, and with nothing else running, ms. */
  healthzMaxDuringScrapeMs: number;
  healthzMaxIdleMs: number;
  /** Where the resident memory is, from the daemon's own process metrics (MB). */
  memory: Record<string, number>;
}

/** The daemon's V8 heap spaces and external memory, from its /metrics (prom-client's default metrics). */
function memoryOf(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  const mb = (re: RegExp): number => Number(re.exec(metrics)?.[1] ?? NaN) / 2 ** 20;
  out['heap used'] = mb(/^staplerd_nodejs_heap_size_used_bytes (\S+)$/m);
  out['heap total'] = mb(/^staplerd_nodejs_heap_size_total_bytes (\S+)$/m);
  out['external'] = mb(/^staplerd_nodejs_external_memory_bytes (\S+)$/m);
  for (const m of metrics.matchAll(/^staplerd_nodejs_heap_space_size_used_bytes\{space="(\w+)"\} (\S+)$/gm)) out[`${m[1]} used`] = Number(m[2]) / 2 ** 20;
  for (const m of metrics.matchAll(/^staplerd_nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)$/gm)) out[`${m[1]} total`] = Number(m[2]) / 2 ** 20;
  return out;
}

function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      let s = '';
      res.setEncoding('utf8').on('data', (c: string) => (s += c));
      res.on('end', () => resolve(s));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function get(url: string): Promise<{ ms: number; bytes: number; status: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    request(url, { agent }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ ms: performance.now() - t0, bytes, status: res.statusCode ?? 0 }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Back-to-back /healthz round trips until `stop` resolves; the longest one, ms. */
async function pingUntil(base: string, stop: Promise<unknown>): Promise<number> {
  let done = false;
  void stop.finally(() => (done = true));
  let max = 0;
  while (!done) max = Math.max(max, (await get(`${base}/healthz`)).ms);
  return max;
}

/** Names are the bundles' file names (bench/certs.ts): leaf-0000042. */
const leafName = (i: number): string => `leaf-${String(i).padStart(7, '0')}`;

export async function measureReads(base: string, certificates: number, runs = 5): Promise<ReadsResult> {
  // First, before the reads below allocate anything: what the idle daemon holds.
  const memory = memoryOf(await getText(`${base}/metrics`));
  const middle = encodeCursor(leafName(Math.floor(certificates / 2)));
  const targets: Array<[string, string]> = [
    ['/metrics', '/metrics'],
    ['JSON, first page (100)', '/v1/certificates'],
    ['JSON, a page of 500 from the middle', `/v1/certificates?limit=500&cursor=${middle}`],
    ['JSON, filtered state=revoked (none)', '/v1/certificates?state=revoked'],
    ['status page /', '/'],
    ['status page, a middle page', `/?cursor=${middle}`],
  ];
  const figures: ReadFigure[] = [];
  for (const [what, path] of targets) {
    const rs = [];
    for (let i = 0; i < runs; i++) rs.push(await get(base + path));
    figures.push({ what, path, ms: median(rs.map((r) => r.ms)), bytes: median(rs.map((r) => r.bytes)), status: rs[0]!.status });
  }
  const idle = new Promise((r) => setTimeout(r, 1000));
  const healthzMaxIdleMs = await pingUntil(base, idle);
  const scrapes = (async () => {
    for (let i = 0; i < runs; i++) await get(`${base}/metrics`);
  })();
  const healthzMaxDuringScrapeMs = await pingUntil(base, scrapes);
  return { figures, healthzMaxDuringScrapeMs, healthzMaxIdleMs, memory };
}
