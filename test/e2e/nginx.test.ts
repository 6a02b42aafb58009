/**
 * Real nginx staples what staplerd serves, both the host's nginx 1.22 (the Debian 12 package) and nginx 1.26
 * from the Debian 13 chroot (test/helpers/servers.ts): `ssl_stapling_responder` points at
 * staplerd's OCSP route under a path prefix or at its root URL, and `openssl s_client -status` shows the
 * staple to a client.
 * The upstream "CA" is the demo responder in this process, so the test can count who asked it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { opensslTime } from '../../src/check.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  Child, freePort, run, sleep, startStaplerd, suiteBinaries, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';
import { nginxConf } from '../helpers/nginx.js';
import { serverBuilds, type ServerBuild } from '../helpers/servers.js';

const bins = suiteBinaries(['openssl'], 'the nginx end-to-end test');
const PREFIX = '/some/prefix';

// Under a path prefix, and at the root URL (`http://127.0.0.1:PORT/`, what people write for any OCSP responder).
for (const build of serverBuilds('nginx', 'the nginx responder test')) for (const path of [PREFIX, '/']) suite(build, path);

function suite(build: ServerBuild, responderPath: string): void {
describe(`nginx ${build.label} staples the response staplerd holds (ssl_stapling_responder http://127.0.0.1:PORT${responderPath})`, { skip: bins.skip || build.skip, timeout: 180_000 }, () => {
  let tmp: Awaited<ReturnType<ServerBuild['tempDir']>>;
  let responder: DemoResponder | undefined;
  let daemon: Staplerd | undefined;
  let nginx: Child | undefined;
  let files: DemoPkiFiles;
  let nginxPort: number;
  let upstreamRequestsWhenReady: number;

  before(async () => {
    build.check();
    bins.path('openssl');
    tmp = await build.tempDir('nginx');
    const upstreamPort = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort });

    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      ocsp: { pathPrefix: PREFIX },
      certificates: [{ name: 'good', chain: files.leaves.good.chain }],
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(30_000);
    upstreamRequestsWhenReady = responder.stats.requests;

    const trusted = join(tmp.dir, 'trusted.pem');
    await writeFile(trusted, (await readFile(files.root, 'utf8')) + (await readFile(files.issuer, 'utf8')));
    nginxPort = await freePort();
    const conf = join(tmp.dir, 'nginx.conf');
    const inside = build.inside;
    await writeFile(conf, nginxConf(inside(tmp.dir), {
      writtenBy: 'test/e2e/nginx.test.ts',
      port: nginxPort, chain: inside(files.leaves.good.chain), key: inside(files.leaves.good.key), trusted: inside(trusted), responder: `http://127.0.0.1:${new URL(daemon.url).port}${responderPath}`,
    }));
    const configTest = build.command(['-t', '-p', inside(tmp.dir), '-c', inside(conf)]);
    const test = await run(configTest.cmd, configTest.args);
    assert.equal(test.code, 0, `nginx -t rejected the config:\n${test.stderr}`);
    const serve = build.command(['-p', inside(tmp.dir), '-c', inside(conf), '-g', 'daemon off; master_process off;']);
    nginx = new Child('nginx', serve.cmd, serve.args);
    await waitFor('nginx to accept TLS connections', 30_000, async () => {
      if (!nginx!.running) throw new Error(`nginx exited\n${nginx!.output()}\n${await readFile(join(tmp.dir, 'error.log'), 'utf8').catch(() => '')}`);
      const r = await sClient();
      return /Verify return code: 0 \(ok\)/.test(r) ? true : undefined;
    }, 100);
  });

  after(async () => {
    await nginx?.stop('SIGQUIT').catch(() => nginx?.stop('SIGKILL'));
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await responder?.close();
    await tmp?.cleanup();
  });

  const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), nginxPort, files.root);

  test('openssl s_client -status shows Cert Status: good with the staple staplerd holds', async () => {
    // nginx fetches lazily: the first handshake of a worker gets no staple, a later one does.
    let out = '';
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      out = await sClient();
      if (/OCSP Response Status: successful/.test(out)) break;
      await sleep(200);
    }
    const errorLog = await readFile(join(tmp.dir, 'error.log'), 'utf8').catch(() => '(no error.log)');
    assert.match(out, /OCSP Response Status: successful/, `no staple within 30 s\n${out}\n--- nginx error.log ---\n${errorLog}`);
    assert.match(out, /Cert Status: good/);
    assert.match(out, /Verify return code: 0 \(ok\)/);

    const held = await daemon!.json<CertificateView>('/v1/certificates/good');
    assert.ok(held.thisUpdate && held.producedAt, 'staplerd holds a staple');
    assert.match(out, new RegExp(`This Update: ${opensslTime(new Date(held.thisUpdate))}`));
    assert.match(out, new RegExp(`Produced At: ${opensslTime(new Date(held.producedAt))}`));
    assert.match(out, /Subject: CN ?= ?staplerd demo OCSP signer/, "signed by the demo CA's delegated responder");
    assert.doesNotMatch(errorLog, /\[(error|crit|alert|emerg)\]/, `nginx logged errors:\n${errorLog}`);
  });

  test('nginx never asked the upstream itself: every upstream request came from staplerd', async () => {
    assert.ok(upstreamRequestsWhenReady >= 1, 'staplerd fetched from the upstream before it was ready');
    assert.ok(upstreamRequestsWhenReady <= 1, `one certificate, one fetch; the upstream saw ${upstreamRequestsWhenReady}`);
    assert.equal(responder!.stats.requests, upstreamRequestsWhenReady, 'the upstream was asked again after staplerd was ready');
  });
});
}
