/**
 * What a hostile or careless client can make the real process do: the admin token (given through
 * STAPLERD_ADMIN_TOKEN) never reaches the logs, and a request naming another host (absolute-form, as a
 * proxy would receive it) never makes staplerd connect anywhere: it only fetches from responder URLs taken
 * from certificates or config.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { certIdOf } from '../../src/pki/certid.js';
import { freePort, sleep, startStaplerd, tempDir, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';
import { chainPem, ocspErrorStatus, rawHttp, startCanary, testPki, withEnv, writeAtomically, type Leaf, type TestPki } from './helpers.js';

describe('the daemon facing clients', { timeout: 30_000 }, () => {
  const token = `tok-${randomBytes(12).toString('hex')}`;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let pki: TestPki;
  let leaf: Leaf;
  let responder: DemoResponder;
  let canary: Awaited<ReturnType<typeof startCanary>>;
  let daemon: Staplerd | undefined;
  let port: number;

  before(async () => {
    tmp = await tempDir('daemon-http');
    const upstreamPort = await freePort();
    pki = testPki(`http://127.0.0.1:${upstreamPort}/`);
    leaf = pki.leaf('www');
    await writeAtomically(join(tmp.dir, 'certs'), 'www.pem', chainPem(leaf, pki.pki));
    responder = await startResponder({ issuer: pki.pki.issuer, signer: pki.pki.ocspSigner, statuses: new Map([[leaf.cert.serialHex, { kind: 'good' }]]), port: upstreamPort });
    canary = await startCanary();
    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      logLevel: 'trace',
      certificates: [{ name: 'www', chain: join(tmp.dir, 'certs', 'www.pem') }],
    });
    const starting = withEnv({ STAPLERD_ADMIN_TOKEN: token }, () => startStaplerd(config));
    daemon = await starting;
    await daemon.waitReady();
    port = Number(new URL(daemon.url).port);
  });

  after(async () => {
    await daemon?.stop('SIGKILL').catch(() => undefined);
    await responder?.close();
    await canary?.close();
    await tmp?.cleanup();
  });

  test('the admin token from STAPLERD_ADMIN_TOKEN works and never appears in the logs', async () => {
    const d = daemon!;
    const refresh = (auth: string) => d.get('/v1/certificates/www/refresh', { method: 'POST', headers: { authorization: auth } });
    assert.equal((await refresh(`Bearer ${token}`)).status, 200);
    assert.equal((await refresh(`Bearer ${token}-wrong`)).status, 401);
    assert.equal((await refresh(`Bearer ${token.slice(0, -1)}`)).status, 401);
    assert.equal((await d.get('/v1/certificates/nope/refresh', { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status, 404);
    // A failing refresh logs its error: the token must not ride along.
    responder.setFault({ kind: 'http-status', status: 500 });
    try {
      assert.equal((await refresh(`Bearer ${token}`)).status, 200);
    } finally {
      responder.setFault(null);
    }
    d.proc.kill('SIGHUP');
    await sleep(300);
    assert.ok(d.logs().length > 3, 'the daemon logged (trace level)');
    assert.ok(!d.stdout.includes(token.slice(4)) && !d.stderr.includes(token.slice(4)), 'the token is in the logs');
  });

  test('an absolute-form request naming another host never causes a connection to it, and the daemon keeps running', async (t) => {
    const d = daemon!;
    const der = Buffer.from(buildOcspRequest([certIdOf(leaf.info, pki.issuer, 'sha1')]));
    const b64 = encodeURIComponent(der.toString('base64'));
    const host = `127.0.0.1:${canary.port}`;
    const asked = [
      `GET http://${host}/${b64} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      `GET http://${host}/ocsp/${b64} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      `GET http://${host}/some/path/${b64} HTTP/1.0\r\nHost: ${host}\r\n\r\n`,
      `GET http://${host}/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    ].map((t) => Buffer.from(t));
    asked.push(Buffer.concat([Buffer.from(`POST http://${host}/ HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${der.length}\r\nConnection: close\r\n\r\n`), der]));
    // An unknown certificate of the same issuer: the case a learning proxy would be tempted to fetch.
    const stranger = Buffer.from(buildOcspRequest([certIdOf(pki.leaf('stranger').info, pki.issuer, 'sha1')]));
    asked.push(Buffer.from(`GET http://${host}/${encodeURIComponent(stranger.toString('base64'))} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    for (const req of asked) {
      const r = await rawHttp(port, req, { timeoutMs: 3000 });
      const status = ocspErrorStatus(r.body);
      t.diagnostic(`${req.toString('latin1').split(' ').slice(0, 2).join(' ').slice(0, 60)}… → HTTP ${r.status}, ${status === undefined ? `${r.body.length} bytes` : `OCSP status ${status}`}`);
      assert.ok(r.status > 0 && r.status < 500, `${req.toString('latin1').split('\r\n')[0]}: ${r.head.split('\r\n')[0] || 'no answer'}`);
      if (r.status === 200) assert.ok(status !== undefined || r.body.length > 100, 'an OCSP answer');
    }
    await sleep(500);
    assert.equal(canary.connections(), 0, 'staplerd connected to a host named in a request');
    assert.ok(d.running, d.output());
    const health = await d.get('/healthz');
    assert.equal(health.status, 200);
  });
});
