/**
 * Keep-alive load: autocannon in its own process, through its programmatic API because the CLI reads
 * request bodies as UTF-8 (a DER OCSPRequest would be mangled) and cannot mix requests without a HAR file.
 * Usage: node dist/bench/ac-load.js SPEC.json -> one JSON line (LoadResult).
 * Requests are cycled in order on each of the connections; a warm-up run is made and discarded first.
 * autocannon's latency histogram has 1 ms resolution: its p50/p99 are whole milliseconds.
 */
import autocannon, { type AutocannonOptions, type AutocannonResult } from 'autocannon';
import { readFileSync } from 'node:fs';
import { finish, say, type LoadResult } from './gen-common.js';

export interface LoadSpec {
  url: string;
  connections: number;
  durationSec: number;
  warmupSec: number;
  requests: Array<{ method: 'GET' | 'POST'; path: string; headers?: Record<string, string>; bodyBase64?: string }>;
}

function run(o: AutocannonOptions): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => autocannon(o, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as LoadSpec;
  const requests = spec.requests.map((r) => ({
    method: r.method,
    path: r.path,
    headers: r.headers ?? {},
    ...(r.bodyBase64 === undefined ? {} : { body: Buffer.from(r.bodyBase64, 'base64') }),
  }));
  const base = { url: spec.url, connections: spec.connections, requests };
  if (spec.warmupSec > 0) await run({ ...base, duration: spec.warmupSec });
  say({ phase: 'measure' });
  const r = await run({ ...base, duration: spec.durationSec });
  say({ phase: 'done' });
  const statusCounts: Record<string, number> = {};
  for (const [code, v] of Object.entries(r.statusCodeStats ?? {})) statusCounts[code] = v.count;
  const result: LoadResult = {
    requests: r.requests.total,
    durationSec: r.duration,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    statusCounts,
    errors: r.errors + r.timeouts,
  };
  finish(result);
}

void main();
