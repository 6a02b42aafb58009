/**
 * Fleet mode with real processes (issue 7): five `staplerd serve` children share one private redis-server
 * and watch one directory of 200 certificates; one upstream responder in this process counts what it is
 * asked. The CA sees about one fetch per certificate, not five; every node serves every staple, byte for
 * byte the same; a node killed with SIGKILL takes nothing with it; Redis stopping and coming back is seen
 * in /readyz and never stops the serving.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { issueCertificate } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { parseCertificate, type CertInfo } from '../../src/pki/certificate.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import type { CertificateView } from '../../src/service/staple.js';
import { fixture } from '../helpers/pki.js';
import { startStaplerd, suiteBinaries, tempDir, waitFor, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const CERTS = 200;
const NODES = 5;
const PREFIX = 'e2e-fleet:';
const bins = suiteBinaries(['redis-server'], 'fleet mode with five staplerd processes');

interface Readiness {
  ready: boolean;
  store: { kind: string; connected: boolean };
}

const nameOf = (i: number): string => `fleet-${String(i).padStart(3, '0')}`;

describe('fleet mode: five staplerd processes share one Redis', { skip: bins.skip, timeout: 60_000 }, () => {
  const f = fixture();
  let tmp: Awaited<ReturnType<typeof tempDir>> | undefined;
  let redis: RedisServer | undefined;
  let responder: DemoResponder | undefined;
  let leaves: CertInfo[] = [];
  let nodes: Staplerd[] = [];
  let live: Staplerd[] = [];

  /** GET /readyz whatever its status (503 still carries the store detail). */
  async function readiness(n: Staplerd): Promise<{ status: number; body: Readiness }> {
    const r = await n.get('/readyz');
    return { status: r.status, body: (await r.json()) as Readiness };
  }

  async function stapleBytes(n: Staplerd, name: string): Promise<Buffer> {
    const r = await n.get(`/v1/certificates/${name}/ocsp`);
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(r.status, 200, `${name} on ${n.url}: HTTP ${r.status} ${body.toString('utf8').slice(0, 200)}`);
    return body;
  }

  /** Throws unless `body` is a good, currently valid staple for leaf `i` from our CA. */
  function verified(i: number, body: Buffer): void {
    const v = verifyOcspResponse({ der: new Uint8Array(body), leaf: leaves[i]!, issuer: f.issuer, now: new Date(), policy: { skewSeconds: 300, marginSeconds: 300 } });
    assert.equal(v.status.kind, 'good', nameOf(i));
  }

  const resyncs = (n: Staplerd): number => n.logs().filter((l) => l.msg === 'resynchronised with the shared store').length;

  before(async () => {
    const redisBin = bins.path('redis-server');
    tmp = await tempDir('fleet');
    redis = await startRedis(redisBin);
    responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: new Map() });
    const certsDir = join(tmp.dir, 'certs');
    await mkdir(certsDir);
    const now = Date.now();
    for (let i = 0; i < CERTS; i++) {
      // One key for every leaf: key generation would dominate the set-up otherwise.
      const c = issueCertificate(
        { subjectCN: `${nameOf(i)}.demo.test`, notBefore: new Date(now - 3600_000), notAfter: new Date(now + 86400_000), ocspUrls: [responder.url], ekuServerAuth: true, key: f.pki.leaves.good.key },
        f.pki.issuer,
      );
      responder.setStatus(c.serialHex, { kind: 'good' });
      leaves.push(parseCertificate(c.der));
      await writeFile(join(certsDir, `${nameOf(i)}.pem`), c.pem + f.pki.issuer.pem);
    }
    const configs = await Promise.all(
      Array.from({ length: NODES }, async (_, i) => {
        const dir = join(tmp!.dir, `node${i}`);
        await mkdir(dir);
        return writeStaplerdConfig(dir, {
          listen: { host: '127.0.0.1', port: 0 },
          dataDir: join(dir, 'var'),
          directories: [{ path: certsDir, pattern: '*.pem' }],
          store: { kind: 'redis', redis: { url: redis!.url, keyPrefix: PREFIX, lease: '5s', commandTimeout: '1s' } },
        });
      }),
    );
    // All at once, as a fleet rolled out together would: the case where every node wants every staple.
    const started = await Promise.allSettled(configs.map((c) => startStaplerd(c, { timeoutMs: 15_000 })));
    nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    live = [...nodes];
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  });

  after(async () => {
    await Promise.allSettled(nodes.map((n) => n.stop('SIGTERM', 5000).catch(() => n.stop('SIGKILL'))));
    await responder?.close();
    await redis?.stop();
    await tmp?.cleanup();
  });

  test('every node becomes ready with 200 good staples while the CA sees about 200 fetches, not 1,000', async () => {
    await Promise.all(nodes.map((n) => n.waitReady(20_000)));
    for (const n of nodes) {
      const { certificates } = await n.json<{ certificates: CertificateView[] }>('/v1/certificates?limit=500');
      const good = certificates.filter((c) => c.state === 'good').length;
      assert.equal(good, CERTS, `${n.url}: ${good} good of ${certificates.length}\n${n.output()}`);
      const r = await readiness(n);
      assert.deepEqual(r.body.store, { kind: 'redis', connected: true });
    }
    const fetches = responder!.stats.requests;
    const perSerial = [...responder!.stats.bySerial.values()];
    assert.equal(responder!.stats.bySerial.size, CERTS, 'every certificate was fetched by some node');
    assert.ok(fetches >= CERTS && fetches <= CERTS * 1.1, `the upstream saw ${fetches} fetches for ${CERTS} certificates on ${NODES} nodes (max per certificate ${Math.max(...perSerial)})`);
  });

  test("a certificate's staple is byte-identical on all five nodes, and verifies", async () => {
    for (const i of [0, 117, CERTS - 1]) {
      const bodies = await Promise.all(nodes.map((n) => stapleBytes(n, nameOf(i))));
      for (const b of bodies.slice(1)) assert.ok(b.equals(bodies[0]!), `${nameOf(i)}: nodes serve different staples`);
      verified(i, bodies[0]!);
    }
  });

  test('a node killed with SIGKILL: the others keep serving', async () => {
    const victim = live.shift()!;
    const expected = await stapleBytes(live[0]!, nameOf(42));
    // The others are asked while the victim dies, and after.
    const during = live.map((n) => stapleBytes(n, nameOf(42)));
    assert.equal(await victim.stop('SIGKILL', 5000), 128 + 9);
    for (const b of await Promise.all(during)) assert.ok(b.equals(expected));
    for (const n of live) {
      assert.equal((await readiness(n)).status, 200, n.output());
      assert.ok((await stapleBytes(n, nameOf(42))).equals(expected));
    }
  });

  test('Redis stops: every node says so in /readyz and keeps serving; Redis returns: they reconnect and resynchronise', async () => {
    // Readiness comes as soon as every certificate has a staple; refreshes that were waiting on another
    // node's lease may still be finishing (and would fetch directly once Redis is gone). Let them settle.
    let seen = -1;
    let stableSince = Date.now();
    await waitFor('the upstream to see no request for 1 s', 10_000, () => {
      if (responder!.stats.requests !== seen) [seen, stableSince] = [responder!.stats.requests, Date.now()];
      return Date.now() - stableSince >= 1000 ? true : undefined;
    });
    const fetchesBefore = responder!.stats.requests;
    const resyncsBefore = live.map(resyncs);
    const t0 = Date.now();
    await redis!.pause();
    await Promise.all(live.map((n) => waitFor(`${n.url} /readyz store.connected false`, 5000, async () => ((await readiness(n)).body.store.connected === false ? true : undefined))));
    const noticedMs = Date.now() - t0;
    for (const n of live) {
      const r = await readiness(n);
      assert.equal(r.status, 200, `${n.url} is no longer ready without Redis: ${JSON.stringify(r.body)}`);
      assert.deepEqual(r.body.store, { kind: 'redis', connected: false });
      assert.ok(n.logs().some((l) => /unreachable/.test(l.msg)), `${n.url} did not log that Redis is unreachable`);
      for (const i of [3, CERTS - 2]) verified(i, await stapleBytes(n, nameOf(i)));
    }

    await redis!.start();
    await Promise.all(live.map((n) => waitFor(`${n.url} /readyz store.connected true`, 10_000, async () => ((await readiness(n)).body.store.connected ? true : undefined))));
    // The restarted Redis is empty (no persistence): the nodes' resync puts every staple back.
    const raw = new Redis(redis!.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await raw.connect();
      await waitFor('200 staples back in Redis', 10_000, async () => {
        const keys = await raw.keys(`${PREFIX}staple:*`);
        return keys.length === CERTS ? true : undefined;
      });
    } finally {
      raw.disconnect();
    }
    // Logged once a node has also adopted what the others hold (after the keys above are written).
    await Promise.all(live.map((n, i) => waitFor(`${n.url} to log a resync after Redis came back`, 10_000, () => (resyncs(n) > resyncsBefore[i]! ? true : undefined))));
    assert.equal(responder!.stats.requests, fetchesBefore, 'nothing was due: the outage and the resync cost the CA nothing');
    assert.ok(noticedMs < 5000);
  });
});
