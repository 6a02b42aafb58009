/**
 * Real HAProxy staples what staplerd pushes over its admin stats socket: the host's HAProxy 2.6 (the Debian 12
 * package) and HAProxy 3.0 from the Debian 13 chroot (test/helpers/servers.ts). The order the README gives: `staplerd bootstrap` creates the empty `<crt>.ocsp` (without it HAProxy
 * 2.6 never staples that certificate), then HAProxy starts, then staplerd pushes `set ssl ocsp-response`.
 * The upstream "CA" is the demo responder in this process.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { opensslTime } from '../../src/check.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  Child, freePort, run, runCli, sleep, startStaplerd, suiteBinaries, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';
import { serverBuilds, type ServerBuild } from '../helpers/servers.js';

const bins = suiteBinaries(['openssl'], 'the HAProxy end-to-end test');
const TOKEN = 'haproxy-test-token';

function haproxyConf(o: { port: number; socket: string; crt: string }): string {
  return `# written by test/e2e/haproxy.test.ts
global
  stats socket ${o.socket} mode 600 level admin
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend tls
  bind 127.0.0.1:${o.port} ssl crt ${o.crt}
  http-request return status 200 content-type text/plain string ok
`;
}

/** One command on the stats socket (HAProxy answers and closes); independent of staplerd's own client. */
function statsCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(socket);
    let out = '';
    c.setTimeout(3000, () => c.destroy(new Error(`no answer to ${command}`)));
    c.on('connect', () => c.end(`${command}\n`));
    c.on('data', (d: Buffer) => (out += d.toString('utf8')));
    c.on('error', reject);
    c.on('end', () => resolve(out));
  });
}

for (const build of serverBuilds('haproxy', 'the HAProxy runtime-push test')) suite(build);

function suite(build: ServerBuild): void {
describe(`HAProxy ${build.label} staples what staplerd pushes over the stats socket`, { skip: bins.skip || build.skip, timeout: 180_000 }, () => {
  let tmp: Awaited<ReturnType<ServerBuild['tempDir']>>;
  let responder: DemoResponder | undefined;
  let daemon: Staplerd | undefined;
  let second: Staplerd | undefined;
  let haproxy: Child | undefined;
  let files: DemoPkiFiles;
  let crt: string;
  let socket: string;
  let conf: string;
  let port: number;
  let bootstrapOut = '';
  let firstThisUpdate = '';

  const startHaproxy = async (): Promise<Child> => {
    const { cmd, args } = build.command(['-f', build.inside(conf), '-db']);
    const h = new Child('haproxy', cmd, args);
    await waitFor('HAProxy to accept TLS and answer on its stats socket', 30_000, async () => {
      if (!h.running) throw new Error(`haproxy exited\n${h.output()}`);
      const info = await statsCommand(socket, 'show info');
      return /^Pid: \d+$/m.test(info) && (await sClient()).includes('Verify return code: 0 (ok)') ? true : undefined;
    }, 100);
    return h;
  };

  before(async () => {
    build.check();
    bins.path('openssl');
    tmp = await build.tempDir('haproxy');
    const upstreamPort = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort });

    // HAProxy's crt: leaf, issuer and key in one PEM (staplerd reads the certificates and skips the key).
    crt = join(tmp.dir, 'good.pem');
    await writeFile(crt, pki.leaves.good.pem + pki.issuer.pem + pki.leaves.good.keyPem, { mode: 0o600 });
    socket = join(tmp.dir, 'admin.sock');
    port = await freePort();
    conf = join(tmp.dir, 'haproxy.cfg');
    await writeFile(conf, haproxyConf({ port, socket: build.inside(socket), crt: build.inside(crt) }));

    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      adminToken: TOKEN,
      certificates: [
        { name: 'good', chain: crt },
        // Valid, but HAProxy does not serve it: pushing it must fail with its own error code.
        { name: 'elsewhere', chain: files.leaves.mustStaple.chain },
      ],
      sinks: {
        files: [{ path: '{chain}.ocsp', createEmpty: true, certificates: ['good'] }],
        haproxy: [
          { socket, checkInterval: '1s', certificates: ['good'] },
          { socket, checkInterval: '1s', certificates: ['elsewhere'] },
        ],
      },
    });
    const boot = await runCli(['bootstrap', '-c', config]);
    bootstrapOut = `exit ${String(boot.code)}\n${boot.stdout}${boot.stderr}`;
    haproxy = await startHaproxy();
    daemon = await startStaplerd(config);
    await daemon.waitReady(30_000);
  });

  after(async () => {
    await haproxy?.stop('SIGTERM').catch(() => haproxy?.stop('SIGKILL'));
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await second?.stop('SIGTERM').catch(() => second?.stop('SIGKILL'));
    await responder?.close();
    await tmp?.cleanup();
  });

  const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), port, files.root);

  /** Polls s_client until it shows a staple with this thisUpdate. */
  async function waitForStaple(thisUpdate: string, ms = 30_000): Promise<string> {
    const want = `This Update: ${opensslTime(new Date(thisUpdate))}`;
    let last = '';
    try {
      return await waitFor(`s_client to show ${want}`, ms, async () => {
        last = await sClient();
        return last.includes(want) ? last : undefined;
      }, 200);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- last s_client ---\n${last}\n${daemon?.output() ?? ''}\n${haproxy?.output() ?? ''}`);
    }
  }

  const view = (name = 'good') => daemon!.json<CertificateView>(`/v1/certificates/${name}`);
  const identity = async () => /^Pid: (\d+)$/m.exec(await statsCommand(socket, 'show info'))?.[1];

  test('staplerd bootstrap created the empty .ocsp file HAProxy needs at load to staple', async () => {
    assert.match(bootstrapOut, /^exit 0\n1 staple file\(s\) created:\n {2}.*good\.pem\.ocsp$/m, bootstrapOut);
    assert.ok(await stat(`${crt}.ocsp`), 'the file exists (by now the file sink has filled it)');
  });

  test('openssl s_client -status shows the staple staplerd holds, pushed at runtime', async () => {
    const held = await view();
    assert.ok(held.thisUpdate && held.producedAt, 'staplerd holds a staple');
    const out = await waitForStaple(held.thisUpdate);
    assert.match(out, /OCSP Response Status: successful/);
    assert.match(out, /Cert Status: good/);
    assert.match(out, new RegExp(`Produced At: ${opensslTime(new Date(held.producedAt))}`));
    firstThisUpdate = held.thisUpdate;
    // The file sink wrote the same DER beside the certificate, for HAProxy's next start.
    const served = Buffer.from(await (await daemon!.get('/v1/certificates/good/ocsp')).arrayBuffer());
    await waitFor('good.pem.ocsp to hold the staple staplerd serves', 5000, async () => ((await readFile(`${crt}.ocsp`)).equals(served) ? true : undefined));
  });

  test('a refresh with a new thisUpdate reaches HAProxy without a reload', async () => {
    assert.ok(firstThisUpdate, 'the previous test saw the first staple');
    const pidBefore = await identity();
    await sleep(1100); // thisUpdate has one-second resolution: make the next one differ
    const r = await daemon!.get('/v1/certificates/good/refresh', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    const fresh = JSON.parse(text) as CertificateView;
    assert.ok(fresh.thisUpdate && Date.parse(fresh.thisUpdate) > Date.parse(firstThisUpdate), `new thisUpdate: ${fresh.thisUpdate} after ${firstThisUpdate}`);
    const out = await waitForStaple(fresh.thisUpdate);
    assert.match(out, /Cert Status: good/);
    assert.equal(await identity(), pidBefore, 'the same HAProxy process: no reload, no restart');
    assert.ok(haproxy!.running);
  });

  test('a certificate HAProxy does not serve is rejected with HAPROXY_CERTID_MISMATCH', async () => {
    const line = await waitFor('a sink push failure for "elsewhere"', 5000, () =>
      daemon!.logs().find((l) => l.msg === 'sink push failed' && l.cert === 'elsewhere'));
    assert.equal(line.code, 'HAPROXY_CERTID_MISMATCH', JSON.stringify(line));
    assert.match(String(line.err), /Certificate ID does not match/i);
    assert.equal(daemon!.logs().filter((l) => l.msg === 'sink push failed' && l.cert === 'good').length, 0, 'the certificate HAProxy serves was never rejected');
  });

  test('after HAProxy restarts, staplerd notices and pushes the newest staple again', async () => {
    const before = await identity();
    await haproxy!.stop('SIGTERM');
    // Empty the .ocsp file, so the new process can only get the staple through a runtime push.
    await writeFile(`${crt}.ocsp`, '');
    const logsBefore = daemon!.logs().length;
    haproxy = await startHaproxy();
    assert.notEqual(await identity(), before, 'a new HAProxy process');
    await waitFor('staplerd to notice the restart', 30_000, () =>
      daemon!.logs().slice(logsBefore).find((l) => l.msg === 'HAProxy restarted or came back: pushing all staples again'));
    const held = await view();
    const out = await waitForStaple(held.thisUpdate!);
    assert.match(out, /Cert Status: good/);
  });

  // Regression test: SinkRunner once stopped a whole lane at the first failing certificate (fixed in acfcda4).
  test('a certificate HAProxy rejects does not hold back the others in the same sink', async () => {
    // One sink for both certificates, and a retry delay longer than the wait below: had "good" queued behind
    // the failing "elsewhere", it would show only after that retry. Checked by the count of failures, not by
    // wall-clock time, so a busy machine cannot make it flaky.
    await daemon!.stop('SIGTERM');
    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var2'),
      adminToken: TOKEN,
      certificates: [{ name: 'good', chain: crt }, { name: 'elsewhere', chain: files.leaves.mustStaple.chain }],
      sinks: { haproxy: [{ socket, checkInterval: '1s' }], retryInitial: '120s', retryMax: '120s' },
    }, 'second.yaml');
    second = await startStaplerd(config);
    await second.waitReady(30_000);
    const failures = () => second!.logs().filter((l) => l.msg === 'sink push failed' && l.cert === 'elsewhere').length;
    await waitFor('the push of "elsewhere" to fail', 30_000, () => (failures() > 0 ? true : undefined));
    const failedBefore = failures();
    await sleep(1100);
    const r = await second.get('/v1/certificates/good/refresh', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const fresh = JSON.parse(await r.text()) as CertificateView;
    daemon = second; // for waitForStaple's diagnostics
    await waitForStaple(fresh.thisUpdate!, 60_000);
    assert.equal(failures(), failedBefore, '"good" reached HAProxy before "elsewhere" was retried');
  });
});
}
