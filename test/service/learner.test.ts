import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import { demoStatuses, issueCertificate } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { buildApp } from '../../src/http/app.js';
import { parseCertificate } from '../../src/pki/certificate.js';
import { certIdOf } from '../../src/pki/certid.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { Learner, type LearnerOptions } from '../../src/service/learner.js';
import { Stapler } from '../../src/service/stapler.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import type { StapleStore, StoredStaple } from '../../src/store/store.js';
import { FakeClock, settle } from '../helpers/clock.js';
import { until } from '../helpers/wait.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();
const cfg = parseConfig({ ocsp: { pathPrefix: '/ocsp' } }, '<inline>', {});
let responder: DemoResponder;
let clock: FakeClock;

before(async () => {
  clock = new FakeClock(f.now);
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now), now: () => clock.now() });
});
after(() => responder.close());

/** A memory store whose reads wait for the test to let them go (the window while a persisted staple is read). */
class GatedStore extends MemoryStapleStore {
  reads = 0;
  #open: Promise<void> = Promise.resolve();
  #release: () => void = () => undefined;
  hold(): void {
    this.#open = new Promise((r) => (this.#release = r));
  }
  release(): void {
    this.#release();
  }
  override async get(fp: string): Promise<StoredStaple | undefined> {
    this.reads++;
    await this.#open;
    return super.get(fp);
  }
}

function rig(maxEntries = 100, store: StapleStore = new MemoryStapleStore({ maxEntries: 100, maxBytes: 1 << 20 }), extra: Partial<LearnerOptions> = {}) {
  const log = captureLog();
  const client = new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 4, userAgent: 'test' });
  const stapler = new Stapler({ clock, client, store, log: log.log, refresh: cfg.refresh, concurrency: 4, nonce: false });
  const learner = new Learner({ stapler, issuers: [{ cert: f.issuer, responder: responder.url }], maxEntries, idleTimeoutSeconds: 3600, clock, log: log.log, ...extra });
  const app = buildApp({ stapler, learner, log: log.log, config: cfg });
  return { stapler, learner, app, log };
}

const reqFor = (leaf = f.good, alg: 'sha1' | 'sha256' = 'sha1') => Buffer.from(buildOcspRequest([f.certId(leaf, alg)]));
/** A request for a serial the CA never issued, under the trusted issuer. */
const reqForSerial = (n: number) => Buffer.from(buildOcspRequest([{ ...f.certId(f.good), serialNumber: new Uint8Array([0x7e, n >> 8, n & 0xff]) }]));
const TRY_LATER = Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x03]);
const isUnauthorized = (b: Buffer) => b.equals(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x06]));

describe('learning mode', () => {
  test('an unknown certificate under a trusted issuer is fetched from its configured responder and served', async () => {
    const { app, stapler } = rig();
    await stapler.start();
    const before = responder.stats.requests;
    const r = await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor() });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'application/ocsp-response');
    assert.ok(r.rawPayload.length > 100, 'a staple, not an error status');
    assert.equal(responder.stats.requests - before, 1);
    const again = await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor() });
    assert.ok(again.rawPayload.equals(r.rawPayload), 'asked again: from the cache');
    assert.equal(responder.stats.requests - before, 1);
    const sha256 = `/ocsp/${encodeURIComponent(reqFor(f.good, 'sha256').toString('base64'))}`;
    const s1 = await app.inject({ method: 'GET', url: sha256 });
    const s2 = await app.inject({ method: 'GET', url: sha256 });
    assert.ok(s1.rawPayload.length > 100 && s1.rawPayload.equals(s2.rawPayload) && !s1.rawPayload.equals(r.rawPayload), 'the SHA-256 form is its own staple');
    assert.equal(responder.stats.requests - before, 2);
    assert.equal(stapler.list().find((c) => c.serial === f.good.serialHex)?.state, 'good');
    await app.close();
    await stapler.stop();
  });

  test('a hundred concurrent requests for one new certificate make one upstream fetch', async () => {
    const { app, stapler } = rig();
    await stapler.start();
    const before = responder.stats.requests;
    const answers = await Promise.all(Array.from({ length: 100 }, () => app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.revoked) })));
    assert.equal(responder.stats.requests - before, 1);
    assert.ok(answers.every((a) => a.statusCode === 200 && a.rawPayload.equals(answers[0]!.rawPayload) && a.rawPayload.length > 100));
    await app.close();
    await stapler.stop();
  });

  test('a request arriving while a learned certificate\'s persisted staple is read waits for it instead of getting tryLater', async () => {
    const store = new GatedStore({ maxEntries: 100, maxBytes: 1 << 20 });
    const { app, stapler } = rig(100, store);
    await stapler.start();
    store.hold();
    const before = responder.stats.requests;
    const first = app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.mustStaple) });
    await until(() => store.reads === 1, 'the learning to read the store');
    const second = app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.mustStaple) });
    await settle();
    store.release();
    const [a, b] = await Promise.all([first, second]);
    assert.ok(a.rawPayload.length > 100, 'the first request got a staple');
    assert.ok(b.rawPayload.equals(a.rawPayload), `the second got ${b.rawPayload.toString('hex')}, not the staple`);
    assert.equal(responder.stats.requests - before, 1);
    await app.close();
    await stapler.stop();
  });

  test('an unlisted issuer gets unauthorized and nothing is fetched', async () => {
    const { app, stapler } = rig();
    const otherCa = issueCertificate({ subjectCN: 'other CA', isCA: true, notBefore: new Date(f.now.getTime() - 86400_000), notAfter: new Date(f.now.getTime() + 86400_000) }, 'self');
    const stranger = issueCertificate({ subjectCN: 'stranger', notBefore: new Date(f.now.getTime() - 3600_000), notAfter: new Date(f.now.getTime() + 86400_000) }, otherCa);
    const before = responder.stats.requests;
    const id = certIdOf(parseCertificate(stranger.der), parseCertificate(otherCa.der), 'sha1');
    const r = await app.inject({ method: 'POST', url: '/ocsp', payload: Buffer.from(buildOcspRequest([id])) });
    assert.ok(isUnauthorized(r.rawPayload));
    assert.equal(responder.stats.requests, before);
    await app.close();
    await stapler.stop();
  });

  test('idle learned certificates are dropped; the count is bounded', async () => {
    const { app, stapler, learner } = rig(2);
    await stapler.start();
    for (const leaf of [f.good, f.revoked]) await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(leaf) });
    assert.equal(learner.size, 2);
    await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.mustStaple) });
    assert.equal(learner.size, 2, 'bounded: the least recently asked for was dropped');
    assert.equal(stapler.list().some((c) => c.serial === f.good.serialHex), false);
    await clock.advance(1800_000);
    await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.mustStaple) });
    await clock.advance(1800_001);
    assert.equal(learner.sweep(), 1, 'the one not asked for in an hour');
    assert.deepEqual(stapler.list().map((c) => c.serial), [f.mustStaple.serialHex]);
    await app.close();
    await stapler.stop();
  });
});

describe('learning mode under abuse (issue 12 item 7)', () => {
  test('a learned certificate whose first fetch fails is answered tryLater from a negative cache and not refetched on its own', async () => {
    const { app, stapler, learner } = rig(1000, undefined, { failureTtlSeconds: 300 });
    await stapler.start();
    responder.setFault({ kind: 'ocsp-status', status: 6 });
    try {
      const before = responder.stats.requests;
      const first = await Promise.all(Array.from({ length: 100 }, (_, i) => app.inject({ method: 'POST', url: '/ocsp', payload: reqForSerial(i) })));
      assert.ok(first.every((r) => r.rawPayload.equals(TRY_LATER)), 'each answered tryLater');
      assert.equal(responder.stats.requests - before, 100, 'one fetch per serial');
      await clock.advance(40_000);
      assert.equal(responder.stats.requests - before, 100, 'no retries on their own (backoff would have refetched each after 30 s)');
      const again = await Promise.all(Array.from({ length: 100 }, (_, i) => app.inject({ method: 'POST', url: '/ocsp', payload: reqForSerial(i) })));
      assert.ok(again.every((r) => r.rawPayload.equals(TRY_LATER)), 'answered from the negative cache');
      assert.equal(responder.stats.requests - before, 100, 'asked again within failureTtl: nothing fetched');
      assert.equal(learner.size, 0, 'failed entries are not kept');
      await clock.advance(300_000);
      responder.setFault(null);
      const later = await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.good) });
      assert.ok(later.rawPayload.length > 100, 'a working certificate is learned as before');
      await app.inject({ method: 'POST', url: '/ocsp', payload: reqForSerial(1) });
      assert.equal(responder.stats.requests - before, 102, 'after failureTtl a request learns it afresh: one fetch');
    } finally {
      responder.setFault(null);
      await app.close();
      await stapler.stop();
    }
  });

  test('learning new certificates is rate-limited: beyond the burst, requests get tryLater, nothing is fetched, and it is logged once', async () => {
    const { app, stapler, learner, log } = rig(1000, undefined, { maxNewPerMinute: 60, newBurst: 5 });
    await stapler.start();
    const before = responder.stats.requests;
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await app.inject({ method: 'POST', url: '/ocsp', payload: reqForSerial(1000 + i) }));
    assert.equal(responder.stats.requests - before, 5, 'the burst was learned');
    assert.equal(answers.slice(5).filter((a) => a.rawPayload.equals(TRY_LATER)).length, 15);
    assert.equal(learner.refusedByRate, 15);
    assert.equal(log.lines.filter((l) => l.msg.startsWith('certificates not learned')).length, 1, 'logged once, not per refusal');
    await clock.advance(1000);
    await app.inject({ method: 'POST', url: '/ocsp', payload: reqForSerial(1005) });
    assert.equal(responder.stats.requests - before, 6, 'a token later, one more is learned');
    learner.stop();
    assert.equal(log.lines.filter((l) => l.msg.startsWith('certificates not learned')).reduce((n, l) => n + Number(l.refused), 0), 15);
    await app.close();
    await stapler.stop();
  });

  test('at the learning bound an entry without a servable staple is evicted before working ones', async () => {
    const { app, stapler, learner } = rig(2);
    await stapler.start();
    try {
      await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.good) });
      responder.setFault({ kind: 'http-status', status: 500 });
      await clock.advance(3600_000); // good's staple runs out while every refresh fails
      assert.equal(stapler.staple(learnedName(stapler, f.good)), undefined, 'good has no servable staple now');
      responder.setFault(null);
      await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.revoked) });
      await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.good) }); // most recently asked for, still failing
      await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.mustStaple) });
      assert.equal(learner.size, 2);
      const serials = stapler.list().map((c) => c.serial);
      assert.ok(serials.includes(f.revoked.serialHex) && serials.includes(f.mustStaple.serialHex), `working entries kept: ${serials.join(', ')}`);
      assert.ok(!serials.includes(f.good.serialHex), 'the entry without a staple went first');
    } finally {
      responder.setFault(null);
      await app.close();
      await stapler.stop();
    }
  });
});

describe('removal reaches the sinks (issue 12 item 8)', () => {
  test('a learned certificate dropped when idle, and a configured one removed or renewed, are reported to removal listeners', async () => {
    const { app, stapler, learner } = rig();
    const removed: Array<[string, string | undefined]> = [];
    stapler.onRemoved((r, next) => removed.push([r.name, next?.name]));
    await stapler.start();
    await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor(f.good) });
    await clock.advance(3600_001);
    learner.sweep();
    assert.equal(removed.length, 1);
    assert.match(removed[0]![0], /^learned-/);
    assert.equal(removed[0]![1], undefined);
    const configured = (name: string, leaf = f.revoked) => ({ name, source: `/etc/ssl/${name}.pem`, leaf, issuer: f.issuer, url: responder.url });
    await stapler.setRecords([configured('a'), configured('b')]);
    await stapler.setRecords([configured('a', f.mustStaple)]);
    assert.deepEqual(removed.slice(1).sort(), [['a', 'a'], ['b', undefined]]);
    await app.close();
    await stapler.stop();
  });
});

function learnedName(stapler: Stapler, leaf: typeof f.good): string {
  return stapler.list().find((c) => c.serial === leaf.serialHex)!.name;
}

describe('absolute-form requests (HAProxy ocsp-update.httpproxy, Apache SSLOCSPProxyURL)', () => {
  let app: FastifyInstance;
  let stapler: Stapler;
  let port: number;
  before(async () => {
    ({ app, stapler } = rig());
    await stapler.start();
    await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor() }); // learn it once
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(async () => {
    await app.close();
    await stapler.stop();
  });

  function raw(head: string, body?: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => s.end(body ? Buffer.concat([Buffer.from(head), body]) : head));
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('end', () => {
        const all = Buffer.concat(chunks);
        resolve(all.subarray(all.indexOf('\r\n\r\n') + 4));
      });
      s.on('error', reject);
      s.setTimeout(3000, () => reject(new Error('no answer')));
    });
  }

  test('GET and POST to http://ocsp.ca.example/ are answered from the cache', async () => {
    const expected = (await app.inject({ method: 'POST', url: '/ocsp', payload: reqFor() })).rawPayload;
    const before = responder.stats.requests;
    const b64 = encodeURIComponent(reqFor().toString('base64'));
    const get = await raw(`GET http://ocsp.ca.example/${b64} HTTP/1.0\r\nHost: ocsp.ca.example\r\n\r\n`);
    assert.ok(get.equals(expected));
    const withPath = await raw(`GET http://ocsp.ca.example/some/path/${b64} HTTP/1.0\r\nHost: ocsp.ca.example\r\n\r\n`);
    assert.ok(withPath.equals(expected), 'a CA URL with a path of its own');
    const body = reqFor();
    const post = await raw(`POST http://ocsp.ca.example/ HTTP/1.0\r\nHost: ocsp.ca.example\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${body.length}\r\n\r\n`, body);
    assert.ok(post.equals(expected));
    assert.equal(responder.stats.requests, before, 'nothing was fetched, and never from the host in the request');
  });
});
