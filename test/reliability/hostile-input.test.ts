/**
 * Hostile input on the HTTP side, against the real app (buildApp over a real Stapler; the upstream is an
 * in-file fake ResponderClient that signs good answers). A property test throws thousands of random and
 * mutated OCSP requests at it; socket tests check the size and time bounds; the admin routes need a token.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import pino from 'pino';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import type { ResponderClient } from '../../src/fetch/responder-client.js';
import { buildApp } from '../../src/http/app.js';
import { buildOcspRequest, parseOcspRequest } from '../../src/pki/request.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { Stapler } from '../../src/service/stapler.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { FakeClock } from '../helpers/clock.js';
import { fixture } from '../helpers/pki.js';
import { OCSP_STATUS, ocspErrorStatus, rawHttp } from './helpers.js';

const f = fixture();
const TOKEN = 'hostile-test-admin-token';
const LIMITS = { requestBodyBytes: 4096, maxUrlBytes: 2048, connectionTimeout: '1s' };
const policy = { skewSeconds: 300, marginSeconds: 300 };
const configWith = (adminToken: string) => parseConfig({ adminToken, limits: LIMITS }, '<inline>', {});

/** The CA seam: a good, signed answer for whatever CertIDs are asked. */
const upstream: ResponderClient = {
  async fetch(_url, request) {
    const thisUpdate = new Date(f.now.getTime() - 60_000);
    const responses = parseOcspRequest(request).certIds.map((certId) => ({ certId, status: { kind: 'good' } as const, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 3600_000) }));
    return { body: buildSuccessfulResponse({ responses, signer: f.pki.ocspSigner, producedAt: f.now }), method: 'GET', maxAgeSeconds: undefined, durationMs: 0 };
  },
  close() {},
};

async function startedStapler(): Promise<Stapler> {
  const clock = new FakeClock(f.now);
  const stapler = new Stapler({
    clock, client: upstream, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log: pino({ level: 'silent' }),
    refresh: configWith('').refresh, concurrency: 2, nonce: false, rand: () => 0,
  });
  await stapler.setRecords([{ name: 'good', source: 'good.pem', leaf: f.good, issuer: f.issuer, url: 'http://127.0.0.1:9/' }]);
  await stapler.start();
  await clock.advance(0);
  for (let i = 0; i < 100 && stapler.get('good')?.state !== 'good'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(stapler.get('good')?.state, 'good');
  return stapler;
}

const realRequests = [
  buildOcspRequest([f.certId(f.good)]),
  buildOcspRequest([f.certId(f.good, 'sha256')]),
  buildOcspRequest([f.certId(f.revoked)]),
  buildOcspRequest([f.certId(f.good)], { nonce: Uint8Array.from({ length: 16 }, (_, i) => i) }),
].map((r) => Buffer.from(r));

/** A real request with bytes flipped, then maybe truncated and/or extended. */
const mutated = fc
  .tuple(fc.constantFrom(...realRequests), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }), fc.option(fc.nat({ max: 120 })), fc.uint8Array({ maxLength: 40 }))
  .map(([req, flips, cut, tail]) => {
    const b = Buffer.from(req);
    for (const [at, x] of flips) b[at % b.length]! ^= x;
    return Buffer.concat([cut === null ? b : b.subarray(0, cut), tail]);
  });
const bodies = fc.oneof(mutated, fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)), fc.constantFrom(...realRequests));
const pctSoup = fc
  .array(fc.oneof(fc.constantFrom('%', '%2', '%G0', '%zz', '%00', '%2F', '%2B', '%3D', '%E0%A4%A', '%C3%28', '%FF', '/', '//', '+', '=', '?', '..'), fc.integer({ min: 0, max: 255 }).map((n) => `%${n.toString(16).padStart(2, '0')}`), fc.base64String({ maxLength: 12 })), { maxLength: 40 })
  .map((parts) => parts.join(''));
const pathSeg = fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,30}$/);

type Req = { method: 'GET' | 'POST'; url: string; payload?: Buffer; headers?: Record<string, string> };
const requests: fc.Arbitrary<Req> = fc.oneof(
  bodies.map((b): Req => ({ method: 'GET', url: `/ocsp/${encodeURIComponent(b.toString('base64'))}` })),
  bodies.map((b): Req => ({ method: 'GET', url: `/ocsp/${b.toString('base64')}` })),
  bodies.map((b): Req => ({ method: 'GET', url: `/ocsp//${b.toString('base64url')}` })),
  fc.tuple(bodies, fc.constantFrom('application/ocsp-request', 'application/octet-stream', 'application/json', 'text/plain', 'multipart/form-data; boundary=x', '')).map(
    ([b, type]): Req => ({ method: 'POST', url: '/ocsp', payload: b, headers: type ? { 'content-type': type } : {} }),
  ),
  fc.base64String({ maxLength: 400 }).map((s): Req => ({ method: 'GET', url: `/ocsp/${s}` })),
  pctSoup.map((s): Req => ({ method: 'GET', url: `/ocsp/${s}` })),
  fc.array(pathSeg, { maxLength: 6 }).map((segs): Req => ({ method: 'GET', url: `/ocsp/${segs.join('/')}` })),
  fc.integer({ min: 4000, max: 6000 }).map((n): Req => ({ method: 'POST', url: '/ocsp', payload: Buffer.alloc(n, 0x30), headers: { 'content-type': 'application/ocsp-request' } })),
);

describe('hostile input', { timeout: 45_000 }, () => {
  let stapler: Stapler;
  let app: FastifyInstance;
  let port: number;

  before(async () => {
    stapler = await startedStapler();
    app = buildApp({ stapler, log: pino({ level: 'silent' }), config: configWith(TOKEN) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(async () => {
    await app?.close();
    await stapler?.stop();
  });

  function judge(r: LightMyRequestResponse, what: string, url: string): void {
    assert.ok(r.statusCode < 500, `${what}: HTTP ${r.statusCode}`);
    // inject resolves dot segments as a URL parser does (`/ocsp/..` is `/`): outside the prefix it is another route.
    if (!new URL(url, 'http://x').pathname.startsWith('/ocsp/')) return;
    if (r.statusCode === 200) {
      assert.equal(r.headers['content-type'], 'application/ocsp-response', what);
      const status = ocspErrorStatus(r.rawPayload);
      if (status === undefined) assert.doesNotThrow(() => verifyOcspResponse({ der: r.rawPayload, leaf: f.good, issuer: f.issuer, now: f.now, policy }), `${what}: a 200 that is neither an OCSP error nor a staple`);
      else assert.ok(([OCSP_STATUS.malformedRequest, OCSP_STATUS.tryLater, OCSP_STATUS.unauthorized] as number[]).includes(status), `${what}: OCSP status ${status}`);
    } else {
      assert.ok([400, 413, 414].includes(r.statusCode), `${what}: HTTP ${r.statusCode}`);
    }
  }

  test('2,000 random and mutated OCSP requests by GET and POST: each is an OCSP error or the staple, or 400/413/414; never a 5xx; heap stays flat', async () => {
    for (const req of realRequests.slice(0, 2)) judge(await app.inject({ method: 'POST', url: '/ocsp', payload: req }), 'warm-up', '/ocsp');
    const heapBefore = process.memoryUsage().heapUsed;
    let staples = 0;
    await fc.assert(
      fc.asyncProperty(requests, async (req) => {
        const r = await app.inject(req);
        judge(r, `${req.method} ${req.url.slice(0, 200)}${req.payload ? ` (${req.payload.length} bytes)` : ''}`, req.url);
        if (r.statusCode === 200 && ocspErrorStatus(r.rawPayload) === undefined) staples++;
      }),
      { numRuns: 2000 },
    );
    const grown = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(grown < 48 * 1024 * 1024, `heap grew by ${(grown / 1048576).toFixed(1)} MiB`);
    assert.ok(staples > 0, 'the unmutated requests in the mix got the staple');
    assert.equal(stapler.get('good')?.state, 'good');
  });

  test('a POST body over limits.requestBodyBytes gets 413 over a real socket', async () => {
    const body = Buffer.alloc(LIMITS.requestBodyBytes + 1, 0x30);
    const head = `POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const r = await rawHttp(port, Buffer.concat([Buffer.from(head), body]));
    assert.equal(r.status, 413, r.head);
  });

  test('a URL over limits.maxUrlBytes gets 414, however long', async () => {
    for (const n of [LIMITS.maxUrlBytes + 1, LIMITS.maxUrlBytes + 1500, LIMITS.maxUrlBytes + 8192]) {
      const r = await rawHttp(port, `GET /ocsp/${'M'.repeat(n)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 414, `URL of ${n} bytes: ${r.head.split('\r\n')[0]}`);
    }
    const fits = await rawHttp(port, `GET /ocsp/${'M'.repeat(LIMITS.maxUrlBytes - 10)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    assert.equal(fits.status, 200, 'a URL within the limit is still an OCSP request');
    assert.equal(ocspErrorStatus(fits.body), OCSP_STATUS.malformedRequest);
  });

  test('headers over the header size limit are refused with 431, never a 5xx', async () => {
    const r = await rawHttp(port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-Junk: 0123456789abcdef0123456789abcdef\r\n'.repeat(1000)}Connection: close\r\n\r\n`);
    assert.equal(r.status, 431, r.head);
  });

  test('an idle connection is closed after limits.connectionTimeout (1 s)', async () => {
    const r = await rawHttp(port, '', { timeoutMs: 4000 });
    assert.ok(r.closedByServer, 'the server closed the idle connection');
    assert.ok(r.closedAfterMs < 2500, `closed after ${r.closedAfterMs} ms`);
  });

  test('a slow client sending its headers byte by byte is cut off by limits.connectionTimeout (1 s)', async () => {
    const head = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-Slow: 1\r\n'.repeat(60)}\r\n`;
    const r = await rawHttp(port, head, { chunk: 1, gapMs: 100, timeoutMs: 4000 });
    assert.ok(r.closedByServer && r.closedAfterMs < 3000, `still open after ${r.closedAfterMs} ms (status ${r.status})`);
    assert.notEqual(r.status, 200, 'the slow request was not served');
  });

  test('admin routes: 403 without a configured token, 401 without or with a wrong token, 200 with the right one', async () => {
    const off = buildApp({ stapler, log: pino({ level: 'silent' }), config: configWith('') });
    try {
      const r = await off.inject({ method: 'POST', url: '/v1/certificates/good/refresh', headers: { authorization: 'Bearer anything' } });
      assert.equal(r.statusCode, 403);
      assert.equal(r.json().error.code, 'ADMIN_DISABLED');
      assert.equal((await off.inject({ method: 'POST', url: '/v1/certificates/good/refresh' })).statusCode, 403);
    } finally {
      await off.close();
    }
    const url = '/v1/certificates/good/refresh';
    assert.equal((await app.inject({ method: 'POST', url })).statusCode, 401);
    assert.equal((await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${TOKEN}x` } })).statusCode, 401);
    assert.equal((await app.inject({ method: 'POST', url, headers: { authorization: TOKEN } })).statusCode, 401, 'the Bearer scheme is required');
    const ok = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.statusCode, 200, ok.body);
  });
});
