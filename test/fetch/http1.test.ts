import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Http1Client, type Http1Request } from '../../src/fetch/http1.js';
import tls from 'node:tls';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';

/**
 * The HTTP/1.1 client against scripted raw-socket servers on 127.0.0.1: every framing a responder may use
 * (Content-Length, chunked, end of connection), interim responses, kept-alive reuse and what breaks it.
 */

interface Scripted {
  url: string;
  /** Connections accepted so far. */
  connections: () => number;
  /** Raw request bytes seen, per request. */
  requests: string[];
  close: () => Promise<void>;
}

/** A server that answers each complete request head with `answer(n)` (n counts requests over all connections). */
async function scripted(answer: (n: number, socket: net.Socket) => string | Buffer | null): Promise<Scripted> {
  let conns = 0;
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end + 4);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        requests.push(buf.slice(0, end + 4 + len));
        buf = buf.slice(end + 4 + len);
        const out = answer(requests.length, s);
        if (out !== null) s.write(typeof out === 'string' ? Buffer.from(out, 'latin1') : out);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/ocsp`,
    connections: () => conns,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const BODY = Buffer.from('0\x82\x00\x03\x0a\x01\x00-ocsp-bytes', 'latin1');
const ok = (extra = '') => `HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: ${BODY.length}\r\n${extra}\r\n${BODY.toString('latin1')}`;

const clients: Http1Client[] = [];
function client(): Http1Client {
  const c = new Http1Client({ maxIdlePerOrigin: 4, idleTimeoutMs: 5000 });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

function req(url: string, o: Partial<Http1Request> = {}): Http1Request {
  return { url: new URL(url), method: 'GET', headerLines: 'Accept: application/ocsp-response\r\n', timeoutMs: 1000, maxBodyBytes: 4096, ...o };
}

async function failsWith(p: Promise<unknown>, code: ErrorCode): Promise<Error> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => ((caught = e), isStaplerError(e) && e.code === code));
  return caught as Error;
}

describe('Http1Client', () => {
  test('sends a request line with Host, reads a Content-Length body and reuses the connection', async () => {
    const s = await scripted(() => ok());
    const c = client();
    for (let i = 0; i < 3; i++) {
      const r = await c.request(req(s.url));
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, BODY);
      assert.equal(r.headers.get('content-type'), 'application/ocsp-response');
    }
    assert.equal(s.connections(), 1, 'three requests over one kept-alive connection');
    assert.match(s.requests[0]!, /^GET \/ocsp HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nAccept: application\/ocsp-response\r\n\r\n$/);
    await s.close();
  });

  test('POST carries Content-Length and the body in the same request', async () => {
    const s = await scripted(() => ok());
    const body = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x07]);
    await client().request(req(s.url, { method: 'POST', body, headerLines: 'Content-Type: application/ocsp-request\r\n' }));
    assert.match(s.requests[0]!, /^POST \/ocsp HTTP\/1\.1\r\n/);
    assert.match(s.requests[0]!, /\r\nContent-Length: 5\r\n\r\n0\x03\x02\x01\x07$/);
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
    assert.deepEqual((await c.request(req(s.url))).body, BODY);
    assert.deepEqual((await c.request(req(s.url))).body, BODY);
    assert.equal(s.connections(), 1);
    await s.close();
  });

  test('reads to the end of the connection when neither length nor chunked is given (HTTP/1.0)', async () => {
    const s = await scripted((_n, sock) => {
      sock.end(Buffer.from(`HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\n\r\n${BODY.toString('latin1')}`, 'latin1'));
      return null;
    });
    const c = client();
    assert.deepEqual((await c.request(req(s.url))).body, BODY);
    assert.deepEqual((await c.request(req(s.url))).body, BODY);
    assert.equal(s.connections(), 2, 'a close-delimited response is never reused');
    await s.close();
  });

  test('skips 100 Continue before the final response', async () => {
    const s = await scripted(() => `HTTP/1.1 100 Continue\r\n\r\n${ok()}`);
    assert.deepEqual((await client().request(req(s.url))).body, BODY);
    await s.close();
  });

  test('Connection: close from an HTTP/1.1 server is honoured: the next request opens a new connection', async () => {
    const s = await scripted(() => ok('Connection: close\r\n'));
    const c = client();
    await c.request(req(s.url));
    await c.request(req(s.url));
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
    await c.request(req(s.url));
    const r = await c.request(req(s.url));
    assert.deepEqual(r.body, BODY);
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
    await c.request(req(s.url));
    first!.destroy();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual((await c.request(req(s.url))).body, BODY);
    assert.equal(s.requests.length, 2, 'no request was lost on the closed connection');
    await s.close();
  });

  test('a connection that dies mid-body, or before answering, is a FETCH_CONNECT (not retried when fresh)', async () => {
    const s = await scripted((_n, sock) => {
      sock.end(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort`, 'latin1'));
      return null;
    });
    await failsWith(client().request(req(s.url)), 'FETCH_CONNECT');
    await s.close();
    const t = await scripted((_n, sock) => {
      sock.destroy();
      return null;
    });
    await failsWith(client().request(req(t.url)), 'FETCH_CONNECT');
    assert.equal(t.connections(), 1);
    await t.close();
  });

  test('malformed framing is FETCH_PROTOCOL: status line, header field, Content-Length, chunk size, head size', async () => {
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
      await failsWith(client().request(req(s.url)), 'FETCH_PROTOCOL');
      await s.close();
    }
  });

  test('a body over the limit fails as soon as it is known: by Content-Length, or while chunks arrive', async () => {
    const big = await scripted(() => `HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n`);
    await failsWith(client().request(req(big.url)), 'FETCH_TOO_LARGE');
    await big.close();
    const chunks = await scripted(() => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${'1000\r\n' + 'x'.repeat(4096) + '\r\n'}1\r\nx\r\n0\r\n\r\n`);
    await failsWith(client().request(req(chunks.url)), 'FETCH_TOO_LARGE');
    await chunks.close();
  });

  test('checkHead refuses a response before its body is read', async () => {
    const s = await scripted(() => `HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 999999\r\n\r\n`);
    let seen: string | undefined;
    const p = client().request(req(s.url, { checkHead: (status, h) => ((seen = h.get('retry-after')), status === 200 ? undefined : new Error(`HTTP ${status}`)) }));
    await assert.rejects(p, /HTTP 503/);
    assert.equal(seen, '7');
    await s.close();
  });

  test('one deadline covers the whole exchange; an AbortSignal ends it at once', async () => {
    const s = await scripted(() => null); // never answers
    const t0 = performance.now();
    await failsWith(client().request(req(s.url, { timeoutMs: 150 })), 'FETCH_TIMEOUT');
    assert.ok(performance.now() - t0 < 1000);
    const ac = new AbortController();
    const c = client();
    const p1 = c.request(req(s.url, { timeoutMs: 5000, signal: ac.signal }));
    const p2 = c.request(req(s.url, { timeoutMs: 5000, signal: ac.signal }));
    setTimeout(() => ac.abort(), 50);
    await failsWith(p1, 'FETCH_ABORTED');
    await failsWith(p2, 'FETCH_ABORTED');
    await failsWith(c.request(req(s.url, { signal: ac.signal })), 'FETCH_ABORTED');
    await s.close();
  });

  test('connection refused is FETCH_CONNECT with the reason', async () => {
    const s = await scripted(() => null);
    const url = s.url;
    await s.close();
    const e = await failsWith(client().request(req(url)), 'FETCH_CONNECT');
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
    const e = await failsWith(client().request(req(`https://127.0.0.1:${port}/x`)), 'FETCH_CONNECT');
    // The demo CA is not a system CA: the handshake itself is refused, which a plain-TCP client would not do.
    assert.match(e.message, /certificate|self.signed|issuer/i);
    assert.equal(sockets.size, 1);
    for (const sock of sockets) sock.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('IPv6 literal hosts connect to ::1 when it is available', async (t) => {
    const server = net.createServer((sock) => sock.on('data', () => sock.write(Buffer.from(ok(), 'latin1'))));
    const listening = await new Promise<boolean>((r) => {
      server.once('error', () => r(false));
      server.listen(0, '::1', () => r(true));
    });
    if (!listening) return t.skip('::1 is not configured on this host');
    const port = (server.address() as net.AddressInfo).port;
    const r = await client().request(req(`http://[::1]:${port}/x`));
    assert.deepEqual(r.body, BODY);
    server.close();
  });
});
