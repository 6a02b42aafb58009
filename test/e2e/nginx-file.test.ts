/**
 * Real nginx staples a file staplerd writes (the host's nginx 1.22 and the Debian 13 chroot's 1.26): `ssl_stapling_file` fed by the file sink,
 * with `nginx -s reload` as the sink's reload command. nginx refuses to start when that file is missing
 * or empty (d2i_OCSP_RESPONSE_bio failed), so staplerd starts first and nginx once the file exists.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { opensslTime } from '../../src/check.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  Child, freePort, run, sleep, startStaplerd, suiteBinaries, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';
import { nginxConf } from '../helpers/nginx.js';
import { serverBuilds, type ServerBuild } from '../helpers/servers.js';

const bins = suiteBinaries(['openssl'], 'the nginx ssl_stapling_file end-to-end test');
const TOKEN = 'nginx-file-test-token';

for (const build of serverBuilds('nginx', 'the nginx ssl_stapling_file test')) suite(build);

function suite(build: ServerBuild): void {
describe(`nginx ${build.label} staples the file staplerd writes, and reloads when it changes`, { skip: bins.skip || build.skip, timeout: 180_000 }, () => {
  let tmp: Awaited<ReturnType<ServerBuild['tempDir']>>;
  let responder: DemoResponder | undefined;
  let daemon: Staplerd | undefined;
  let nginx: Child | undefined;
  let files: DemoPkiFiles;
  let port: number;
  let conf: string;
  let stapleFile: string;
  let firstThisUpdate = '';

  before(async () => {
    build.check();
    bins.path('openssl');
    tmp = await build.tempDir('nginx-file');
    const inside = build.inside;
    const upstreamPort = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort });

    port = await freePort();
    conf = join(tmp.dir, 'nginx.conf');
    stapleFile = join(tmp.dir, 'staples', 'good.der');
    await writeFile(conf, nginxConf(inside(tmp.dir), {
      writtenBy: 'test/e2e/nginx-file.test.ts', port, chain: inside(files.leaves.good.chain), key: inside(files.leaves.good.key), stapleFile: inside(stapleFile),
    }));
    const reload = build.command(['-p', inside(tmp.dir), '-c', inside(conf), '-s', 'reload']);

    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      adminToken: TOKEN,
      certificates: [{ name: 'good', chain: files.leaves.good.chain }],
      sinks: {
        files: [{ path: join(tmp.dir, 'staples', '{name}.der'), reload: { command: [reload.cmd, ...reload.args], debounce: '200ms' } }],
      },
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(30_000);
    await waitFor('the file sink to write good.der', 30_000, async () => ((await stat(stapleFile).catch(() => undefined))?.size ? true : undefined));
    // The first reload ran before nginx did (no pid file yet): logged as failed, harmless. Let it finish.
    await waitFor('the first reload attempt', 5000, () => daemon!.logs().find((l) => /^reload command/.test(l.msg)));

    const configTest = build.command(['-t', '-p', inside(tmp.dir), '-c', inside(conf)]);
    const check = await run(configTest.cmd, configTest.args);
    assert.equal(check.code, 0, `nginx -t rejected the config:\n${check.stderr}`);
    // With its master process (for -s reload), in the foreground so it stays our child.
    const serve = build.command(['-p', inside(tmp.dir), '-c', inside(conf), '-g', 'daemon off;']);
    nginx = new Child('nginx', serve.cmd, serve.args);
    await waitFor('nginx to accept TLS connections', 30_000, async () => {
      if (!nginx!.running) throw new Error(`nginx exited\n${nginx!.output()}\n${await errorLog()}`);
      return (await sClient()).includes('Verify return code: 0 (ok)') ? true : undefined;
    }, 100);
  });

  after(async () => {
    await nginx?.stop('SIGQUIT').catch(() => nginx?.stop('SIGKILL'));
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await responder?.close();
    await tmp?.cleanup();
  });

  const errorLog = () => readFile(join(tmp.dir, 'error.log'), 'utf8').catch(() => '(no error.log)');

  const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), port, files.root);

  async function waitForStaple(thisUpdate: string): Promise<string> {
    const want = `This Update: ${opensslTime(new Date(thisUpdate))}`;
    let last = '';
    try {
      return await waitFor(`s_client to show ${want}`, 30_000, async () => {
        last = await sClient();
        return last.includes(want) ? last : undefined;
      }, 200);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- last s_client ---\n${last}\n--- nginx error.log ---\n${await errorLog()}\n${daemon?.output() ?? ''}`);
    }
  }

  const reloads = (what: RegExp) => daemon!.logs().filter((l) => what.test(l.msg));

  test('the first handshake already carries the staple from the file', async () => {
    const held = await daemon!.json<CertificateView>('/v1/certificates/good');
    assert.ok(held.thisUpdate, 'staplerd holds a staple');
    const out = await sClient(); // no lazy fetch with ssl_stapling_file: the first handshake has it
    assert.match(out, /OCSP Response Status: successful/, out);
    assert.match(out, /Cert Status: good/);
    assert.match(out, new RegExp(`This Update: ${opensslTime(new Date(held.thisUpdate))}`));
    const served = Buffer.from(await (await daemon!.get('/v1/certificates/good/ocsp')).arrayBuffer());
    assert.ok((await readFile(stapleFile)).equals(served), 'the file holds the DER staplerd serves');
    firstThisUpdate = held.thisUpdate;
  });

  test('a new thisUpdate is written, nginx -s reload runs once, and s_client shows the new staple', async () => {
    assert.ok(firstThisUpdate, 'the previous test saw the first staple');
    const pid = (await readFile(join(tmp.dir, 'nginx.pid'), 'utf8')).trim();
    const ranBefore = reloads(/^reload command ran$/).length;
    await sleep(1100); // thisUpdate has one-second resolution
    const r = await daemon!.get('/v1/certificates/good/refresh', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    const fresh = JSON.parse(text) as CertificateView;
    assert.ok(fresh.thisUpdate && Date.parse(fresh.thisUpdate) > Date.parse(firstThisUpdate), `new thisUpdate: ${fresh.thisUpdate}`);
    await waitFor('"reload command ran"', 30_000, () => (reloads(/^reload command ran$/).length > ranBefore ? true : undefined));
    const out = await waitForStaple(fresh.thisUpdate);
    assert.match(out, /Cert Status: good/);
    await sleep(400); // longer than the debounce: a second run would have shown by now
    assert.equal(reloads(/^reload command ran$/).length, ranBefore + 1, 'one refresh, one reload');
    assert.equal((await readFile(join(tmp.dir, 'nginx.pid'), 'utf8')).trim(), pid, 'the same nginx master: reloaded, not restarted');
    assert.ok(nginx!.running);
    assert.doesNotMatch(await errorLog(), /\[(emerg|alert|crit)\]/, await errorLog());
  });
});
}
