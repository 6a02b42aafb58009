/**
 * Real Apache 2.4 mod_ssl (the Debian package) staples what staplerd serves: `SSLUseStapling on` with
 * `SSLStaplingForceURL` at staplerd's OCSP route. A recording pass-through between the two shows what
 * Apache sends (POST application/ocsp-request over HTTP/1.0); the upstream "CA" sees only staplerd.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { opensslTime } from '../../src/check.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  Child, freePort, run, startStaplerd, suiteBinaries, tempDir, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';

const bins = suiteBinaries(['apache2', 'openssl'], 'the Apache end-to-end test');

function apacheConf(dir: string, o: { port: number; chain: string; key: string; responder: string; user: string | undefined }): string {
  const tmp = (name: string) => join(dir, name);
  const mod = (name: string) => `LoadModule ${name}_module /usr/lib/apache2/modules/mod_${name}.so`;
  return `# written by test/e2e/apache.test.ts
ServerRoot ${dir}
PidFile ${tmp('httpd.pid')}
DefaultRuntimeDir ${dir}
Mutex file:${dir} default
ErrorLog ${tmp('error.log')}
LogLevel info ssl:debug
ServerName good.demo.test
Listen 127.0.0.1:${o.port}
${mod('mpm_event')}
${mod('authz_core')}
${mod('socache_shmcb')}
${mod('ssl')}
${o.user ? `User ${o.user}\nGroup ${o.user === 'www-data' ? 'www-data' : 'nogroup'}` : ''}
SSLStaplingCache shmcb:${tmp('stapling')}(32768)
<VirtualHost 127.0.0.1:${o.port}>
  ServerName good.demo.test
  SSLEngine on
  SSLCertificateFile ${o.chain}
  SSLCertificateKeyFile ${o.key}
  SSLUseStapling on
  SSLStaplingForceURL ${o.responder}
  SSLStaplingResponderTimeout 5
  SSLStaplingReturnResponderErrors off
</VirtualHost>
`;
}

interface Seen {
  method: string;
  url: string;
  httpVersion: string;
  contentType: string | undefined;
}

/** Forwards every request to `target` unchanged and records what came in. */
async function recordingPassThrough(target: URL, seen: Seen[]): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, contentType: req.headers['content-type'] });
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, timeout: 5000 }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('timeout', () => up.destroy(new Error('staplerd did not answer')));
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  return { server, url: `http://127.0.0.1:${addr.port}` };
}

/** Apache started as root must switch to an unprivileged user; as anyone else it stays who it is. */
async function apacheUser(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readFile('/etc/passwd', 'utf8');
  return /^www-data:/m.test(passwd) ? 'www-data' : 'nobody';
}

describe('Apache mod_ssl staples what staplerd serves (SSLStaplingForceURL)', { skip: bins.skip, timeout: 60_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let responder: DemoResponder | undefined;
  let daemon: Staplerd | undefined;
  let apache: Child | undefined;
  let passThrough: Server | undefined;
  let files: DemoPkiFiles;
  let port: number;
  let upstreamRequestsWhenReady = 0;
  const seen: Seen[] = [];

  before(async () => {
    const apacheBin = bins.path('apache2');
    bins.path('openssl');
    tmp = await tempDir('apache');
    const upstreamPort = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort });

    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      certificates: [{ name: 'good', chain: files.leaves.good.chain }],
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
    upstreamRequestsWhenReady = responder.stats.requests;
    const recorder = await recordingPassThrough(new URL(daemon.url), seen);
    passThrough = recorder.server;

    port = await freePort();
    const conf = join(tmp.dir, 'httpd.conf');
    await writeFile(conf, apacheConf(tmp.dir, {
      port, chain: files.leaves.good.chain, key: files.leaves.good.key, responder: `${recorder.url}/ocsp`, user: await apacheUser(),
    }));
    const check = await run(apacheBin, ['-t', '-f', conf]);
    assert.equal(check.code, 0, `apache2 -t rejected the config:\n${check.stdout}${check.stderr}`);
    apache = new Child('apache2', apacheBin, ['-f', conf, '-DFOREGROUND']);
    await waitFor('Apache to accept TLS connections', 10_000, async () => {
      if (!apache!.running) throw new Error(`apache2 exited\n${apache!.output()}\n${await errorLog()}`);
      return (await sClient()).includes('Verify return code: 0 (ok)') ? true : undefined;
    }, 100);
  });

  after(async () => {
    await apache?.stop('SIGTERM').catch(() => apache?.stop('SIGKILL'));
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await new Promise((resolve) => (passThrough ? passThrough.close(resolve) : resolve(undefined)));
    await responder?.close();
    await tmp?.cleanup();
  });

  const errorLog = () => readFile(join(tmp.dir, 'error.log'), 'utf8').catch(() => '(no error.log)');

  const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), port, files.root, 10_000);

  test('openssl s_client -status shows Cert Status: good with the staple staplerd holds', async () => {
    const held = await daemon!.json<CertificateView>('/v1/certificates/good');
    assert.ok(held.thisUpdate && held.producedAt, 'staplerd holds a staple');
    let out = '';
    try {
      out = await waitFor('a stapled handshake', 10_000, async () => {
        const o = await sClient();
        return /OCSP Response Status: successful/.test(o) ? o : undefined;
      }, 200);
    } catch (e) {
      assert.fail(`${(e as Error).message}\n${await sClient()}\n--- error.log ---\n${await errorLog()}`);
    }
    assert.match(out, /Cert Status: good/);
    assert.match(out, /Verify return code: 0 \(ok\)/);
    assert.match(out, new RegExp(`This Update: ${opensslTime(new Date(held.thisUpdate))}`));
    assert.match(out, new RegExp(`Produced At: ${opensslTime(new Date(held.producedAt))}`));
  });

  test('Apache POSTs application/ocsp-request over HTTP/1.0 to the forced URL', () => {
    assert.ok(seen.length >= 1, 'Apache asked staplerd');
    for (const s of seen) {
      assert.deepEqual(s, { method: 'POST', url: '/ocsp', httpVersion: '1.0', contentType: 'application/ocsp-request' });
    }
  });

  test('the upstream saw only staplerd, never Apache', () => {
    assert.equal(upstreamRequestsWhenReady, 1, 'one certificate, one fetch before ready');
    assert.equal(responder!.stats.requests, upstreamRequestsWhenReady, 'no request after staplerd was ready');
  });
});
