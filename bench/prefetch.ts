/**
 * Cases 3 and 4: prefetching N certificates from the project's responder (next to a plain client asking
 * that responder the same N questions at the same concurrency), then restarting over the N persisted
 * staples with the responder stopped. Also the in-process cost of one verification.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildSuccessfulResponse } from '../src/demo/index.js';
import { getUrlFor } from '../src/fetch/responder-client.js';
import { parseCertificate } from '../src/pki/certificate.js';
import { certIdOf } from '../src/pki/certid.js';
import { verifyOcspResponse, type SignerMemo } from '../src/pki/verify.js';
import { spawnDaemon, statesOf, waitPersisted, waitReady } from './daemon.js';
import { createFixture, type Fixture } from './fixture.js';
import { benchScript, spawnNode } from './proc.js';

export interface PrefetchResult {
  certificates: number;
  concurrency: number;
  /** Plain client, same requests, same concurrency: first request sent to last answer read, ms. */
  upstreamOnlyMs: number;
  /** The plain client's own CPU (user + system) per request, µs: what the HTTP exchange alone costs a client. */
  plainClientCpuMicros: number;
  /** staplerd: first request seen by the responder to /readyz 200, ms. */
  staplerdMs: number;
  ratio: number;
  /** staplerd: spawn to /readyz 200 (includes loading N certificate files), ms. */
  spawnToReadyMs: number;
  /** Daemon CPU from spawn to ready, per certificate (load, fetch, verify, persist), ms. */
  daemonCpuPerCertMs: number;
  states: Record<string, number>;
  /** In-process verifyOcspResponse over real responses (shared signer memo, as the daemon), µs each. */
  verifyMicros: number;
  /** In-process signing of one response by the demo responder code, µs: the upstream's unit cost. */
  signMicros: number;
  setup: { mintMs: number; writeMs: number };
}

export interface StartupResult {
  certificates: number;
  /** Each restart: spawn to /readyz 200, ms, and RSS then. */
  runs: Array<{ readyMs: number; rssMB: number; cpuSec: number; good: number }>;
  readyMs: number;
  rssMB: number;
}

async function plainClient(fx: Fixture, count: number, concurrency: number): Promise<{ elapsedMs: number; ok: number; failed: number; cpuMicrosPerRequest: number }> {
  const urls = fx.leaves.slice(0, count).map((l) => getUrlFor(fx.upstreamUrl, fx.minter.request(l)));
  const file = join(fx.tmp, `urls-${count}.txt`);
  await writeFile(file, urls.join('\n') + '\n');
  const child = spawnNode(benchScript('plain-client'), [file, String(concurrency)]);
  const r = await child.waitLine<{ elapsedMs: number; ok: number; failed: number; cpuMicrosPerRequest: number }>((l) => typeof l.elapsedMs === 'number', 600_000);
  await child.exited;
  return r;
}

/** verifyOcspResponse and buildSuccessfulResponse, in this process, over `n` leaves. */
function unitCosts(fx: Fixture, n: number): { verifyMicros: number; signMicros: number } {
  const issuer = parseCertificate(fx.minter.pki.issuer.der, 'issuer');
  const now = new Date();
  const leaves = fx.leaves.slice(0, n).map((l) => parseCertificate(new Uint8Array(l.der), l.name));
  let t = performance.now();
  const ders = leaves.map((leaf) =>
    buildSuccessfulResponse({
      responses: [{ certId: certIdOf(leaf, issuer, 'sha1'), status: { kind: 'good' }, thisUpdate: new Date(now.getTime() - 60_000), nextUpdate: new Date(now.getTime() + 3_600_000) }],
      signer: fx.minter.pki.ocspSigner,
      producedAt: now,
    }),
  );
  const signMicros = ((performance.now() - t) * 1000) / n;
  const memo: SignerMemo = new Map();
  const policy = { skewSeconds: 300, marginSeconds: 300 };
  const verify = (i: number): unknown => verifyOcspResponse({ der: ders[i]!, leaf: leaves[i]!, issuer, now, policy, memo });
  // The first tenth warms the JIT and the signer memo; the rest is timed.
  const warm = Math.floor(n / 10);
  for (let i = 0; i < warm; i++) verify(i);
  t = performance.now();
  for (let i = warm; i < n; i++) verify(i);
  return { verifyMicros: ((performance.now() - t) * 1000) / (n - warm), signMicros };
}

export interface PrefetchOptions {
  certs: number;
  concurrency: number;
  restarts: number;
  logLevel: string;
  /** node options of the prefetching daemon and of the restarted ones (e.g. --cpu-prof). */
  prefetchNodeArgs?: string[];
  startupNodeArgs?: string[];
}

export async function prefetchAndStartup(o: PrefetchOptions): Promise<{ prefetch: PrefetchResult; startup: StartupResult }> {
  const fx = await createFixture({ label: 'prefetch', count: o.certs, concurrency: o.concurrency, logLevel: o.logLevel });
  try {
    // Warm the responder's JIT with a share of the requests, then the reference run.
    await plainClient(fx, Math.min(o.certs, 2000), o.concurrency);
    const plain = await plainClient(fx, o.certs, o.concurrency);
    if (plain.failed > 0) throw new Error(`plain client: ${plain.failed} requests failed`);
    await fx.upstream.ask('reset');

    const daemon = await spawnDaemon(fx.configPath, o.prefetchNodeArgs);
    const ready = await waitReady(daemon, 20, 600_000);
    const stats = await fx.upstream.ask<{ requests: number; first: number; last: number }>('stats');
    const states = await statesOf(daemon);
    await waitPersisted(fx.dataDir, o.certs, 300_000);
    await daemon.child.stop();
    const staplerdMs = ready.at - stats.first;
    const prefetch: PrefetchResult = {
      certificates: o.certs,
      concurrency: o.concurrency,
      upstreamOnlyMs: plain.elapsedMs,
      plainClientCpuMicros: plain.cpuMicrosPerRequest,
      staplerdMs,
      ratio: staplerdMs / plain.elapsedMs,
      spawnToReadyMs: ready.at - daemon.spawnedAt,
      daemonCpuPerCertMs: (ready.cpuSec * 1000) / o.certs,
      states,
      ...unitCosts(fx, Math.min(o.certs, 2000)),
      setup: { mintMs: fx.mintMs, writeMs: fx.writeMs },
    };

    await fx.upstream.stop();
    const runs: StartupResult['runs'] = [];
    for (let i = 0; i < o.restarts; i++) {
      const d = await spawnDaemon(fx.configPath, o.startupNodeArgs);
      const r = await waitReady(d, 10, 120_000);
      const st = await statesOf(d);
      runs.push({ readyMs: r.at - d.spawnedAt, rssMB: r.rssMB, cpuSec: r.cpuSec, good: st['good'] ?? 0 });
      await d.child.stop();
    }
    const mid = [...runs].sort((a, b) => a.readyMs - b.readyMs)[Math.floor(runs.length / 2)]!;
    return { prefetch, startup: { certificates: o.certs, runs, readyMs: mid.readyMs, rssMB: mid.rssMB } };
  } finally {
    await fx.cleanup();
  }
}
