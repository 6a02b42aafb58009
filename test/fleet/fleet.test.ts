/**
 * Fleet mode against a real redis-server: nodes are in-process Staplers (each with its own client, store
 * and Redis connections) sharing one Redis and one upstream responder that counts what it is asked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { issueCertificate, type IssuedCert } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { RedisCoordinator } from '../../src/fleet/redis-coordinator.js';
import { resyncWithFleet } from '../../src/fleet/resync.js';
import { parseCertificate } from '../../src/pki/certificate.js';
import { certIdKey, certIdOf } from '../../src/pki/certid.js';
import { Stapler } from '../../src/service/stapler.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { redisBinary, startRedis, type RedisServer } from '../helpers/redis.js';
import { until } from '../helpers/wait.js';

const f = fixture();
const bin = redisBinary();
const skip = !bin && process.env.STAPLERD_E2E !== 'required' ? 'redis-server not installed: fleet tests SKIPPED (apt-get install redis-server, see .ci/run)' : false;
if (skip) console.warn(`\n*** ${skip} ***\n`);

const refresh = parseConfig({}, '<inline>', {}).refresh;
let redis: RedisServer;
let responder: DemoResponder;
let leaves: IssuedCert[];
let prefixSeq = 0;

function records(url: string, n: number): CertRecord[] {
  return leaves.slice(0, n).map((l, i) => ({ name: `c${i}`, source: `c${i}.pem`, leaf: parseCertificate(l.der), issuer: f.issuer, url }));
}

interface Node {
  stapler: Stapler;
  coordinator: RedisCoordinator;
  log: ReturnType<typeof captureLog>;
}

function node(prefix: string, o: { leaseMs?: number; direct?: 'hang'; minIntervalMs?: number } = {}): Node {
  const log = captureLog('info');
  let stapler!: Stapler;
  const coordinator = new RedisCoordinator({
    config: { url: redis.url, keyPrefix: prefix, leaseMs: o.leaseMs ?? 5000, commandTimeoutMs: 1000 },
    log: log.log,
    minIntervalMs: o.minIntervalMs ?? 60_000,
    onConnected: () => void resyncWithFleet(coordinator, stapler, log.log),
  });
  coordinator.start();
  const client = new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 16, userAgent: 'fleet-test' });
  stapler = new Stapler({ clock: systemClock, client, store: new MemoryStapleStore({ maxEntries: 1000, maxBytes: 8 << 20 }), log: log.log, refresh, concurrency: 16, nonce: false, coordinator });
  coordinator.onShared((fp) => void stapler.adoptShared(fp));
  const n = { stapler, coordinator, log };
  allNodes.push(n);
  return n;
}

const allNodes: Node[] = [];
const held = (n: Node, count: number) => n.stapler.list().filter((c) => c.state === 'good').length === count;

describe('fleet mode on Redis', { skip }, () => {
  before(async () => {
    redis = await startRedis(bin ?? 'redis-server');
    const now = new Date();
    leaves = Array.from({ length: 200 }, (_, i) =>
      issueCertificate({ subjectCN: `fleet-${i}.demo.test`, notBefore: new Date(now.getTime() - 3600_000), notAfter: new Date(now.getTime() + 86400_000), key: f.pki.leaves.good.key }, f.pki.issuer),
    );
    responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: new Map(leaves.map((l) => [l.serialHex, { kind: 'good' as const }])) });
  });
  after(async () => {
    // Also the nodes of a test that failed half-way: their Redis connections would keep the process alive.
    await Promise.allSettled(allNodes.map((n) => n.stapler.stop()));
    await responder?.close();
    await redis?.stop();
  });

  test('five nodes and 200 certificates: the CA sees about 200 fetches, and every node serves every staple', async () => {
    const prefix = `t${++prefixSeq}:`;
    const nodes = Array.from({ length: 5 }, () => node(prefix));
    await until(() => nodes.every((n) => n.coordinator.status().connected), 'all nodes connected to Redis');
    const before = responder.stats.requests;
    const recs = records(responder.url, 200);
    // Staple listeners are how sinks (HAProxy pushes, files) run: every node must see every staple, fetched
    // by itself or adopted from another node.
    const seen = nodes.map(() => new Set<string>());
    nodes.forEach((n, i) => n.stapler.onStaple((r) => seen[i]!.add(r.name)));
    await Promise.all(nodes.map(async (n) => {
      await n.stapler.setRecords(recs);
      await n.stapler.start();
    }));
    await until(() => nodes.every((n) => held(n, 200)), 'every node to hold 200 staples', 30_000);
    const fetches = responder.stats.requests - before;
    assert.ok(fetches >= 200 && fetches <= 210, `upstream saw ${fetches} fetches for 200 certificates on 5 nodes`);
    const k = certIdKey(certIdOf(parseCertificate(leaves[7]!.der), f.issuer, 'sha1'));
    const bodies = nodes.map((n) => n.stapler.answer(k)).map((a) => (a.kind === 'staple' ? a.staple.body.toString('hex') : a.kind));
    assert.equal(new Set(bodies).size, 1, 'all nodes serve the same staple');
    assert.deepEqual(seen.map((x) => x.size), [200, 200, 200, 200, 200], 'every node ran its sinks for every staple');
    await Promise.all(nodes.map((n) => n.stapler.stop()));
  });

  test('a tampered staple in Redis is rejected by every node and never replaces a good one', async () => {
    const prefix = `t${++prefixSeq}:`;
    const [a, b] = [node(prefix), node(prefix)];
    await until(() => a.coordinator.status().connected && b.coordinator.status().connected, 'connected');
    const recs = records(responder.url, 3);
    for (const n of [a, b]) {
      await n.stapler.setRecords(recs);
      await n.stapler.start();
    }
    await until(() => held(a, 3) && held(b, 3), 'staples held');
    const fp = recs[0]!.leaf.fingerprint;
    const key = `${prefix}staple:${fp}`;
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.url);
    const rec = JSON.parse((await raw.get(key))!) as { der: string; thisUpdate: number };
    const der = Buffer.from(rec.der, 'base64');
    der[der.length - 5]! ^= 0xff; // break the signature
    await raw.set(key, JSON.stringify({ ...rec, der: der.toString('base64'), thisUpdate: rec.thisUpdate + 3600_000 }), 'PX', 600_000);
    await raw.publish(`${prefix}staples`, `intruder ${fp}`);
    const goodBefore = a.stapler.staple('c0')!.body.toString('hex');
    await until(() => a.log.lines.some((l) => /failed verification/.test(l.msg)) && b.log.lines.some((l) => /failed verification/.test(l.msg)), 'both nodes to reject it');
    assert.equal(a.stapler.staple('c0')!.body.toString('hex'), goodBefore);
    assert.equal(b.stapler.staple('c0')!.body.toString('hex'), goodBefore);
    // And a refresh does not take it either: it fetches (or takes the lease) instead.
    await a.stapler.refresh('c0');
    assert.equal(a.stapler.get('c0')!.state, 'good');
    assert.equal(a.stapler.get('c0')!.lastError, null);
    raw.disconnect();
    await Promise.all([a, b].map((n) => n.stapler.stop()));
  });

  test('the lease holder dies mid-fetch: another node fetches within the lease time', async () => {
    const prefix = `t${++prefixSeq}:`;
    const a = node(prefix, { leaseMs: 1500 });
    const b = node(prefix, { leaseMs: 1500 });
    await until(() => a.coordinator.status().connected && b.coordinator.status().connected, 'connected');
    const rec = records(responder.url, 1)[0]!;
    responder.setFault({ kind: 'hang' });
    await a.stapler.setRecords([rec]);
    await a.stapler.start();
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.url);
    await until(async () => (await raw.exists(`${prefix}lease:${rec.leaf.fingerprint}`)) === 1, 'node A to hold the lease');
    // Node A "dies": its Redis connections drop without releasing the lease, its fetch never returns.
    await a.coordinator.close();
    responder.setFault(null);
    const t0 = Date.now();
    await b.stapler.setRecords([rec]);
    await b.stapler.start();
    await until(() => held(b, 1), 'node B to get the staple', 10_000);
    assert.ok(Date.now() - t0 < 1500 + 2500, `took ${Date.now() - t0} ms`);
    raw.disconnect();
    await b.stapler.stop();
    await a.stapler.stop();
  });

  test('Redis down: nodes keep serving and fetching on their own; back up: they resynchronise', async () => {
    const prefix = `t${++prefixSeq}:`;
    const [a, b] = [node(prefix), node(prefix)];
    await until(() => a.coordinator.status().connected && b.coordinator.status().connected, 'connected');
    const recs = records(responder.url, 2);
    for (const n of [a, b]) {
      await n.stapler.setRecords(recs);
      await n.stapler.start();
    }
    await until(() => held(a, 2) && held(b, 2), 'staples held');
    await redis.pause();
    await until(() => !a.coordinator.status().connected, 'node A to notice');
    assert.ok(a.log.lines.some((l) => /unreachable/.test(l.msg)), 'said so in the log');
    assert.equal(a.stapler.readiness().store.connected, false);
    const before = responder.stats.requests;
    await new Promise((r) => setTimeout(r, 1100)); // thisUpdate has whole seconds: make A's next one newer
    const v = await a.stapler.refresh('c0');
    assert.equal(v.state, 'good');
    assert.equal(v.lastError, null, 'fetched directly while Redis is down');
    assert.equal(responder.stats.requests, before + 1);
    const fresh = a.stapler.staple('c0')!.body.toString('hex');
    await redis.start();
    await until(() => a.coordinator.status().connected && b.coordinator.status().connected, 'reconnected', 15_000);
    // A's newer staple goes to Redis on reconnect (its resync); B adopts it (announcement or its own resync).
    try {
      await until(() => b.stapler.staple('c0')?.body.toString('hex') === fresh, 'node B to adopt the staple A fetched while Redis was down', 20_000);
    } finally {
      await Promise.all([a, b].map((n) => n.stapler.stop()));
    }
  });

  test('a record claiming checkedAt and thisUpdate in the far future does not stop refreshes', async () => {
    const prefix = `t${++prefixSeq}:`;
    const a = node(prefix, { minIntervalMs: 10_000 });
    await until(() => a.coordinator.status().connected, 'connected');
    const recs = records(responder.url, 1);
    await a.stapler.setRecords(recs);
    await a.stapler.start();
    await until(() => held(a, 1), 'staple held');
    const key = `${prefix}staple:${recs[0]!.leaf.fingerprint}`;
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.url);
    try {
      const rec = JSON.parse((await raw.get(key))!) as { der: string; thisUpdate: number; checkedAt: number };
      const future = Date.UTC(9999, 0, 1);
      await raw.set(key, JSON.stringify({ ...rec, thisUpdate: future, checkedAt: future }), 'PX', 600_000);
      await new Promise((r) => setTimeout(r, 1100)); // thisUpdate has whole seconds: the next one is newer
      const before = responder.stats.requests;
      for (let i = 0; i < 3; i++) await a.stapler.refresh('c0');
      assert.ok(responder.stats.requests > before, 'admin refreshes reach the CA');
      const now = JSON.parse((await raw.get(key))!) as { thisUpdate: number; checkedAt: number };
      assert.ok(now.thisUpdate < Date.now() && now.checkedAt <= Date.now(), 'the fetched staple replaced the lying record');
      assert.equal(now.thisUpdate, a.stapler.staple('c0')!.thisUpdateMs);
    } finally {
      raw.disconnect();
      await a.stapler.stop();
    }
  });

  test('an oversized record in Redis is refused with a code, and the node fetches itself', async () => {
    const prefix = `t${++prefixSeq}:`;
    const a = node(prefix);
    await until(() => a.coordinator.status().connected, 'connected');
    const recs = records(responder.url, 1);
    const key = `${prefix}staple:${recs[0]!.leaf.fingerprint}`;
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.url);
    try {
      const huge = JSON.stringify({ der: 'A'.repeat(4 << 20), thisUpdate: Date.now(), nextUpdate: Date.now() + 3600_000, checkedAt: Date.now(), node: 'x' });
      await raw.set(key, huge, 'PX', 600_000);
      const before = responder.stats.requests;
      await a.stapler.setRecords(recs);
      await a.stapler.start();
      await until(() => held(a, 1), 'staple held');
      assert.ok(a.log.lines.some((l) => l.code === 'FLEET_RECORD_TOO_LARGE'), 'refused with its code');
      assert.ok(!a.log.lines.some((l) => /failed verification/.test(l.msg)), 'never parsed nor verified');
      assert.equal(responder.stats.requests, before + 1);
    } finally {
      raw.disconnect();
      await a.stapler.stop();
    }
  });
});
