import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { HttpResponderClient, type HttpClientOptions } from '../../src/fetch/responder-client.js';
import { MAX_INTERIM_RESPONSES } from '../../src/fetch/exchange.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { flood, scripted } from '../helpers/scripted.js';
import { until } from '../helpers/wait.js';

/**
 * Issue 12 item 11: a responder that never stops talking must not keep a core busy until the fetch
 * timeout. Each scripted server below floods one part of a response; the fetch has a 30 s timeout, so a
 * FETCH_TIMEOUT would mean the bound is missing. Each must instead end with its own code and the flooded
 * connection closed by the client; the next fetch gets a good answer.
 */

const REQ = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x07]);
const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
const OK = 'HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: 3\r\n\r\n0\x01\x00';

const clients: HttpResponderClient[] = [];
function client(o: Partial<HttpClientOptions> = {}): HttpResponderClient {
  const c = new HttpResponderClient({ timeoutMs: 30_000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'hostile-test', ...o });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

/** The first request gets the flood, later ones a good answer. */
async function floodedThenGood(first: string, repeat: string, code: ErrorCode): Promise<string> {
  let flooded: net.Socket | undefined;
  const s = await scripted((n, sock) => {
    if (n > 1) return OK;
    flooded = sock;
    flood(sock, first, repeat);
    return null;
  });
  const c = client();
  let message = '';
  await assert.rejects(c.fetch(s.url, REQ), (e: unknown) => {
    message = String(e);
    return isStaplerError(e) && e.code === code;
  });
  await until(() => flooded!.destroyed, 'the client closes the flooded connection');
  assert.deepEqual([...(await c.fetch(s.url, REQ)).body], [0x30, 0x01, 0x00]);
  await s.close();
  return message;
}

describe('hostile responders are cut off by bounds, not by the fetch timeout', () => {
  test('an endless run of 103 interim responses is FETCH_PROTOCOL and closes the connection', async () => {
    const message = await floodedThenGood('', 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n', 'FETCH_PROTOCOL');
    assert.match(message, new RegExp(`more than ${MAX_INTERIM_RESPONSES} interim`));
  });

  test('an endless run of 100 Continue is FETCH_PROTOCOL at the first one', async () => {
    await floodedThenGood('', 'HTTP/1.1 100 Continue\r\n\r\n', 'FETCH_PROTOCOL');
  });

  test('endless trailer lines are FETCH_PROTOCOL once the trailer section passes the head cap', async () => {
    assert.match(await floodedThenGood(`${CHUNKED}1\r\nx\r\n0\r\n`, 'X-Trailer: yyyyyyyyyyyyyyyy\r\n', 'FETCH_PROTOCOL'), /too long/);
  });

  test('endless header fields, or one endless header line, are FETCH_PROTOCOL', async () => {
    await floodedThenGood('HTTP/1.1 200 OK\r\n', 'X-A: b\r\n', 'FETCH_PROTOCOL');
    await floodedThenGood('HTTP/1.1 200 OK\r\nX-A: ', 'a'.repeat(1000), 'FETCH_PROTOCOL');
  });

  test('an endless chunk extension is FETCH_TOO_LARGE: the bytes a response may take on the wire are capped', async () => {
    assert.match(await floodedThenGood(`${CHUNKED}1;`, 'e'.repeat(1000), 'FETCH_TOO_LARGE'), /on the wire/);
  });

  test('chunk after chunk with 5,000-character extensions is FETCH_TOO_LARGE though the body stays tiny', async () => {
    assert.match(await floodedThenGood(CHUNKED, `1;${'e'.repeat(5000)}\r\nx\r\n`, 'FETCH_TOO_LARGE'), /on the wire/);
  });

  test('an endless chunk-size line is FETCH_PROTOCOL', async () => {
    await floodedThenGood(`${CHUNKED}1`, '0', 'FETCH_PROTOCOL');
  });

  test('one 5,000-character chunk extension in one piece is harmless: the body is read', async () => {
    const s = await scripted(() => `${CHUNKED}3;${'e'.repeat(5000)}\r\n0\x01\x00\r\n0\r\n\r\n`);
    assert.deepEqual([...(await client().fetch(s.url, REQ)).body], [0x30, 0x01, 0x00]);
    await s.close();
  });

  test('Transfer-Encoding with Content-Length is FETCH_PROTOCOL and the connection is not reused', async () => {
    // A complete, well-formed chunked body after the conflicting head: only the framing rule refuses it.
    await floodedThenGood('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n3\r\n0\x01\x00\r\n0\r\n\r\n', '\r\n', 'FETCH_PROTOCOL');
  });
});
