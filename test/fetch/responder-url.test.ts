import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { createDemoPki } from '../../src/demo/ca.js';
import { isStaplerError } from '../../src/errors.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { getTargetFor, getUrlFor, parseResponderUrl } from '../../src/fetch/responder-url.js';
import { Stapler } from '../../src/service/stapler.js';
import { loadRecord } from '../../src/sources/certificates.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLog } from '../helpers/log.js';
import { until } from '../helpers/wait.js';

/** Issue 12 item 2: an OCSP URL from a certificate must not carry bytes of its choosing onto a socket. */

const REQ = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x07]);

describe('responder URLs', () => {
  test('whitespace, control characters and non-http schemes are FETCH_URL, quoted safely in the message', () => {
    const bad = ['http://127.0.0.1:6379/\r\nSET k v\r\n', 'http://ca.example/a b', 'http://ca.example/\tx', ' http://ca.example/', 'http://ca.example/\u0000', 'http://ca.example/\u0085', 'ldap://ca.example/', 'not a url', 'http://'];
    for (const url of bad) {
      assert.throws(() => parseResponderUrl(url), (e: unknown) => isStaplerError(e) && e.code === 'FETCH_URL' && !/[\r\n\t\u0000]/.test(e.message), JSON.stringify(url));
    }
    assert.equal(parseResponderUrl('http://ca.example:8080/ocsp').host, 'ca.example:8080');
  });

  test('the GET target is built from the parsed URL: path, slash, encoded request, then the query', () => {
    const b64 = encodeURIComponent(Buffer.from(REQ).toString('base64'));
    assert.equal(getTargetFor(new URL('http://ca.example'), REQ), `/${b64}`);
    assert.equal(getTargetFor(new URL('http://ca.example/a/b/'), REQ), `/a/b/${b64}`);
    assert.equal(getTargetFor(new URL('http://ca.example/ocsp?x=1#frag'), REQ), `/ocsp/${b64}?x=1`);
    assert.equal(getUrlFor('http://CA.example:80/ocsp', REQ), `http://ca.example/ocsp/${b64}`);
  });
});

describe('a certificate whose AIA OCSP URL holds CR/LF', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('gets the failing state with FETCH_URL and nothing reaches the host in the URL', async () => {
    // A raw TCP listener stands in for a local Redis: it must see no connection at all.
    let connections = 0;
    let bytes = 0;
    const listener = net.createServer((s) => {
      connections++;
      s.on('data', (d) => (bytes += d.length)).on('error', () => undefined);
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => listener.close(() => r())));
    const port = (listener.address() as net.AddressInfo).port;

    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${port}/\r\nSET k v\r\n` });
    const dir = await mkdtemp(join(tmpdir(), 'staplerd-aia-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'tenant.pem'), pki.leaves.good.pem + pki.issuer.pem);
    const record = await loadRecord({ name: 'tenant', chain: join(dir, 'tenant.pem') });
    assert.ok(record.url?.includes('\r\nSET k v'), 'the certificate really carries CR/LF in its AIA URL');

    const clock = new FakeClock(now);
    const client = new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'test' });
    cleanup.push(() => client.close());
    const log = captureLog();
    const stapler = new Stapler({
      clock, client, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log: log.log,
      refresh: parseConfig({}, '<inline>').refresh, concurrency: 2, nonce: false, rand: () => 0,
    });
    cleanup.push(() => stapler.stop());
    await stapler.setRecords([record]);
    await stapler.start();
    await clock.advance(0);
    await until(() => stapler.get('tenant')?.state === 'failing', 'the certificate fails');
    const view = stapler.get('tenant')!;
    assert.equal(view.lastError?.code, 'FETCH_URL');
    assert.match(view.lastError!.message, /control character/);
    // Give a wrongly sent request time to arrive before asserting that none did.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(connections, 0);
    assert.equal(bytes, 0);
  });
});
