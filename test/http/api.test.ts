import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import { demoStatuses } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { tokenMatches } from '../../src/http/api-routes.js';
import { buildApp } from '../../src/http/app.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { Stapler } from '../../src/service/stapler.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
let responder: DemoResponder;

before(async () => {
  // Real time here: the fixture's certificates are valid for months around now.
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now) });
});
after(() => responder.close());

function make(adminToken: string, captured = captureLog()): { app: FastifyInstance; stapler: Stapler } {
  const cfg = parseConfig({ adminToken }, '<inline>', {});
  const client = new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'test' });
  const stapler = new Stapler({ clock: systemClock, client, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log: captured.log, refresh: cfg.refresh, concurrency: 2, nonce: false });
  return { app: buildApp({ stapler, log: captured.log, config: cfg }), stapler };
}

const records = (): CertRecord[] => [
  { name: 'www', source: 'www.pem', leaf: f.good, issuer: f.issuer, url: responder.url },
  { name: 'quiet', source: 'quiet.pem', leaf: f.revoked, issuer: f.issuer, url: undefined },
];

describe('JSON API and health', () => {
  const captured = captureLog();
  let app: FastifyInstance;
  let stapler: Stapler;
  before(async () => {
    ({ app, stapler } = make('s3cret-token', captured));
    await stapler.setRecords(records());
  });
  after(async () => {
    await app.close();
    await stapler.stop();
  });

  test('/healthz answers while /readyz is 503 until the first fetches settle', async () => {
    assert.equal((await app.inject('/healthz')).statusCode, 200);
    const r = await app.inject('/readyz');
    assert.equal(r.statusCode, 503);
    assert.equal(r.json().ready, false);
    await stapler.start();
    await until(() => stapler.readiness().ready, 'ready');
    assert.equal((await app.inject('/readyz')).statusCode, 200);
  });

  test('lists certificates with their state, window and error', async () => {
    const body = (await app.inject('/v1/certificates')).json() as { certificates: Array<Record<string, unknown>> };
    const www = body.certificates.find((c) => c.name === 'www')!;
    assert.equal(www.state, 'good');
    assert.equal(www.serial, f.good.serialHex);
    assert.equal(www.mustStaple, false);
    assert.equal(www.ocspUrl, responder.url);
    for (const k of ['subject', 'notAfter', 'thisUpdate', 'nextUpdate', 'nextRefresh', 'lastError']) assert.ok(k in www, k);
    assert.equal(body.certificates.find((c) => c.name === 'quiet')!.state, 'not_applicable');
  });

  test('one certificate, its DER, and a JSON 404 with an error code', async () => {
    assert.equal((await app.inject('/v1/certificates/www')).json().name, 'www');
    const der = await app.inject('/v1/certificates/www/ocsp');
    assert.equal(der.headers['content-type'], 'application/ocsp-response');
    const viaOcsp = await app.inject({ method: 'POST', url: '/ocsp', payload: Buffer.from(buildOcspRequest([f.certId(f.good)])) });
    assert.ok(der.rawPayload.equals(viaOcsp.rawPayload), 'the JSON API and the OCSP route serve the same staple');
    const missing = await app.inject('/v1/certificates/nope');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, 'NOT_FOUND');
    const noStaple = await app.inject('/v1/certificates/quiet/ocsp');
    assert.equal(noStaple.statusCode, 404);
    assert.equal(noStaple.json().error.code, 'NO_STAPLE');
  });

  test('refresh needs the bearer token, and the token never reaches the log', async () => {
    const url = '/v1/certificates/www/refresh';
    assert.equal((await app.inject({ method: 'POST', url })).statusCode, 401);
    assert.equal((await app.inject({ method: 'POST', url, headers: { authorization: 'Bearer wrong' } })).statusCode, 401);
    const before = responder.stats.requests;
    const ok = await app.inject({ method: 'POST', url, headers: { authorization: 'Bearer s3cret-token' } });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.json().state, 'good');
    assert.equal(responder.stats.requests, before + 1);
    assert.ok(!JSON.stringify(captured.lines).includes('s3cret-token'));
  });
});

describe('admin API without a token', () => {
  test('is off: refresh answers 403 whatever is sent', async () => {
    const { app, stapler } = make('');
    await stapler.setRecords(records());
    const r = await app.inject({ method: 'POST', url: '/v1/certificates/www/refresh', headers: { authorization: 'Bearer ' } });
    assert.equal(r.statusCode, 403);
    assert.equal(r.json().error.code, 'ADMIN_DISABLED');
    await app.close();
    await stapler.stop();
  });
});

test('token comparison', () => {
  assert.equal(tokenMatches('abc', 'abc'), true);
  assert.equal(tokenMatches('abd', 'abc'), false);
  assert.equal(tokenMatches('abcd', 'abc'), false);
  assert.equal(tokenMatches(undefined, 'abc'), false);
  assert.equal(tokenMatches('', ''), false);
});
