import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { demoStatuses } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { certIdKey } from '../../src/pki/certid.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { parseOcspResponse } from '../../src/pki/response.js';
import { LocalCoordinator, type FetchCoordinator } from '../../src/fleet/coordinator.js';
import { Stapler } from '../../src/service/stapler.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import type { StapleStore } from '../../src/store/store.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLog, type CapturedLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
const refresh = parseConfig({}, '<inline>').refresh;
let responder: DemoResponder;
let clock: FakeClock;

before(async () => {
  clock = new FakeClock(f.now);
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now), now: () => clock.now() });
});
after(() => responder.close());

interface Rig {
  stapler: Stapler;
  log: CapturedLog;
  store: StapleStore;
  records: Record<'good' | 'revoked' | 'mustStaple' | 'quiet', CertRecord>;
}

function rig(o: { store?: StapleStore; url?: string; coordinator?: FetchCoordinator; refresh?: Partial<typeof refresh> } = {}): Rig {
  const url = o.url ?? responder.url;
  const rec = (name: string, leaf = f.good, u: string | null = url): CertRecord => ({ name, source: `${name}.pem`, leaf, issuer: f.issuer, url: u ?? undefined });
  const records = { good: rec('good'), revoked: rec('revoked', f.revoked), mustStaple: rec('mustStaple', f.mustStaple), quiet: rec('quiet', f.good, null) };
  const log = captureLog();
  const store = o.store ?? new MemoryStapleStore({ maxEntries: 100, maxBytes: 1 << 20 });
  const client = new HttpResponderClient({ timeoutMs: 1000, maxResponseBytes: 65536, perHostConcurrency: 4, userAgent: 'test' });
  const stapler = new Stapler({ clock, client, store, log: log.log, refresh: { ...refresh, ...o.refresh }, concurrency: 4, nonce: false, rand: () => 0, ...(o.coordinator && { coordinator: o.coordinator }) });
  return { stapler, log, store, records };
}

async function started(r: Rig, names: Array<keyof Rig['records']> = ['good', 'revoked', 'mustStaple', 'quiet']): Promise<Rig> {
  await r.stapler.setRecords(names.map((n) => r.records[n]));
  await r.stapler.start();
  await clock.advance(0);
  await until(() => r.stapler.list().every((c) => c.state !== 'pending'), 'first fetches');
  return r;
}

const key = (leaf = f.good) => certIdKey(f.certId(leaf));

/** A response fetched straight from the responder, outside any Stapler (ECDSA: new bytes every time). */
async function directResponse(leaf = f.good): Promise<Uint8Array> {
  const client = new HttpResponderClient({ timeoutMs: 1000, maxResponseBytes: 65536, perHostConcurrency: 1, userAgent: 'test' });
  try {
    return (await client.fetch(responder.url, buildOcspRequest([f.certId(leaf)]))).body;
  } finally {
    client.close();
  }
}

/** A fleet whose shared store holds `der` for every certificate (an in-file fake at the coordinator seam). */
class FakeFleet extends LocalCoordinator {
  der: Uint8Array | undefined;
  override async obtain(r: Parameters<FetchCoordinator['obtain']>[0]) {
    if (!this.der) return super.obtain(r);
    return { staple: await r.verify(this.der), maxAge: undefined, source: 'shared' as const };
  }
  override async shared(): Promise<undefined> {
    return this.der as undefined;
  }
}
const stateOf = (r: Rig, name: string) => r.stapler.get(name)!.state;

describe('Stapler', () => {
  test('fetches every certificate with a responder at start and never one without', async () => {
    responder.setFault(null);
    const before = responder.stats.requests;
    const r = await started(rig());
    assert.equal(stateOf(r, 'good'), 'good');
    assert.equal(stateOf(r, 'revoked'), 'revoked');
    assert.equal(stateOf(r, 'quiet'), 'not_applicable');
    assert.equal(responder.stats.requests - before, 3);
    assert.equal(r.stapler.answer(key()).kind, 'staple');
    assert.equal(r.stapler.answer('1AAAAAAAAAAAAAAAAAAAAAAAA').kind, 'unknown');
    assert.equal(r.log.atLeast(40).filter((l) => l.cert === 'quiet').length, 0, 'not applicable is quiet');
    assert.equal(r.log.atLeast(50).filter((l) => l.cert === 'revoked').length, 1, 'revoked is logged at error once');
    await r.stapler.stop();
  });

  test('briefs agree with the views: state, must-staple and the held staple times of every certificate', async () => {
    responder.setFault(null);
    const r = await started(rig());
    const briefs = new Map([...r.stapler.briefs()].map((b) => [b.name, b]));
    assert.equal(briefs.size, 4);
    for (const v of r.stapler.list()) {
      const b = briefs.get(v.name)!;
      assert.equal(b.state, v.state, v.name);
      assert.equal(b.mustStaple, v.mustStaple, v.name);
      assert.equal(b.nextUpdateMs, v.nextUpdate ? Date.parse(v.nextUpdate) : undefined, v.name);
      assert.equal(b.thisUpdateMs, v.thisUpdate ? Date.parse(v.thisUpdate) : undefined, v.name);
    }
    assert.equal(briefs.get('mustStaple')!.mustStaple, true);
    await r.stapler.stop();
  });

  test('a SHA-256 CertID gets its own staple, fetched once when first asked for', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good']);
    const before = responder.stats.requests;
    const k256 = certIdKey(f.certId(f.good, 'sha256'));
    const first = r.stapler.answer(k256);
    assert.equal(first.kind, 'wait', 'the SHA-1 staple must not answer a SHA-256 request (RFC 6960 §4.2.1)');
    await (first as { until: Promise<void> }).until;
    const a = r.stapler.answer(k256);
    assert.equal(a.kind, 'staple');
    const sha1 = r.stapler.answer(key());
    assert.ok(a.kind === 'staple' && sha1.kind === 'staple' && !a.staple.body.equals(sha1.staple.body));
    assert.equal(r.stapler.answer(k256).kind, 'staple');
    assert.equal(responder.stats.requests - before, 1);
    await r.stapler.stop();
  });

  test('schedules the refresh at half the validity window', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good']);
    const v = r.stapler.get('good')!;
    const half = (Date.parse(v.thisUpdate!) + Date.parse(v.nextUpdate!)) / 2;
    assert.equal(Date.parse(v.nextRefresh!), half);
    await r.stapler.stop();
  });

  test('keeps the last good staple when the responder returns tryLater, and backs off', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good']);
    const held = r.stapler.get('good')!.thisUpdate;
    responder.setFault({ kind: 'ocsp-status', status: 3 });
    await r.stapler.refresh('good');
    const v = r.stapler.get('good')!;
    assert.equal(v.state, 'good');
    assert.equal(v.thisUpdate, held);
    assert.equal(v.lastError?.code, 'OCSP_STATUS_TRY_LATER');
    assert.equal(Date.parse(v.nextRefresh!) - clock.now().getTime(), 15_000, 'first backoff (rand 0: half of 30 s)');
    assert.equal(r.stapler.answer(key()).kind, 'staple');
    responder.setFault(null);
    await r.stapler.stop();
  });

  test('refuses a response older than the staple it holds', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good']);
    const held = r.stapler.get('good')!.thisUpdate;
    responder.setFault({ kind: 'this-update-offset', seconds: -600 });
    await r.stapler.refresh('good');
    assert.equal(r.stapler.get('good')!.thisUpdate, held);
    assert.equal(r.stapler.get('good')!.lastError?.code, 'OCSP_OLDER');
    responder.setFault(null);
    await r.stapler.stop();
  });

  test('stops serving at nextUpdate minus the margin and says tryLater; must-staple makes it unready', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good', 'mustStaple']);
    assert.equal(r.stapler.readiness().ready, true);
    responder.setFault({ kind: 'http-status', status: 500 });
    const nextUpdate = Date.parse(r.stapler.get('good')!.nextUpdate!);
    await clock.advance(nextUpdate - 300_000 - clock.now().getTime());
    await until(() => r.stapler.get('mustStaple')!.failures > 0, 'a failed refresh');
    await clock.advance(1);
    await until(() => r.log.atLeast(50).some((l) => l.cert === 'mustStaple'), 'the loss of the must-staple staple to be logged');
    assert.equal(r.stapler.answer(key()).kind, 'tryLater');
    assert.equal(stateOf(r, 'good'), 'failing');
    const ready = r.stapler.readiness();
    assert.equal(ready.ready, false);
    assert.deepEqual(ready.mustStapleMissing, ['mustStaple']);
    assert.ok(r.log.atLeast(50).some((l) => l.cert === 'mustStaple' && /must-staple/.test(l.msg)), 'must-staple loss is logged at error');
    responder.setFault(null);
    await r.stapler.stop();
    clock = new FakeClock(f.now);
  });

  test('logs one line per change, not one per failed attempt', async () => {
    responder.setFault({ kind: 'http-status', status: 503, retryAfter: '1' });
    const r = await started(rig(), ['good']);
    for (let i = 0; i < 5; i++) await r.stapler.refresh('good');
    const warns = r.log.atLeast(40).filter((l) => l.cert === 'good');
    assert.equal(warns.length, 1, JSON.stringify(warns));
    assert.equal(r.stapler.get('good')!.failures, 6);
    assert.equal(r.stapler.get('good')!.lastError?.code, 'FETCH_HTTP_STATUS');
    responder.setFault(null);
    await r.stapler.stop();
  });

  test('concurrent refresh requests for one certificate make one upstream fetch', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good']);
    const before = responder.stats.requests;
    await Promise.all(Array.from({ length: 20 }, () => r.stapler.refresh('good')));
    assert.equal(responder.stats.requests - before, 1);
    await r.stapler.stop();
  });

  test('serves a persisted staple at start, before any upstream answer', async () => {
    responder.setFault(null);
    const store = new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 });
    const first = await started(rig({ store }), ['good']);
    await first.stapler.stop();
    await until(async () => (await store.get(f.good.fingerprint)) !== undefined, 'persisted');
    responder.setFault({ kind: 'hang' });
    const second = rig({ store });
    await second.stapler.setRecords([second.records.good]);
    await second.stapler.start();
    assert.equal(second.stapler.answer(key()).kind, 'staple');
    assert.equal(stateOf(second, 'good'), 'good');
    assert.equal(second.stapler.readiness().ready, true);
    responder.setFault(null);
    await second.stapler.stop();
  });

  test('skips a corrupt persisted staple with a log line and fetches a new one', async () => {
    responder.setFault(null);
    const store = new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 });
    await store.put(f.good.fingerprint, { der: Uint8Array.from([0x30, 0x03, 1, 2]), meta: undefined });
    const r = await started(rig({ store }), ['good']);
    assert.ok(r.log.lines.some((l) => l.cert === 'good' && /persisted staple unusable/.test(l.msg)));
    assert.equal(stateOf(r, 'good'), 'good');
    await r.stapler.stop();
  });

  test('readiness waits for first fetches, then counts a failed first fetch as settled', async () => {
    responder.setFault({ kind: 'http-status', status: 500 });
    const r = rig();
    await r.stapler.setRecords([r.records.good]);
    assert.equal(r.stapler.readiness().ready, false);
    await r.stapler.start();
    assert.deepEqual(r.stapler.readiness().waiting, ['good']);
    await clock.advance(0);
    await until(() => stateOf(r, 'good') === 'failing', 'first failure');
    assert.equal(r.stapler.readiness().ready, true);
    responder.setFault(null);
    await r.stapler.stop();
  });

  test('readiness counts every waiting certificate but names at most 100', async () => {
    responder.setFault({ kind: 'hang' });
    const r = rig();
    const many = Array.from({ length: 150 }, (_, i): CertRecord => ({ ...r.records.good, name: `copy-${i}` }));
    await r.stapler.setRecords(many);
    await r.stapler.start();
    const rd = r.stapler.readiness();
    assert.equal(rd.ready, false);
    assert.equal(rd.waitingCount, 150);
    assert.equal(rd.waiting.length, 100);
    assert.ok(rd.waiting.every((n) => n.startsWith('copy-')));
    responder.setFault(null);
    await r.stapler.stop();
  });

  test('an expired certificate is listed as expired and not fetched', async () => {
    responder.setFault(null);
    const r = rig();
    const expired: CertRecord = { ...r.records.good, name: 'old', leaf: { ...f.good, notAfter: new Date(f.now.getTime() - 1000), notAfterMs: f.now.getTime() - 1000 } };
    const before = responder.stats.requests;
    await r.stapler.setRecords([expired]);
    await r.stapler.start();
    await clock.advance(0);
    await until(() => r.stapler.get('old')!.nextRefresh === null, 'expired check');
    assert.equal(stateOf(r, 'old'), 'expired');
    assert.equal(responder.stats.requests, before);
    await r.stapler.stop();
  });

  test('setRecords keeps unchanged certificates and drops removed ones', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good', 'revoked']);
    const before = responder.stats.requests;
    await r.stapler.setRecords([r.records.good]);
    assert.equal(r.stapler.get('revoked'), undefined);
    assert.equal(r.stapler.answer(key(f.revoked)).kind, 'unknown');
    assert.equal(r.stapler.answer(key()).kind, 'staple');
    assert.equal(responder.stats.requests, before);
    await r.stapler.stop();
  });

  test('keeps the held staple when a response with the same thisUpdate but other bytes arrives from upstream', async () => {
    responder.setFault(null);
    const r = await started(rig(), ['good']);
    const held = r.stapler.staple('good')!;
    const other = await directResponse();
    const single = parseOcspResponse(other).responses[0]!;
    assert.equal(single.thisUpdate.getTime(), held.thisUpdateMs, 'same thisUpdate (the clock did not move)');
    assert.ok(!held.body.equals(other), 'other bytes (ECDSA signatures differ)');
    const events: string[] = [];
    r.stapler.onStaple((_r, _s, why) => events.push(why));
    await r.stapler.refresh('good');
    assert.ok(r.stapler.staple('good')!.body.equals(held.body), 'the held bytes are still served');
    assert.deepEqual(events, [], 'nothing new went to the sinks');
    const stored = await r.store.get(f.good.fingerprint);
    assert.ok(!stored || Buffer.from(stored.der).equals(held.body), 'nothing else was persisted');
    await r.stapler.stop();
  });

  test('keeps the held staple when the fleet shares a response with the same thisUpdate but other bytes', async () => {
    responder.setFault(null);
    const fleet = new FakeFleet();
    const r = await started(rig({ coordinator: fleet }), ['good']);
    const held = r.stapler.staple('good')!;
    fleet.der = await directResponse();
    assert.ok(!held.body.equals(fleet.der));
    await r.stapler.adoptShared(f.good.fingerprint);
    assert.ok(r.stapler.staple('good')!.body.equals(held.body), 'an announcement does not replace it');
    await r.stapler.refresh('good');
    assert.ok(r.stapler.staple('good')!.body.equals(held.body), 'nor does a refresh that takes the shared one');
    assert.equal(r.stapler.get('good')!.lastError, null);
    await r.stapler.stop();
  });

  test('keeps the held staple when the disk holds a response with the same thisUpdate but other bytes', async () => {
    responder.setFault(null);
    const store = new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 });
    const r = await started(rig({ store }), ['good']);
    const held = r.stapler.staple('good')!;
    await store.put(f.good.fingerprint, { der: await directResponse(), meta: undefined });
    await r.stapler.setRecords([r.records.good, r.records.revoked]);
    await clock.advance(0);
    assert.ok(r.stapler.staple('good')!.body.equals(held.body));
    await r.stapler.stop();
  });

  test('an unknown answer never replaces a good staple, and is neither served, persisted nor passed on', async () => {
    responder.setFault(null);
    const store = new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 });
    const r = await started(rig({ store }), ['good']);
    const held = r.stapler.staple('good')!;
    const events: string[] = [];
    r.stapler.onStaple((_r, _s, why) => events.push(why));
    responder.setStatus(f.good.serialHex, { kind: 'unknown' });
    try {
      await clock.advance(1000); // a newer thisUpdate: the unknown answer is not refused as older
      await r.stapler.refresh('good');
      const v = r.stapler.get('good')!;
      assert.equal(v.state, 'good');
      assert.equal(v.lastError?.code, 'OCSP_CERT_UNKNOWN');
      const a = r.stapler.answer(key());
      assert.ok(a.kind === 'staple' && a.staple.body.equals(held.body), 'the good staple is still served');
      assert.deepEqual(events, [], 'nothing went to the sinks or hooks');
      await clock.advance(1000);
      await until(async () => (await store.get(f.good.fingerprint)) !== undefined, 'persisted');
      assert.ok(Buffer.from((await store.get(f.good.fingerprint))!.der).equals(held.body), 'the persisted staple is the good one');
      assert.equal(Date.parse(v.nextRefresh!) - Date.parse(v.lastError!.at), 60_000, 'asked again in a minute');
    } finally {
      responder.setStatus(f.good.serialHex, { kind: 'good' });
      await r.stapler.stop();
    }
  });

  test('a certificate the CA does not know yet is unknown, answered tryLater, and asked again at 1, 2 minutes until known', async () => {
    responder.setFault(null);
    responder.setStatus(f.good.serialHex, { kind: 'unknown' });
    const r = rig();
    const events: string[] = [];
    r.stapler.onStaple((_r, _s, why) => events.push(why));
    try {
      await started(r, ['good']);
      let v = r.stapler.get('good')!;
      assert.equal(v.state, 'unknown');
      assert.deepEqual(v.status, { kind: 'unknown' });
      assert.ok(v.thisUpdate && v.fetchedAt, 'the CA answer time is shown');
      assert.equal(v.nextUpdate, null);
      assert.equal(r.stapler.answer(key()).kind, 'tryLater');
      assert.equal(r.stapler.readiness().ready, true, 'an answer from the CA settles readiness');
      assert.equal(r.stapler.current().length, 0, 'nothing for a sink re-push');
      assert.equal(Date.parse(v.nextRefresh!) - clock.now().getTime(), 60_000);
      const before = responder.stats.requests;
      await clock.advance(60_000);
      await until(() => responder.stats.requests > before && ![null, v.nextRefresh].includes(r.stapler.get('good')!.nextRefresh), 'the second ask');
      v = r.stapler.get('good')!;
      assert.equal(Date.parse(v.nextRefresh!) - clock.now().getTime(), 120_000, 'then two minutes');
      responder.setStatus(f.good.serialHex, { kind: 'good' });
      await clock.advance(120_000);
      await until(() => stateOf(r, 'good') === 'good', 'the CA to know it');
      assert.equal(r.stapler.answer(key()).kind, 'staple');
      assert.equal(r.stapler.get('good')!.lastError, null);
      assert.deepEqual(events, ['fetched'], 'only the good staple went to the sinks');
    } finally {
      responder.setStatus(f.good.serialHex, { kind: 'good' });
      await r.stapler.stop();
      clock = new FakeClock(f.now);
    }
  });

  test('an unknown shared by the fleet is not adopted, and a persisted one is not served', async () => {
    responder.setFault(null);
    const fleet = new FakeFleet();
    const r = await started(rig({ coordinator: fleet }), ['good']);
    const held = r.stapler.staple('good')!;
    responder.setStatus(f.good.serialHex, { kind: 'unknown' });
    try {
      await clock.advance(1000);
      fleet.der = await directResponse();
      await r.stapler.adoptShared(f.good.fingerprint);
      assert.ok(r.stapler.staple('good')!.body.equals(held.body), 'an announcement does not replace it');
      await r.stapler.refresh('good');
      assert.ok(r.stapler.staple('good')!.body.equals(held.body), 'nor a refresh that obtains it from the fleet');
      const store = new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 });
      await store.put(f.good.fingerprint, { der: fleet.der, meta: undefined });
      responder.setFault({ kind: 'hang' });
      const second = rig({ store });
      await second.stapler.setRecords([second.records.good]);
      await second.stapler.start();
      assert.equal(second.stapler.answer(key()).kind, 'tryLater');
      assert.ok(second.log.lines.some((l) => l.code === 'OCSP_CERT_UNKNOWN' && /persisted/.test(l.msg)));
      responder.setFault(null);
      await second.stapler.stop();
    } finally {
      responder.setFault(null);
      responder.setStatus(f.good.serialHex, { kind: 'good' });
      await r.stapler.stop();
    }
  });

  test('a response valid for 4 minutes is served (the margin is a tenth of its window) and refreshed in time', async () => {
    const short = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now), now: () => clock.now(), validitySeconds: 240 });
    const r = rig({ url: short.url });
    try {
      await started(r, ['good']);
      const v = r.stapler.get('good')!;
      assert.equal(v.state, 'good');
      assert.equal(Date.parse(v.nextUpdate!) - Date.parse(v.thisUpdate!), 240_000);
      const a = r.stapler.answer(key());
      assert.equal(a.kind, 'staple', 'served on the OCSP routes');
      const servableFor = Date.parse(v.nextUpdate!) - 24_000 - clock.now().getTime();
      assert.ok(a.kind === 'staple' && a.maxAgeSeconds > 0 && a.maxAgeSeconds * 1000 <= servableFor, String(a.kind === 'staple' && a.maxAgeSeconds));
      assert.ok(Date.parse(v.nextRefresh!) < Date.parse(v.nextUpdate!) - 24_000, 'refreshed before it stops being servable');
    } finally {
      await r.stapler.stop();
      await short.close();
    }
  });

  test('without nextUpdate: refused by default; with refresh.assumeValidity served for that long, Expires and max-age following', async () => {
    responder.setFault({ kind: 'no-next-update' });
    const off = rig();
    const on = rig({ refresh: { assumeValiditySeconds: 12 * 3600 } });
    try {
      await started(off, ['good']);
      assert.equal(stateOf(off, 'good'), 'failing');
      assert.equal(off.stapler.get('good')!.lastError?.code, 'OCSP_NEXT_UPDATE_MISSING');
      await started(on, ['good']);
      const v = on.stapler.get('good')!;
      assert.equal(v.state, 'good');
      assert.equal(Date.parse(v.nextUpdate!) - Date.parse(v.thisUpdate!), 12 * 3600_000);
      const a = on.stapler.answer(key());
      assert.ok(a.kind === 'staple');
      assert.equal(a.staple.nextUpdateAssumed, true);
      assert.equal(a.staple.expires, new Date(Date.parse(v.thisUpdate!) + 12 * 3600_000).toUTCString(), 'Expires is the assumed end');
      assert.equal(a.maxAgeSeconds, Math.floor((Date.parse(v.nextRefresh!) - clock.now().getTime()) / 1000), 'max-age runs to the refresh inside the assumed window');
      assert.ok(a.maxAgeSeconds > 3 * 3600, 'a window of hours, not zero');
    } finally {
      responder.setFault(null);
      await off.stapler.stop();
      await on.stapler.stop();
    }
  });
});
