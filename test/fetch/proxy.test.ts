/**
 * Egress through an HTTP proxy (issue 13 item 5), against Debian's tinyproxy on loopback: fetch.proxy
 * (absolute-form for http: responders, CONNECT for https:), credentials from the URL or from
 * fetch.proxyAuthFile (tinyproxy BasicAuth) that never reach a log line or an error message, and the
 * http_proxy / no_proxy environment when fetch.proxy is unset.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { isStaplerError } from '../../src/errors.js';
import { proxyOptionsOf } from '../../src/fetch/dispatcher.js';
import { HttpResponderClient, type ProxyOptions } from '../../src/fetch/responder-client.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { certIdOf } from '../../src/pki/certid.js';
import { freePort, requireBinary, startStaplerd, tempDir, waitFor, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy.js';
import { chainPem, ocspPath, testPki, type Leaf, type TestPki } from '../reliability/helpers.js';

const SECRET = 'pr0xy-s3cret-value';

describe('egress through an HTTP proxy (tinyproxy)', { timeout: 90_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let pki: TestPki;
  let leaf: Leaf;
  let responder: DemoResponder;
  let responderUrl: string;
  const cleanup: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    tmp = await tempDir('proxy');
    const upstreamPort = await freePort();
    responderUrl = `http://127.0.0.1:${upstreamPort}/`;
    // The leaf names the responder in its AIA, as a CA's certificate would.
    pki = testPki(responderUrl);
    leaf = pki.leaf('www');
    responder = await startResponder({ issuer: pki.pki.issuer, signer: pki.pki.ocspSigner, statuses: new Map([[leaf.cert.serialHex, { kind: 'good' }]]), port: upstreamPort });
  });

  after(async () => {
    for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => undefined);
    await responder?.close();
    await tmp?.cleanup();
  });

  async function proxy(t: Parameters<typeof requireBinary>[0], basicAuth?: { user: string; password: string }): Promise<Tinyproxy | undefined> {
    const bin = requireBinary(t, 'tinyproxy', 'egress proxy tests');
    if (!bin) return undefined;
    const p = await startTinyproxy(bin, tmp.dir, basicAuth ? { basicAuth } : {});
    cleanup.push(() => p.stop());
    return p;
  }

  async function daemonVia(name: string, fetchCfg: Record<string, unknown>): Promise<Staplerd> {
    const dir = join(tmp.dir, name);
    const chain = join(tmp.dir, `${name}.pem`);
    await writeFile(chain, chainPem(leaf, pki.pki));
    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, 'var'),
      logLevel: 'debug',
      fetch: { timeout: '5s', ...fetchCfg },
      refresh: { backoffInitial: '1s' },
      certificates: [{ name: 'www', chain }],
    }, `${name}.yaml`);
    const d = await startStaplerd(config, { timeoutMs: 30_000 });
    cleanup.push(() => d.stop('SIGKILL'));
    return d;
  }

  const logsOf = (d: Staplerd) => d.stdout + d.stderr;

  test('fetch.proxy with userinfo: the proxy log shows the absolute-form fetch, the staple is served, the password is in no log line', async (t) => {
    const p = await proxy(t);
    if (!p) return;
    const before = responder.stats.requests;
    const d = await daemonVia('plain', { proxy: `http://staplerd:${SECRET}@127.0.0.1:${p.port}` });
    await d.waitReady(30_000);
    const res = await d.get(ocspPath('/ocsp', leaf.info, pki.issuer));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/ocsp-response');
    assert.ok((await res.arrayBuffer()).byteLength > 100, 'a signed staple, not an error status');
    assert.ok(responder.stats.requests > before);
    const log = await p.log();
    assert.match(log, new RegExp(`Request \\(file descriptor \\d+\\): GET http://127\\.0\\.0\\.1:${new URL(responderUrl).port}/\\S+ HTTP/1\\.1`));
    const line = d.logs().find((l) => l.msg === 'upstream fetches go through an HTTP proxy');
    assert.equal(line?.proxy, `http://127.0.0.1:${p.port}`);
    assert.ok(!logsOf(d).includes(SECRET) && !logsOf(d).includes('staplerd:'), 'no credentials in the logs');
  });

  test('fetch.proxyAuthFile passes tinyproxy BasicAuth; a wrong password fails without repeating it', async (t) => {
    const p = await proxy(t, { user: 'alice', password: SECRET });
    if (!p) return;
    const authFile = join(tmp.dir, 'proxy-auth');
    await writeFile(authFile, `alice:${SECRET}\n`, { mode: 0o600 });
    const d = await daemonVia('auth', { proxy: `http://127.0.0.1:${p.port}`, proxyAuthFile: authFile });
    await d.waitReady(30_000);
    assert.equal((await d.json<{ state: string }>('/v1/certificates/www')).state, 'good');
    assert.match(await p.log(), /GET http:\/\/127\.0\.0\.1:\d+\/\S+ HTTP\/1\.1/);
    assert.ok(!logsOf(d).includes(SECRET));

    const wrong = `not-${SECRET}`;
    const bad = await daemonVia('badauth', { proxy: `http://alice:${wrong}@127.0.0.1:${p.port}` });
    const failing = await waitFor('the fetch through the proxy to fail', 30_000, async () => {
      const c = await bad.json<{ state: string; lastError: { code: string; message: string } | null }>('/v1/certificates/www');
      return c.state === 'failing' ? c : undefined;
    });
    // tinyproxy answers a wrong password with 401 (407 when none is sent).
    assert.match(failing.lastError!.message, /\b40[17]\b/);
    assert.ok(!failing.lastError!.message.includes(wrong));
    await waitFor('a failure log line', 10_000, () => (bad.logs().some((l) => l.level >= 40 && l.cert === 'www') ? true : undefined));
    assert.ok(!logsOf(bad).includes(wrong), 'the password appears in no log line');
  });

  test('an https: responder goes through a CONNECT tunnel, and TLS is still verified end to end', async (t) => {
    const p = await proxy(t);
    if (!p) return;
    const leafCert = pki.pki.leaves.good;
    const server = tls.createServer({ key: leafCert.keyPem, cert: leafCert.pem }, (s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const c = new HttpResponderClient({ timeoutMs: 5000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'proxy-test', proxy: { kind: 'url', url: p.url } });
    cleanup.push(() => c.close());
    const req = buildOcspRequest([certIdOf(leaf.info, pki.issuer, 'sha1')]);
    await assert.rejects(c.fetch(`https://127.0.0.1:${port}/ocsp`, req), (e: unknown) => isStaplerError(e) && e.code === 'FETCH_CONNECT' && /certificate|self.signed|issuer/i.test(e.message));
    assert.match(await p.log(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${port} HTTP/1\\.1`));
  });

  test('without fetch.proxy, http_proxy is used as curl reads it and no_proxy bypasses it', async (t) => {
    const p = await proxy(t);
    if (!p) return;
    const req = buildOcspRequest([certIdOf(leaf.info, pki.issuer, 'sha1')]);
    const via = async (env: NodeJS.ProcessEnv): Promise<number> => {
      const { proxy } = await proxyOptionsOf({}, env, '<test>');
      const c = new HttpResponderClient({ timeoutMs: 5000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'proxy-test', proxy });
      const beforeLog = (await p.log()).split('\n').length;
      try {
        await c.fetch(responderUrl, req);
      } finally {
        c.close();
      }
      return (await p.log()).split('\n').length - beforeLog;
    };
    assert.ok((await via({ http_proxy: p.url })) > 0, 'http_proxy: through the proxy');
    assert.ok((await via({ HTTP_PROXY: p.url })) > 0, 'HTTP_PROXY: through the proxy');
    assert.equal(await via({ HTTP_PROXY: p.url, NO_PROXY: '127.0.0.1' }), 0, 'NO_PROXY: direct');
    assert.equal(await via({ http_proxy: p.url, no_proxy: 'localhost,127.0.0.1' }), 0, 'no_proxy: direct');
    assert.equal(await via({}), 0, 'no variables: direct');
  });

  test('the auth file must hold one user:password line; its content is never quoted', async () => {
    const f = join(tmp.dir, 'bad-auth');
    await writeFile(f, `${SECRET}\nsecond line\n`);
    await assert.rejects(proxyOptionsOf({ proxy: 'http://127.0.0.1:3128', proxyAuthFile: f }, {}, '/etc/staplerd.yaml'), (e: unknown) => isStaplerError(e) && e.code === 'CONFIG_INVALID' && e.message.includes('fetch.proxyAuthFile') && !e.message.includes(SECRET));
    await assert.rejects(proxyOptionsOf({ proxy: 'http://127.0.0.1:3128', proxyAuthFile: join(tmp.dir, 'missing') }, {}, '/x.yaml'), (e: unknown) => isStaplerError(e) && e.code === 'CONFIG_FILE');
    const ok: { proxy: ProxyOptions; describe: string | undefined } = await proxyOptionsOf({ proxy: `http://u:${SECRET}@127.0.0.1:3128/` }, {}, '/x.yaml');
    assert.equal(ok.describe, 'http://127.0.0.1:3128');
    const env = await proxyOptionsOf({}, { https_proxy: `http://u:${SECRET}@127.0.0.1:3129` }, '/x.yaml');
    assert.equal(env.proxy.kind, 'env');
    assert.ok(env.describe && !env.describe.includes(SECRET));
  });
});
