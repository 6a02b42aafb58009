/**
 * `Connection: close` load the way nginx and Apache fetch: a new TCP connection per request, an HTTP/1.0
 * request, the answer read until the server closes. autocannon is not used here: with `Connection: close`
 * it writes the next request into the closing socket and reports lost requests and inflated latencies.
 * Usage: node dist/bench/close-load.js SPEC.json -> one JSON line (LoadResult).
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { finish, resultOf, window } from './gen-common.js';

export interface CloseLoadSpec {
  port: number;
  connections: number;
  durationSec: number;
  warmupSec: number;
  /** Complete raw requests (request line, headers, body), base64; cycled in order. */
  rawBase64: string[];
}

interface One {
  status: number;
  ms: number;
}

function once(port: number, raw: Buffer): Promise<One | undefined> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    const s = connect({ port, host: '127.0.0.1', noDelay: true }, () => s.write(raw));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => resolve(undefined));
    s.on('close', () => {
      const head = Buffer.concat(chunks).subarray(0, 16).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve(m ? { status: Number(m[1]), ms: performance.now() - t0 } : undefined);
    });
  });
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as CloseLoadSpec;
  const raws = spec.rawBase64.map((b) => Buffer.from(b, 'base64'));
  const latencies: number[] = [];
  const statusCounts: Record<string, number> = {};
  let errors = 0;
  let measuring = false;
  let stopped = false;
  window(spec.warmupSec, spec.durationSec, () => (measuring = true), () => {
    measuring = false;
    stopped = true;
  });
  await Promise.all(
    Array.from({ length: spec.connections }, async (_, slot) => {
      for (let i = slot; !stopped; i++) {
        // Only requests started and finished inside the window count.
        const counted = measuring;
        const r = await once(spec.port, raws[i % raws.length]!);
        if (!counted || !measuring) continue;
        if (!r) {
          errors++;
          continue;
        }
        latencies.push(r.ms);
        statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
      }
    }),
  );
  finish(resultOf(latencies, statusCounts, errors, spec.durationSec));
}

void main();
