/**
 * Real lighttpd (the Debian package) staples the file staplerd's file sink writes (`ssl.stapling-file`).
 * lighttpd needs no reload for it: it stats the file itself (every 64 s, once the response it holds is
 * within 256 s of its nextUpdate: mod_openssl_refresh_stapling_file) and staples from the first handshake.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { opensslTime } from '../../src/check.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import { Child, freePort, run, startStaplerd, suiteBinaries, tempDir, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';

const bins = suiteBinaries(['lighttpd', 'openssl'], 'the lighttpd ssl.stapling-file end-to-end test');

describe('lighttpd staples the file staplerd writes', { skip: bins.skip, timeout: 60_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let responder: DemoResponder | undefined;
  let daemon: Staplerd | undefined;
  let lighttpd: Child | undefined;
  let files: DemoPkiFiles;
  let port: number;
  let stapleFile: string;

  before(async () => {
    const lighttpdBin = bins.path('lighttpd');
    bins.path('openssl');
    tmp = await tempDir('lighttpd');
    const upstreamPort = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort });

    stapleFile = join(tmp.dir, 'staples', 'good.der');
    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      certificates: [{ name: 'good', chain: files.leaves.good.chain }],
      sinks: { files: [{ path: join(tmp.dir, 'staples', '{name}.der') }] },
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
    await waitFor('the file sink to write good.der', 10_000, async () => ((await stat(stapleFile).catch(() => undefined))?.size ? true : undefined));

    port = await freePort();
    const conf = join(tmp.dir, 'lighttpd.conf');
    await mkdir(join(tmp.dir, 'www'), { recursive: true });
    // The lines the README's lighttpd section shows, with this test's paths.
    await writeFile(conf, [
      '# written by test/e2e/lighttpd.test.ts',
      `server.document-root = "${join(tmp.dir, 'www')}"`,
      'server.bind = "127.0.0.1"',
      `server.port = ${port}`,
      `server.errorlog = "${join(tmp.dir, 'error.log')}"`,
      'server.modules += ( "mod_openssl" )',
      'ssl.engine = "enable"',
      `ssl.pemfile = "${files.leaves.good.chain}"`,
      `ssl.privkey = "${files.leaves.good.key}"`,
      `ssl.stapling-file = "${stapleFile}"`,
      '',
    ].join('\n'));
    const check = await run(lighttpdBin, ['-tt', '-f', conf]);
    assert.equal(check.code, 0, `lighttpd -tt rejected the config:\n${check.stdout}\n${check.stderr}`);
    lighttpd = new Child('lighttpd', lighttpdBin, ['-D', '-f', conf]);
    await waitFor('lighttpd to accept TLS connections', 10_000, async () => {
      if (!lighttpd!.running) throw new Error(`lighttpd exited\n${lighttpd!.output()}\n${await errorLog()}`);
      return (await sClient()).includes('Verify return code: 0 (ok)') ? true : undefined;
    }, 100);
  });

  after(async () => {
    await lighttpd?.stop('SIGTERM').catch(() => lighttpd?.stop('SIGKILL'));
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await responder?.close();
    await tmp?.cleanup();
  });

  const errorLog = () => readFile(join(tmp.dir, 'error.log'), 'utf8').catch(() => '(no error.log)');

  const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), port, files.root, 10_000);

  test('the first handshake carries the staple staplerd wrote, byte for byte what it serves', async () => {
    const held = await daemon!.json<CertificateView>('/v1/certificates/good');
    assert.ok(held.thisUpdate, 'staplerd holds a staple');
    const out = await sClient();
    assert.match(out, /OCSP Response Status: successful/, `${out}\n${await errorLog()}`);
    assert.match(out, /Cert Status: good/);
    assert.match(out, new RegExp(`This Update: ${opensslTime(new Date(held.thisUpdate))}`));
    const served = Buffer.from(await (await daemon!.get('/v1/certificates/good/ocsp')).arrayBuffer());
    assert.ok((await readFile(stapleFile)).equals(served), 'the file holds the DER staplerd serves');
    assert.doesNotMatch(await errorLog(), /OCSP|stapling/i, await errorLog());
  });
});
