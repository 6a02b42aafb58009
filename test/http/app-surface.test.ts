/**
 * The whole HTTP surface from buildApp over a real Stapler (the upstream is the demo responder): OCSP at
 * the root URL, the fast path's share of it, the bound on GET candidates over a real socket, and the Host
 * check that keeps the status page, JSON API and metrics out of reach of DNS rebinding.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import { demoStatuses } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { buildApp } from '../../src/http/app.js';
import { createFastPath } from '../../src/http/fast-path.js';
import { hostAllowed, hostPolicy } from '../../src/http/host-check.js';
import { Metrics } from '../../src/http/metrics.js';
import { MAX_GET_CANDIDATES } from '../../src/http/ocsp-routes.js';
import { RequestCache } from '../../src/http/request-cache.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { Stapler } from '../../src/service/stapler.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
const good = Buffer.from(buildOcspRequest([f.certId(f.good)]));
const b64 = good.toString('base64');
const MALFORMED = Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x01]);
let responder: DemoResponder;
let stapler: Stapler;
let metrics: Metrics;
let staple: Buffer;

before(async () => {
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now) });
  const cfg = parseConfig({}, '<inline>', {});
  const client = new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'test' });
  stapler = new Stapler({ clock: systemClock, client, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log: captureLog().log, refresh: cfg.refresh, concurrency: 2, nonce: false });
  metrics = new Metrics(stapler, { marginSeconds: 300, defaultMetrics: false, certificateSeriesLimit: 100, attentionHorizonSeconds: 7200 });
  await stapler.setRecords([{ name: 'www', source: 'www.pem', leaf: f.good, issuer: f.issuer, url: responder.url }]);
  await stapler.start();
  await until(() => stapler.staple('www') !== undefined, 'the first fetch');
  staple = Buffer.from(stapler.staple('www')!.body);
});
after(async () => {
  await stapler.stop();
  await responder.close();
});

function appWith(doc: Record<string, unknown>, requestCache?: RequestCache): FastifyInstance {
  return buildApp({ stapler, metrics, log: captureLog().log, config: parseConfig(doc, '<inline>', {}), requestCache });
}

/** One raw HTTP/1.0 exchange, as nginx has it: the whole answer, read until the server closes. */
function raw(port: number, head: string, body = Buffer.alloc(0)): Promise<{ status: number; head: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(Buffer.concat([Buffer.from(head, 'latin1'), body])));
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const h = all.subarray(0, split).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.\d (\d{3})/.exec(h)?.[1]), head: h, body: all.subarray(split + 4) });
    });
    s.on('error', reject);
    s.setTimeout(5000, () => reject(new Error('no answer within 5 s')));
  });
}

describe('OCSP at the root URL, over a socket', () => {
  let app: FastifyInstance;
  let port: number;
  const cache = new RequestCache({ maxEntries: 1000, maxBytes: 1 << 20 });
  before(async () => {
    app = appWith({ ocsp: { pathPrefix: '/ocsp' } }, cache);
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => app.close());

  test('GET /<base64> as nginx sends it, POST / as openssl sends it: the staple; GET / the status page', async () => {
    for (const path of [`/${encodeURIComponent(b64)}`, `//${encodeURIComponent(b64)}`, `/${b64}`]) {
      const r = await raw(port, `GET ${path} HTTP/1.0\r\nHost: ocsp.upstream.example\r\n\r\n`);
      assert.equal(r.status, 200, path);
      assert.match(r.head, /\r\ncontent-type: application\/ocsp-response\r\n/i, path);
      assert.ok(r.body.equals(staple), path);
    }
    const post = await raw(port, `POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${good.length}\r\n\r\n`, good);
    assert.ok(post.body.equals(staple));
    const page = await raw(port, 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n');
    assert.match(page.head, /\r\ncontent-type: text\/html/i);
  });

  test(`a GET path made of /M segments costs at most ${MAX_GET_CANDIDATES} parses, through the fast path and the route`, async () => {
    for (const path of [`/ocsp/x${'/M'.repeat(4000)}`, `/${'M/'.repeat(4000)}M`]) {
      const before = cache.stats.parseAttempts;
      const r = await raw(port, `GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`);
      assert.ok(r.body.equals(MALFORMED), `${path.slice(0, 12)}...: HTTP ${r.status} ${r.body.toString('hex')}`);
      const parses = cache.stats.parseAttempts - before;
      assert.ok(parses >= 1 && parses <= MAX_GET_CANDIDATES, `${parses} parses`);
    }
  });
});

describe('the fast path answers root-URL hits', () => {
  test('GET /<base64> and //<base64> are answered before Fastify; /healthz and /v1/... never touch the cache', () => {
    const cache = new RequestCache({ maxEntries: 100, maxBytes: 1 << 20 });
    const fast = createFastPath({ pathPrefix: '/ocsp', maxUrlBytes: 8192, cache, answer: (k) => stapler.answer(k) });
    const fakeRes = () => {
      const r = { status: 0, body: Buffer.alloc(0) as Buffer, writeHead(s: number) { r.status = s; return r; }, end(b: Buffer) { r.body = b; } };
      return r;
    };
    for (const url of [`/${encodeURIComponent(b64)}`, `//${encodeURIComponent(b64)}`, `/ocsp/${encodeURIComponent(b64)}`]) {
      const res = fakeRes();
      assert.equal(fast({ method: 'GET', url, rawHeaders: [] } as unknown as IncomingMessage, res as unknown as ServerResponse), true, url);
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(res.body).equals(staple));
    }
    const parses = cache.stats.parseAttempts;
    for (const url of ['/healthz', '/v1/certificates', '/metrics', '/']) {
      assert.equal(fast({ method: 'GET', url, rawHeaders: [] } as unknown as IncomingMessage, fakeRes() as unknown as ServerResponse), false, url);
    }
    assert.equal(cache.stats.parseAttempts, parses);
  });
});

test('the fast path sends each hit the max-age of its answer, though it reuses a staple\'s headers between hits', () => {
  const cache = new RequestCache({ maxEntries: 10, maxBytes: 1 << 20 });
  const s = stapler.staple('www')!;
  let maxAgeSeconds = 100;
  const fast = createFastPath({ pathPrefix: '/ocsp', maxUrlBytes: 8192, cache, answer: () => ({ kind: 'staple', staple: s, maxAgeSeconds }) });
  const hit = () => {
    let headers: Record<string, unknown> = {};
    const res = { writeHead: (_s: number, h: Record<string, unknown>) => void (headers = { ...h }), end: () => undefined };
    assert.equal(fast({ method: 'GET', url: `/ocsp/${encodeURIComponent(b64)}`, rawHeaders: [] } as unknown as IncomingMessage, res as unknown as ServerResponse), true);
    return headers;
  };
  const first = hit();
  assert.equal(first['cache-control'], 'max-age=100, public, no-transform, must-revalidate');
  assert.deepEqual(
    { type: first['content-type'], length: first['content-length'], etag: first['etag'], lm: first['last-modified'], exp: first['expires'] },
    { type: 'application/ocsp-response', length: s.body.length, etag: s.etag, lm: s.lastModified, exp: s.expires },
  );
  maxAgeSeconds = 99;
  assert.equal(hit()['cache-control'], 'max-age=99, public, no-transform, must-revalidate');
  maxAgeSeconds = 100;
  assert.equal(hit()['cache-control'], 'max-age=100, public, no-transform, must-revalidate');
});

describe('Host check (DNS rebinding)', () => {
  let app: FastifyInstance;
  before(() => (app = appWith({ http: { allowedHosts: ['Staplerd.Internal.'] } })));
  after(() => app.close());
  const pages = ['/', '/v1/certificates', '/v1/certificates/www', '/healthz', '/readyz', '/metrics'];

  test('the status page, JSON API and metrics answer 421 to a Host that is not an address, localhost or configured', async () => {
    for (const host of ['evil.example', 'evil.example:8080', 'staplerd.internal.evil.example', '127.0.0.1.evil.example', '127.0.0.1:80:80', '[::1', '[::1]x', 'localhost:http']) {
      for (const url of pages) {
        const r = await app.inject({ method: 'GET', url, headers: { host } });
        assert.equal(r.statusCode, 421, `${host} ${url}`);
        assert.match(r.headers['content-type'] as string, /^text\/plain/);
        assert.match(r.body, /^HOST_NOT_ALLOWED/);
      }
    }
    assert.equal((await app.inject({ method: 'POST', url: '/v1/certificates/www/refresh', headers: { host: 'evil.example' } })).statusCode, 421);
  });

  test('they answer for IP literals, localhost and configured names, with or without a port', async () => {
    for (const host of ['127.0.0.1', '127.0.0.1:8080', '10.1.2.3', '[::1]', '[::1]:8080', 'localhost', 'LocalHost:1', 'staplerd.internal', 'STAPLERD.internal:443', 'staplerd.internal.']) {
      for (const url of pages) {
        const r = await app.inject({ method: 'GET', url, headers: { host } });
        assert.ok(r.statusCode === 200 || (url === '/readyz' && r.statusCode === 503), `${host} ${url}: ${r.statusCode}`);
      }
    }
  });

  test('the OCSP routes answer whatever the Host: prefix, root URL, and absolute-form proxy requests', async () => {
    const host = 'ocsp.ca.example';
    const cases = [
      { method: 'GET' as const, url: `/ocsp/${encodeURIComponent(b64)}` },
      { method: 'GET' as const, url: `/${encodeURIComponent(b64)}` },
      { method: 'POST' as const, url: '/', payload: good },
      { method: 'POST' as const, url: '/ocsp', payload: good },
    ];
    for (const c of cases) {
      const r = await app.inject({ ...c, headers: { host, 'content-type': 'application/ocsp-request' } });
      assert.equal(r.statusCode, 200, `${c.method} ${c.url}`);
      assert.ok(r.rawPayload.equals(staple), `${c.method} ${c.url}`);
    }
    // inject() would turn an absolute URL into a path, so the proxy forms go over a real socket as
    // HAProxy's ocsp-update.httpproxy sends them: the request target is the CA's URL, Host is the CA.
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const viaProxy = [
      await raw(port, `GET http://${host}/${b64} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
      await raw(port, `POST http://${host}/ HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${good.length}\r\nConnection: close\r\n\r\n`, good),
      await raw(port, `GET http://${host}/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    ];
    assert.ok(viaProxy[0]!.body.equals(staple), viaProxy[0]!.head);
    assert.ok(viaProxy[1]!.body.equals(staple), viaProxy[1]!.head);
    // An absolute-form GET of the CA's bare root is an empty OCSP request, not the status page.
    assert.ok(viaProxy[2]!.body.equals(MALFORMED), viaProxy[2]!.head);
  });

  test('allowedHosts "*" turns the check off', async () => {
    const open = appWith({ http: { allowedHosts: ['*'] } });
    assert.equal((await open.inject({ method: 'GET', url: '/v1/certificates', headers: { host: 'evil.example' } })).statusCode, 200);
    await open.close();
  });

  test('a config entry with a port, a scheme or a space is refused at load', () => {
    for (const bad of ['host:8080', 'http://host', 'a host', '', '-lead']) {
      assert.throws(() => parseConfig({ http: { allowedHosts: [bad] } }, '<inline>', {}), /http\.allowedHosts/, bad);
    }
  });

  test('hostAllowed: no Host (HTTP/1.0 tools) passes; an overlong one does not', () => {
    const p = hostPolicy([]);
    assert.equal(hostAllowed(undefined, p), true);
    assert.equal(hostAllowed(`${'a'.repeat(400)}.localhost`, p), false);
    assert.equal(hostAllowed('localhost', p), true);
  });
});
