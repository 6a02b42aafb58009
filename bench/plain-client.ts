/**
 * The prefetch reference: the same OCSP GET requests staplerd would send, from a plain node:http client
 * at a fixed concurrency (keep-alive agent, maxSockets = concurrency), bodies read and not verified.
 * Usage: node dist/bench/plain-client.js URLS.txt CONCURRENCY  -> prints {"elapsedMs","ok","failed","cpuMicrosPerRequest"}.
 */
import { readFileSync } from 'node:fs';
import { Agent, get } from 'node:http';

function fetchOnce(url: string, agent: Agent): Promise<boolean> {
  return new Promise((resolve) => {
    get(url, { agent, headers: { accept: 'application/ocsp-response', 'user-agent': 'staplerd-bench' } }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve(res.statusCode === 200 && bytes > 0));
      res.on('error', () => resolve(false));
    }).on('error', () => resolve(false));
  });
}

async function main(): Promise<void> {
  const urls = readFileSync(process.argv[2] ?? '', 'utf8').split('\n').filter(Boolean);
  const concurrency = Number(process.argv[3] ?? '64');
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  let ok = 0;
  let failed = 0;
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const startedAt = performance.timeOrigin + started;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < urls.length) {
        const url = urls[next++]!;
        if (await fetchOnce(url, agent)) ok++;
        else failed++;
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  // The client's own CPU per request (user + system): the floor for any fetcher's HTTP work.
  const cpuMicrosPerRequest = (cpu.user + cpu.system) / urls.length;
  process.stdout.write(`${JSON.stringify({ elapsedMs, ok, failed, startedAt, cpuMicrosPerRequest })}\n`);
}

void main();
