import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { demoStatuses } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient, maxAgeOf, retryAfterOf } from '../../src/fetch/responder-client.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();
const request = buildOcspRequest([f.certId(f.good)]);
let responder: DemoResponder;
const client = (o: Partial<ConstructorParameters<typeof HttpResponderClient>[0]> = {}) =>
  new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 4, userAgent: 'staplerd-test', ...o });

before(async () => {
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now), maxAgeHeader: true });
});
after(() => responder.close());

async function failsWith(p: Promise<unknown>, code: ErrorCode): Promise<Error & { retryAfter?: number }> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => ((caught = e), isStaplerError(e) && e.code === code));
  return caught as Error & { retryAfter?: number };
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` };
}

describe('HttpResponderClient', () => {
  test('uses GET while the URL fits in 255 bytes, POST beyond (RFC 6960 A.1)', async () => {
    const c = client();
    responder.setFault(null);
    const g = await c.fetch(responder.url, request);
    assert.equal(g.method, 'GET');
    const longBase = `${responder.url}${'x'.repeat(200)}/`;
    const p = await c.fetch(longBase, request);
    assert.equal(p.method, 'POST');
    assert.ok(g.body.byteLength > 100 && Buffer.from(g.body)[0] === 0x30);
    assert.ok(g.maxAgeSeconds !== undefined && g.maxAgeSeconds > 0, 'max-age read from Cache-Control');
    c.close();
  });

  test('sends Host, Accept and, for POST, application/ocsp-request', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const { server, url } = await listen((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x03])));
    });
    const c = client();
    await c.fetch(url, request);
    await c.fetch(`${url}${'y'.repeat(250)}`, request);
    assert.equal(seen[0]!.host, new URL(url).host);
    assert.equal(seen[0]!.accept, 'application/ocsp-response');
    assert.equal(seen[1]!['content-type'], 'application/ocsp-request');
    c.close();
    server.close();
  });

  test('the GET target is the path under the configured URL, also when the URL is not in normal form', async () => {
    const seen: string[] = [];
    const { server, url } = await listen((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x03]));
    });
    const port = new URL(url).port;
    const c = client();
    const b64 = encodeURIComponent(Buffer.from(request).toString('base64'));
    await c.fetch(`http://127.0.0.1:${port}/ocsp`, request);
    await c.fetch(`http://LOCALHOST:${port}/a/b/`, request);
    await c.fetch(`http://127.0.0.1:${port}`, request);
    assert.deepEqual(seen, [`/ocsp/${b64}`, `/a/b/${b64}`, `/${b64}`]);
    c.close();
    server.close();
  });

  test('times out a responder that never answers, and one that drips its body', async () => {
    const c = client({ timeoutMs: 300 });
    responder.setFault({ kind: 'hang' });
    const t0 = Date.now();
    await failsWith(c.fetch(responder.url, request), 'FETCH_TIMEOUT');
    assert.ok(Date.now() - t0 < 2000);
    responder.setFault({ kind: 'drip', bytesPerSecond: 20 });
    await failsWith(c.fetch(responder.url, request), 'FETCH_TIMEOUT');
    responder.setFault(null);
    c.close();
  });

  test('HTTP errors carry Retry-After; wrong Content-Type and oversized bodies are refused', async () => {
    const c = client({ maxResponseBytes: 4096 });
    responder.setFault({ kind: 'http-status', status: 503, retryAfter: '120' });
    assert.equal((await failsWith(c.fetch(responder.url, request), 'FETCH_HTTP_STATUS')).retryAfter, 120);
    responder.setFault({ kind: 'http-status', status: 500 });
    await failsWith(c.fetch(responder.url, request), 'FETCH_HTTP_STATUS');
    responder.setFault({ kind: 'content-type', contentType: 'text/html' });
    await failsWith(c.fetch(responder.url, request), 'FETCH_CONTENT_TYPE');
    responder.setFault({ kind: 'oversize', bytes: 100_000 });
    await failsWith(c.fetch(responder.url, request), 'FETCH_TOO_LARGE');
    responder.setFault(null);
    c.close();
  });

  test('connection refused and non-http URLs are errors with their own codes', async () => {
    const { server, url } = await listen(() => undefined);
    await new Promise<void>((r) => server.close(() => r()));
    const c = client();
    await failsWith(c.fetch(url, request), 'FETCH_CONNECT');
    await failsWith(c.fetch('ldap://127.0.0.1/', request), 'FETCH_URL');
    await failsWith(c.fetch('not a url', request), 'FETCH_URL');
    c.close();
  });

  test('never has more requests in flight to one host than perHostConcurrency', async () => {
    let active = 0;
    let peak = 0;
    const { server, url } = await listen((req, res) => {
      active++;
      peak = Math.max(peak, active);
      setTimeout(() => {
        active--;
        res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x03]));
      }, 30);
    });
    const c = client({ perHostConcurrency: 2 });
    await Promise.all(Array.from({ length: 8 }, () => c.fetch(url, request)));
    assert.equal(peak, 2);
    c.close();
    server.close();
  });
});

test('Retry-After and max-age parsing', () => {
  assert.equal(retryAfterOf('30'), 30);
  const fromDate = retryAfterOf(new Date(Date.now() + 60_000).toUTCString())!;
  assert.ok(fromDate >= 59 && fromDate <= 60, String(fromDate));
  assert.equal(retryAfterOf('soon'), undefined);
  assert.equal(maxAgeOf('public, max-age=600, no-transform'), 600);
  assert.equal(maxAgeOf('no-cache'), undefined);
});
