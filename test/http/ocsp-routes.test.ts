import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import { getCandidates, MAX_GET_CANDIDATES, ocspFrameworkErrors, ocspRoutes } from '../../src/http/ocsp-routes.js';
import { bodyMemoKey, MAX_INLINE_KEY_CHARS, RequestCache, urlMemoKey } from '../../src/http/request-cache.js';
import { certIdKey } from '../../src/pki/certid.js';
import { buildOcspRequest, encodeCertId } from '../../src/pki/request.js';
import { encodeOid, octets, seq, tlv } from '../../src/pki/der.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import type { Answer } from '../../src/service/stapler.js';
import { Staple } from '../../src/service/staple.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();
const thisUpdate = new Date(f.now.getTime() - 60_000);
const der = buildSuccessfulResponse({
  responses: [{ certId: f.certId(f.good), status: { kind: 'good' }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 3600_000) }],
  signer: f.pki.ocspSigner,
  producedAt: f.now,
});
const staple = new Staple(verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300 } }), f.now);
const goodKeys = new Set([certIdKey(f.certId(f.good)), certIdKey(f.certId(f.good, 'sha256'))]);
const laterKey = certIdKey(f.certId(f.mustStaple));

/** The seam: what the Stapler would answer. good → staple, mustStaple → tryLater, anything else unknown. */
function answer(k: string): Answer {
  if (goodKeys.has(k)) return { kind: 'staple', staple, maxAgeSeconds: 1234 };
  if (k === laterKey) return { kind: 'tryLater' };
  return { kind: 'unknown' };
}

const STATUS = { malformedRequest: 1, internalError: 2, tryLater: 3, unauthorized: 6 } as const;
function isOcspError(body: Buffer, s: keyof typeof STATUS): boolean {
  return body.equals(Buffer.from([0x30, 0x03, 0x0a, 0x01, STATUS[s]]));
}

async function appWith(pathPrefix: string): Promise<FastifyInstance> {
  const app = Fastify({ routerOptions: { maxParamLength: 8192 }, frameworkErrors: ocspFrameworkErrors(pathPrefix) });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.register(ocspRoutes, { pathPrefix, requestBodyBytes: 4096, cache: new RequestCache({ maxEntries: 100, maxBytes: 1 << 20 }), answer });
  return app;
}

const req = (leaf = f.good, alg: 'sha1' | 'sha256' = 'sha1', nonce?: Uint8Array) => Buffer.from(buildOcspRequest([f.certId(leaf, alg)], nonce ? { nonce } : {}));
const b64 = (b: Buffer) => b.toString('base64');
const enc = (b: Buffer) => encodeURIComponent(b64(b));

describe('OCSP responder routes', () => {
  let app: FastifyInstance;
  before(async () => (app = await appWith('/some/prefix')));
  after(() => app.close());

  test('a hit is the staple with exactly the RFC 5019 headers', async () => {
    const r = await app.inject({ method: 'GET', url: `/some/prefix/${enc(req())}` });
    assert.equal(r.statusCode, 200);
    assert.ok(r.rawPayload.equals(staple.body));
    assert.equal(r.headers['content-type'], 'application/ocsp-response');
    assert.equal(r.headers.etag, `"${createHash('sha256').update(der).digest('hex')}"`);
    assert.equal(r.headers['last-modified'], thisUpdate.toUTCString());
    assert.equal(r.headers.expires, new Date(thisUpdate.getTime() + 3600_000).toUTCString());
    assert.equal(r.headers['cache-control'], 'max-age=1234, public, no-transform, must-revalidate');
  });

  test('accepts nginx forms: %2B %2F %3D, a doubled slash, and bare base64', async () => {
    // Find a request whose base64 has + or / in it, so that encoding matters.
    const r1 = req();
    for (const url of [`/some/prefix/${enc(r1)}`, `/some/prefix//${enc(r1)}`, `/some/prefix/${b64(r1)}`]) {
      const r = await app.inject({ method: 'GET', url });
      assert.equal(r.statusCode, 200, url);
      assert.ok(r.rawPayload.equals(staple.body), url);
    }
  });

  test('answers a SHA-256 CertID and a request longer than the default param length', async () => {
    const long = req(f.good, 'sha256', Uint8Array.from({ length: 32 }, (_, i) => i));
    assert.ok(enc(long).length > 100);
    const r = await app.inject({ method: 'GET', url: `/some/prefix/${enc(long)}` });
    assert.equal(r.statusCode, 200);
    assert.ok(r.rawPayload.equals(staple.body));
  });

  test('POST with or without application/ocsp-request', async () => {
    for (const headers of [{ 'content-type': 'application/ocsp-request' }, { 'content-type': 'application/octet-stream' }, {}]) {
      const r = await app.inject({ method: 'POST', url: '/some/prefix', payload: req(), headers });
      assert.equal(r.statusCode, 200, JSON.stringify(headers));
      assert.ok(r.rawPayload.equals(staple.body));
    }
  });

  test('unknown certificate → unauthorized; known without a staple → tryLater', async () => {
    const unknown = await app.inject({ method: 'GET', url: `/some/prefix/${enc(req(f.revoked))}` });
    assert.equal(unknown.statusCode, 200);
    assert.equal(unknown.headers['content-type'], 'application/ocsp-response');
    assert.ok(isOcspError(unknown.rawPayload, 'unauthorized'));
    const later = await app.inject({ method: 'POST', url: '/some/prefix', payload: req(f.mustStaple) });
    assert.ok(isOcspError(later.rawPayload, 'tryLater'));
  });

  test('anything unparsable → malformedRequest with HTTP 200, never a 5xx', async () => {
    const cases = [
      { method: 'GET' as const, url: '/some/prefix/not*base64' },
      { method: 'GET' as const, url: '/some/prefix/' },
      { method: 'GET' as const, url: '/some/prefix/%E0%A4%A' },
      { method: 'GET' as const, url: `/some/prefix/${encodeURIComponent(Buffer.from('hello world').toString('base64'))}` },
      { method: 'POST' as const, url: '/some/prefix', payload: Buffer.from('garbage') },
      { method: 'POST' as const, url: '/some/prefix', payload: Buffer.alloc(0) },
      { method: 'POST' as const, url: '/some/prefix', payload: req().subarray(0, 20) },
      { method: 'POST' as const, url: '/some/prefix', payload: Buffer.from(buildOcspRequest([f.certId(f.good), f.certId(f.revoked)])) },
    ];
    for (const c of cases) {
      const r = await app.inject(c);
      assert.equal(r.statusCode, 200, `${c.method} ${c.url}`);
      assert.ok(isOcspError(r.rawPayload, 'malformedRequest'), `${c.method} ${c.url}: ${r.rawPayload.toString('hex')}`);
    }
  });

  test('an oversized body is refused with 413', async () => {
    const r = await app.inject({ method: 'POST', url: '/some/prefix', payload: Buffer.alloc(5000, 0x30), headers: { 'content-type': 'application/ocsp-request' } });
    assert.equal(r.statusCode, 413);
  });

  test('If-None-Match with the current ETag gets 304', async () => {
    const r = await app.inject({ method: 'GET', url: `/some/prefix/${enc(req())}`, headers: { 'if-none-match': staple.etag } });
    assert.equal(r.statusCode, 304);
  });
});

describe('OCSP routes at the root prefix', () => {
  let app: FastifyInstance;
  before(async () => (app = await appWith('/')));
  after(() => app.close());

  test('GET /<b64> and POST / are OCSP, other routes still answer', async () => {
    assert.ok((await app.inject({ method: 'GET', url: `/${enc(req())}` })).rawPayload.equals(staple.body));
    assert.ok((await app.inject({ method: 'POST', url: '/', payload: req() })).rawPayload.equals(staple.body));
    assert.deepEqual((await app.inject({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
  });
});

describe('HTTP/1.0 as nginx speaks it', () => {
  let app: FastifyInstance;
  let port: number;
  before(async () => {
    app = await appWith('/ocsp');
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => app.close());

  test('answers and closes the connection (nginx reads until EOF)', async () => {
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => s.write(`GET /ocsp/${enc(req())} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`));
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('end', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
      s.setTimeout(3000, () => reject(new Error('connection was not closed by the server')));
    });
    const split = raw.indexOf('\r\n\r\n');
    const head = raw.subarray(0, split).toString('latin1');
    assert.match(head, /^HTTP\/1\.[01] 200 /);
    assert.match(head, /\r\ncontent-type: application\/ocsp-response\r\n/i);
    assert.ok(raw.subarray(split + 4).equals(staple.body));
    assert.ok(split < 1024, 'headers stay small (nginx has one 16 KiB buffer for all of it)');
  });
});

describe('OCSP responder routes, a response without nextUpdate under refresh.assumeValidity', () => {
  test('Expires is thisUpdate + the assumed validity and max-age is what the service computed from it', async () => {
    const noNext = buildSuccessfulResponse({ responses: [{ certId: f.certId(f.good), status: { kind: 'good' }, thisUpdate }], signer: f.pki.ocspSigner, producedAt: f.now });
    const assumed = new Staple(verifyOcspResponse({ der: noNext, leaf: f.good, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300, assumeValiditySeconds: 12 * 3600 } }), f.now);
    const app = Fastify({ routerOptions: { maxParamLength: 8192 }, frameworkErrors: ocspFrameworkErrors('/ocsp') });
    await app.register(ocspRoutes, { pathPrefix: '/ocsp', requestBodyBytes: 4096, cache: new RequestCache({ maxEntries: 100, maxBytes: 1 << 20 }), answer: () => ({ kind: 'staple', staple: assumed, maxAgeSeconds: 21_600 }) });
    try {
      const r = await app.inject({ method: 'GET', url: `/ocsp/${enc(req())}` });
      assert.equal(r.statusCode, 200);
      assert.ok(r.rawPayload.equals(Buffer.from(noNext)));
      assert.equal(r.headers.expires, new Date(thisUpdate.getTime() + 12 * 3600_000).toUTCString());
      assert.equal(r.headers['last-modified'], thisUpdate.toUTCString());
      assert.match(String(r.headers['cache-control']), /^max-age=21600,/);
    } finally {
      await app.close();
    }
  });
});

describe('OCSP at the root URL beside a path prefix', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await appWith('/ocsp');
    app.get('/', async (_req, reply) => reply.header('content-type', 'text/html').send('<p>status</p>'));
    app.get('/v1/certificates/:name', async (req) => ({ name: (req.params as { name: string }).name }));
  });
  after(() => app.close());

  const isStaple = (r: { statusCode: number; headers: Record<string, unknown>; rawPayload: Buffer }) =>
    r.statusCode === 200 && r.headers['content-type'] === 'application/ocsp-response' && r.rawPayload.equals(staple.body);

  test('GET /<base64> in every nginx form and POST / answer exactly as under the prefix', async () => {
    for (const url of [`/${enc(req())}`, `//${enc(req())}`, `/${b64(req())}`, `/${req().toString('base64url')}`]) {
      assert.ok(isStaple(await app.inject({ method: 'GET', url })), url);
    }
    for (const headers of [{ 'content-type': 'application/ocsp-request' }, { 'content-type': 'application/json' }, {}]) {
      assert.ok(isStaple(await app.inject({ method: 'POST', url: '/', payload: req(), headers })), JSON.stringify(headers));
    }
    const unknown = await app.inject({ method: 'POST', url: '/', payload: req(f.revoked), headers: { 'content-type': 'application/ocsp-request' } });
    assert.ok(isOcspError(unknown.rawPayload, 'unauthorized'));
  });

  test('GET / stays the status page and named routes stay theirs', async () => {
    const page = await app.inject({ method: 'GET', url: '/' });
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.deepEqual((await app.inject({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
    assert.deepEqual((await app.inject({ method: 'GET', url: '/v1/certificates/www' })).json(), { name: 'www' });
  });

  test('no OCSP-shaped request gets a JSON or HTML answer', async () => {
    const cases = [
      { method: 'POST' as const, url: '/', payload: Buffer.from('garbage'), headers: { 'content-type': 'application/ocsp-request' } },
      { method: 'POST' as const, url: '/', payload: Buffer.alloc(0), headers: { 'content-type': 'application/ocsp-request' } },
      { method: 'POST' as const, url: '/some/ca/path', payload: req(), headers: { 'content-type': 'application/json' } },
      { method: 'GET' as const, url: '/MFMwUTBPME0wSzAJBgUrDgMCGgUABBQ' },
      { method: 'GET' as const, url: '/not%2Freally%3D%3D' },
      { method: 'GET' as const, url: '/MFMw%E0%A4%A' },
      { method: 'GET' as const, url: '/v1/unknown' },
      { method: 'GET' as const, url: `//${enc(req().subarray(0, 30))}` },
    ];
    for (const c of cases) {
      const r = await app.inject(c);
      assert.equal(r.statusCode, 200, `${c.method} ${c.url}`);
      assert.equal(r.headers['content-type'], 'application/ocsp-response', `${c.method} ${c.url}`);
      assert.ok(isStaple(r) || isOcspError(r.rawPayload, 'malformedRequest'), `${c.method} ${c.url}: ${r.rawPayload.toString('hex')}`);
    }
  });

  test('random and mutated requests at the root URL, by GET in nginx forms and by POST: always an OCSP answer', async () => {
    const real = [req(), req(f.revoked), req(f.good, 'sha256')];
    const bodies = fc.oneof(
      fc.constantFrom(...real),
      fc.tuple(fc.constantFrom(...real), fc.nat(), fc.integer({ min: 1, max: 255 })).map(([b, at, x]) => {
        const m = Buffer.from(b);
        m[at % m.length]! ^= x;
        return m;
      }),
      fc.uint8Array({ minLength: 1, maxLength: 300 }).map((u) => Buffer.from(u)),
    );
    const requests = fc.oneof(
      bodies.map((b) => ({ method: 'GET' as const, url: `/${enc(b)}` })),
      bodies.map((b) => ({ method: 'GET' as const, url: `//${enc(b)}` })),
      bodies.map((b) => ({ method: 'GET' as const, url: `/${b.toString('base64url')}` })),
      fc.tuple(bodies, fc.constantFrom('application/ocsp-request', 'application/json', 'text/plain', '')).map(([b, type]) => ({
        method: 'POST' as const, url: '/', payload: b, headers: type ? { 'content-type': type } : {},
      })),
    );
    await fc.assert(
      fc.asyncProperty(requests, async (r) => {
        const a = await app.inject(r);
        assert.equal(a.statusCode, 200, `${r.method} ${r.url.slice(0, 80)}`);
        assert.equal(a.headers['content-type'], 'application/ocsp-response', `${r.method} ${r.url.slice(0, 80)}`);
      }),
      { numRuns: 400 },
    );
  });

  test('a path that cannot be base64 may still 404', async () => {
    for (const url of ['/favicon.ico', '/robots.txt']) assert.equal((await app.inject({ method: 'GET', url })).statusCode, 404, url);
  });
});

describe('request cache bounds', () => {
  /** A well-formed request for `leaf` padded to about `size` bytes with a junk (non-nonce) extension. */
  function withJunkExtension(size: number, salt: number): Buffer {
    const junk = Buffer.alloc(size, salt & 0xff);
    junk.writeUInt32BE(salt, 0);
    // requestExtensions [2] { Extension { some private OID, OCTET STRING junk } }: not a nonce, so cacheable.
    const ext = tlv(0xa2, seq(seq(encodeOid('1.3.6.1.4.1.99999.1'), octets(junk))));
    return Buffer.from(seq(seq(seq(seq(encodeCertId(f.certId(f.good)))), ext)));
  }

  test('unique large bodies, malformed and well-formed with junk extensions, stay within the byte bound', async () => {
    const maxBytes = 256 * 1024;
    const cache = new RequestCache({ maxEntries: 100_000, maxBytes });
    const app = Fastify({ routerOptions: { maxParamLength: 8192 } });
    await app.register(ocspRoutes, { pathPrefix: '/ocsp', requestBodyBytes: 32768, cache, answer });
    let wellFormed = 0;
    for (let i = 0; i < 300; i++) {
      const body = i % 2 ? Buffer.alloc(16384, i & 0xff).fill(0x30, 0, 1) : withJunkExtension(16000, i);
      const r = await app.inject({ method: 'POST', url: '/ocsp', payload: body, headers: { 'content-type': 'application/ocsp-request' } });
      if (r.rawPayload.equals(staple.body)) wellFormed++;
      assert.ok(cache.stats.bytes <= maxBytes, `after ${i + 1} bodies the cache holds ${cache.stats.bytes} bytes`);
    }
    assert.equal(wellFormed, 150, 'the padded requests are well-formed and answered with the staple');
    // Each well-formed entry is small (its key is a digest), so all of them fit; the malformed ones are not kept.
    assert.equal(cache.stats.entries, 150);
    assert.ok(cache.stats.bytes < 150 * 2048, `${cache.stats.bytes} bytes for 150 entries`);
    await app.close();
  });

  test('malformed requests are not cached, however many', () => {
    const cache = new RequestCache({ maxEntries: 1000, maxBytes: 1 << 20 });
    for (let i = 0; i < 500; i++) assert.equal(cache.target(`p:garbage${i}`, () => [Buffer.from(`garbage${i}`)]).kind, 'malformed');
    assert.equal(cache.stats.entries, 0);
    assert.equal(cache.stats.bytes, 0);
  });

  test('the byte bound evicts the oldest entries, and a repeat is a hit without a parse', () => {
    const cache = new RequestCache({ maxEntries: 1000, maxBytes: 4096 });
    const one = req();
    cache.target(`p:${one.toString('latin1')}`, () => [one]);
    const parses = cache.stats.parseAttempts;
    assert.equal(cache.target(`p:${one.toString('latin1')}`, () => [one]).kind, 'certId');
    assert.equal(cache.stats.parseAttempts, parses, 'a repeat is answered from the memo');
    for (let i = 0; i < 100; i++) cache.target(`p:${i}:${one.toString('latin1')}`, () => [one]);
    assert.ok(cache.stats.bytes <= 4096 && cache.stats.entries < 100, `${cache.stats.entries} entries, ${cache.stats.bytes} bytes`);
  });
});

describe('GET paths made of /M segments', () => {
  test(`are malformedRequest after at most ${MAX_GET_CANDIDATES} parses, not one per segment`, async () => {
    const cache = new RequestCache({ maxEntries: 100, maxBytes: 1 << 20 });
    const app = Fastify({ routerOptions: { maxParamLength: 8192 } });
    await app.register(ocspRoutes, { pathPrefix: '/ocsp', requestBodyBytes: 4096, cache, answer });
    for (const url of [`/ocsp/x${'/M'.repeat(4000)}`, `/ocsp/${'M/'.repeat(4000)}`, `/${'M/'.repeat(4000)}M`]) {
      const before = cache.stats.parseAttempts;
      const r = await app.inject({ method: 'GET', url });
      assert.ok(isOcspError(r.rawPayload, 'malformedRequest'), url.slice(0, 20));
      const parses = cache.stats.parseAttempts - before;
      assert.ok(parses >= 1 && parses <= MAX_GET_CANDIDATES, `${parses} parses for ${url.slice(0, 20)}...`);
    }
    await app.close();
  });

  test('an absolute-form request behind a CA path with M segments is still found', () => {
    const text = `MyCA/Main/ocsp/${b64(req())}`;
    const parsed = [...getCandidates(text)].filter((d) => d !== undefined);
    assert.ok(parsed.length <= MAX_GET_CANDIDATES);
    const cache = new RequestCache({ maxEntries: 10, maxBytes: 1 << 20 });
    assert.equal(cache.target('u:x', () => getCandidates(text)).kind, 'certId');
  });
});

test('memo keys: an origin-form URL is its own key, and no URL key can equal a body key or another form', () => {
  const url = `/ocsp/${encodeURIComponent(b64(req()))}`;
  assert.equal(urlMemoKey(url), url, 'origin-form: the URL itself');
  const body = Buffer.from(url, 'latin1');
  assert.notEqual(urlMemoKey(url), bodyMemoKey(body), 'a POST body with the same text gets another key');
  assert.equal(urlMemoKey(`http://ocsp.example${url}`), `u:http://ocsp.example${url}`, 'absolute-form keeps its prefix');
  const long = `/${'A'.repeat(MAX_INLINE_KEY_CHARS)}`;
  assert.match(urlMemoKey(long), /^U:[A-Za-z0-9+/]{43}=$/, 'over the bound: a SHA-256, not the URL');
  // Every other kind of key starts with a letter; an origin-form URL starts with '/'.
  for (const k of [bodyMemoKey(body), bodyMemoKey(Buffer.alloc(MAX_INLINE_KEY_CHARS + 1)), urlMemoKey('http://x/'), urlMemoKey(long)]) assert.notEqual(k.charAt(0), '/');
});
