import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpResponderClient, type HttpClientOptions } from '../../src/fetch/responder-client.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';
import { run } from '../helpers/processes.js';
import { scripted } from '../helpers/scripted.js';

/**
 * The upstream client (undici underneath) against scripted raw-socket servers on 127.0.0.1: every framing a
 * responder may use (Content-Length, chunked, end of connection), interim responses, kept-alive reuse and
 * what breaks it. Ported from the tests of the HTTP/1.1 client undici replaced; the guarantees are the same.
 */

const BODY = Buffer.from('0\x82\x00\x03\x0a\x01\x00-ocsp-bytes', 'latin1');
const ok = (extra = '') => `HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: ${BODY.length}\r\n${extra}\r\n${BODY.toString('latin1')}`;
const REQ = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x07]);
const B64 = encodeURIComponent(Buffer.from(REQ).toString('base64'));

/**
 * undici's pool takes a connection back a turn of the event loop after its response ends; a request sent
 * sooner opens a second connection (still within perHostConcurrency). Reuse is asserted after that turn.
 */
const settle = () => new Promise((r) => setTimeout(r, 10));

const clients: HttpResponderClient[] = [];
function client(o: Partial<HttpClientOptions> = {}): HttpResponderClient {
  const c = new HttpResponderClient({ timeoutMs: 1000, maxResponseBytes: 4096, perHostConcurrency: 4, userAgent: 'wire-test', ...o });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

async function failsWith(p: Promise<unknown>, code: ErrorCode): Promise<Error & { retryAfter?: number }> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => ((caught = e), isStaplerError(e) && e.code === code));
  return caught as Error & { retryAfter?: number };
}

describe('HttpResponderClient on the wire', () => {
  test('sends a request line with Host, reads a Content-Length body and reuses the connection', async () => {
    const s = await scripted(() => ok());
    const c = client();
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
      await settle();
    }
    assert.equal(s.connections(), 1, 'three requests over one kept-alive connection');
    const port = new URL(s.url).port;
    assert.match(s.requests[0]!, new RegExp(`^GET /ocsp/${B64.replace(/%/g, '%')} HTTP/1\\.1\\r\\n`));
    assert.match(s.requests[0]!, new RegExp(`\\r\\nhost: 127\\.0\\.0\\.1:${port}\\r\\n`, 'i'));
    assert.match(s.requests[0]!, /\r\naccept: application\/ocsp-response\r\n/i);
    assert.match(s.requests[0]!, /\r\nuser-agent: wire-test\r\n/i);
    assert.equal(s.requests[0]!.match(/\r\nhost:/gi)!.length, 1, 'exactly one Host');
    await s.close();
  });

  test('POST carries Content-Type, Content-Length and the body in the same request', async () => {
    const s = await scripted(() => ok());
    const long = `${s.url}/${'x'.repeat(250)}`;
    assert.equal((await client().fetch(long, REQ)).method, 'POST');
    assert.match(s.requests[0]!, new RegExp(`^POST /ocsp/x{250} HTTP/1\\.1\\r\\n`));
    assert.match(s.requests[0]!, /\r\ncontent-type: application\/ocsp-request\r\n/i);
    assert.match(s.requests[0]!, /\r\ncontent-length: 5\r\n/i);
    assert.ok(s.requests[0]!.endsWith('\r\n\r\n0\x03\x02\x01\x07'));
    await s.close();
  });

  test('decodes chunked bodies (split anywhere, with extensions and trailers) and keeps the connection', async () => {
    const s = await scripted((n, sock) => {
      const head = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
      const wire = `${head}4;ext=1\r\n${BODY.toString('latin1', 0, 4)}\r\n${(BODY.length - 4).toString(16)}\r\n${BODY.toString('latin1', 4)}\r\n0\r\nX-Trailer: y\r\n\r\n`;
      if (n === 1) return wire;
      // Second request: the same bytes one at a time.
      const bytes = Buffer.from(wire, 'latin1');
      let i = 0;
      const drip = () => {
        if (i < bytes.length && !sock.destroyed) sock.write(bytes.subarray(i, ++i), () => setImmediate(drip));
      };
      drip();
      return null;
    });
    const c = client();
    assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
    await settle();
    assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
    assert.equal(s.connections(), 1);
    await s.close();
  });

  test('reads to the end of the connection when neither length nor chunked is given (HTTP/1.0)', async () => {
    const s = await scripted((_n, sock) => {
      sock.end(Buffer.from(`HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\n\r\n${BODY.toString('latin1')}`, 'latin1'));
      return null;
    });
    const c = client();
    assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
    assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
    assert.equal(s.connections(), 2, 'a close-delimited response is never reused');
    await s.close();
  });

  test('skips a 103 Early Hints before the final response; an unsolicited 100 Continue is FETCH_PROTOCOL', async () => {
    const s = await scripted(() => `HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n${ok()}`);
    assert.deepEqual(Buffer.from((await client().fetch(s.url, REQ)).body), BODY);
    await s.close();
    // undici refuses a 100 Continue to a request that did not ask for one (no Expect header is sent).
    const t = await scripted(() => `HTTP/1.1 100 Continue\r\n\r\n${ok()}`);
    await failsWith(client().fetch(t.url, REQ), 'FETCH_PROTOCOL');
    await t.close();
  });

  test('Connection: close from an HTTP/1.1 server is honoured: the next request opens a new connection', async () => {
    const s = await scripted(() => ok('Connection: close\r\n'));
    const c = client();
    await c.fetch(s.url, REQ);
    await c.fetch(s.url, REQ);
    assert.equal(s.connections(), 2);
    await s.close();
  });

  test('a kept-alive connection the server closes as the next request arrives: retried once, on a new one', async () => {
    // What a server closing an idle connection looks like when the close and our request cross.
    const s = await scripted((n, sock) => {
      if (n === 2) {
        sock.destroy();
        return null;
      }
      return ok();
    });
    const c = client();
    await c.fetch(s.url, REQ);
    await settle();
    assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
    assert.equal(s.connections(), 2);
    assert.equal(s.requests.length, 3);
    await s.close();
  });

  test('an idle connection the server closed is not used again', async () => {
    let first: net.Socket | undefined;
    const s = await scripted((n, sock) => {
      if (n === 1) first = sock;
      return ok();
    });
    const c = client();
    await c.fetch(s.url, REQ);
    first!.destroy();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(Buffer.from((await c.fetch(s.url, REQ)).body), BODY);
    assert.equal(s.requests.length, 2, 'no request was lost on the closed connection');
    await s.close();
  });

  test('a connection that dies mid-body, or before answering, is a FETCH_CONNECT (not retried when fresh)', async () => {
    const s = await scripted((_n, sock) => {
      sock.end(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort`, 'latin1'));
      return null;
    });
    await failsWith(client().fetch(s.url, REQ), 'FETCH_CONNECT');
    assert.equal(s.connections(), 1);
    await s.close();
    const t = await scripted((_n, sock) => {
      sock.destroy();
      return null;
    });
    await failsWith(client().fetch(t.url, REQ), 'FETCH_CONNECT');
    assert.equal(t.connections(), 1);
    await t.close();
  });

  test('malformed framing is FETCH_PROTOCOL: status line, header field, Content-Length, chunk size, 101, head size', async () => {
    const cases = [
      'HTTX/1.1 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\n folded: header\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 12, 13\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
      `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    ];
    for (const wire of cases) {
      const s = await scripted(() => wire);
      const e = await failsWith(client().fetch(s.url, REQ), 'FETCH_PROTOCOL').catch((err: unknown) => {
        throw new Error(`${JSON.stringify(wire.slice(0, 50))}: ${String(err)}`);
      });
      assert.ok(e.message.length > 0);
      await s.close();
    }
  });

  test('a body over the limit fails as soon as it is known: by Content-Length, or while chunks arrive', async () => {
    const big = await scripted(() => `HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n`);
    await failsWith(client().fetch(big.url, REQ), 'FETCH_TOO_LARGE');
    await big.close();
    const chunks = await scripted(() => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${'1000\r\n' + 'x'.repeat(4096) + '\r\n'}1\r\nx\r\n0\r\n\r\n`);
    await failsWith(client().fetch(chunks.url, REQ), 'FETCH_TOO_LARGE');
    await chunks.close();
  });

  test('status and Content-Type are checked before the body is read (a body that never comes is not waited for)', async () => {
    const s = await scripted(() => `HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 999999\r\n\r\n`);
    const e = await failsWith(client({ timeoutMs: 10_000 }).fetch(s.url, REQ), 'FETCH_HTTP_STATUS');
    assert.equal(e.retryAfter, 7);
    await s.close();
    const t = await scripted(() => `HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 999999\r\n\r\n<html>`);
    await failsWith(client({ timeoutMs: 10_000, maxResponseBytes: 10_000_000 }).fetch(t.url, REQ), 'FETCH_CONTENT_TYPE');
    await t.close();
  });

  test('one deadline covers the whole exchange; an AbortSignal ends it at once; close() ends the rest', async () => {
    const s = await scripted(() => null); // never answers
    await failsWith(client({ timeoutMs: 150 }).fetch(s.url, REQ), 'FETCH_TIMEOUT');
    // A head that keeps coming, one byte at a time, inside undici's own timers: still one deadline.
    const d = await scripted((_n, sock) => {
      const tick = setInterval(() => (sock.destroyed ? clearInterval(tick) : sock.write('X')), 20);
      sock.write('HTTP/1.1 200 OK\r\nX-Slow: ');
      return null;
    });
    await failsWith(client({ timeoutMs: 300 }).fetch(d.url, REQ), 'FETCH_TIMEOUT');
    await d.close();
    const ac = new AbortController();
    const c = client({ timeoutMs: 5000 });
    const p1 = c.fetch(s.url, REQ, ac.signal);
    const p2 = c.fetch(s.url, REQ, ac.signal);
    setTimeout(() => ac.abort(), 50);
    await failsWith(p1, 'FETCH_ABORTED');
    await failsWith(p2, 'FETCH_ABORTED');
    await failsWith(c.fetch(s.url, REQ, ac.signal), 'FETCH_ABORTED');
    const c2 = client({ timeoutMs: 5000 });
    const p3 = c2.fetch(s.url, REQ);
    setTimeout(() => c2.close(), 50);
    await failsWith(p3, 'FETCH_ABORTED');
    await s.close();
  });

  test('connection refused is FETCH_CONNECT with the reason', async () => {
    const s = await scripted(() => null);
    const url = s.url;
    await s.close();
    const e = await failsWith(client().fetch(url, REQ), 'FETCH_CONNECT');
    assert.match(e.message, /ECONNREFUSED/);
  });

  test('https: URLs go over TLS and the server certificate is verified (an unknown CA is FETCH_CONNECT)', async () => {
    const f = fixture();
    const leaf = f.pki.leaves.good;
    const sockets = new Set<net.Socket>();
    const server = tls.createServer({ key: leaf.keyPem, cert: leaf.pem }, (sock) => sock.on('data', () => sock.write(Buffer.from(ok(), 'latin1'))));
    server.on('connection', (sock: net.Socket) => sockets.add(sock.on('error', () => undefined)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const e = await failsWith(client().fetch(`https://127.0.0.1:${port}/x`, REQ), 'FETCH_CONNECT');
    // The demo CA is not a system CA: the handshake itself is refused, which a plain-TCP client would not do.
    assert.match(e.message, /certificate|self.signed|issuer/i);
    assert.equal(sockets.size, 1);
    for (const sock of sockets) sock.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('https: with a CA the system trusts (NODE_EXTRA_CA_CERTS in a child process) reads the body over TLS', async () => {
    const f = fixture();
    const leaf = f.pki.leaves.good; // its names include localhost
    const server = tls.createServer({ key: leaf.keyPem, cert: leaf.pem + f.pki.issuer.pem }, (sock) => sock.on('data', () => sock.write(Buffer.from(ok(), 'latin1'))).on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const dir = await mkdtemp(join(tmpdir(), 'staplerd-tls-'));
    await writeFile(join(dir, 'root.pem'), f.pki.root.pem);
    const clientModule = new URL('../../src/fetch/responder-client.js', import.meta.url).href;
    const script = `const { HttpResponderClient } = await import(${JSON.stringify(clientModule)});
      const c = new HttpResponderClient({ timeoutMs: 5000, maxResponseBytes: 4096, perHostConcurrency: 1, userAgent: 'tls' });
      const r = await c.fetch('https://localhost:${port}/ocsp', new Uint8Array([48, 3, 2, 1, 7]));
      c.close();
      console.log(Buffer.from(r.body).toString('hex'));`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: join(dir, 'root.pem') }, timeoutMs: 30_000 });
    await new Promise<void>((res) => server.close(() => res()));
    await rm(dir, { recursive: true, force: true });
    assert.equal(r.stdout.trim(), BODY.toString('hex'), r.stderr);
  });

  test('IPv6 literal hosts connect to ::1 when it is available', async (t) => {
    const server = net.createServer((sock) => sock.on('data', () => sock.write(Buffer.from(ok(), 'latin1'))));
    const listening = await new Promise<boolean>((r) => {
      server.once('error', () => r(false));
      server.listen(0, '::1', () => r(true));
    });
    if (!listening) return t.skip('::1 is not configured on this host');
    const port = (server.address() as net.AddressInfo).port;
    assert.deepEqual(Buffer.from((await client().fetch(`http://[::1]:${port}/x`, REQ)).body), BODY);
    server.close();
  });
});
