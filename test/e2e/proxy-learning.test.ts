/**
 * staplerd as the HTTP proxy of an OCSP client (absolute-form requests, as HAProxy 3.x sends through
 * `ocsp-update.httpproxy`), driven by real curl; and learning mode driven by real nginx: a certificate
 * staplerd was never configured for, under a listed issuer, is fetched once, cached and stapled.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { computeCertId } from '../../src/pki/certid.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  Child, freePort, run, sleep, startOpensslResponder, startStaplerd, suiteBinaries, tempDir, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';
import { nginxConf } from '../helpers/nginx.js';

const bins = suiteBinaries(['curl', 'nginx', 'openssl'], 'the proxy and learning end-to-end tests');
const UNAUTHORIZED = Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x06]);

/** A SHA-1 CertID request, as nginx, HAProxy and Apache build them (no nonce). */
const requestFor = (pki: DemoPki, leaf: 'good' | 'mustStaple' | 'revoked') => Buffer.from(buildOcspRequest([computeCertId(pki.leaves[leaf].der, pki.issuer.der, 'sha1')]));

/**
 * POST an OCSP request to /ocsp. Not Staplerd.get: its 5 s per request is too short for a hundred at once
 * on a loaded machine (each waits for the one upstream fetch, bounded by fetch.timeout, 10 s).
 */
async function postOcsp(daemon: Staplerd, body: Buffer): Promise<Buffer> {
  const r = await fetch(`${daemon.url}/ocsp`, { method: 'POST', body, headers: { 'content-type': 'application/ocsp-request' }, signal: AbortSignal.timeout(30_000) });
  return Buffer.from(await r.arrayBuffer());
}

/** A demo CA and its responder (the upstream), in a fresh temp dir. */
async function setup(prefix: string): Promise<{ tmp: Awaited<ReturnType<typeof tempDir>>; pki: DemoPki; files: DemoPkiFiles; responder: DemoResponder }> {
  const tmp = await tempDir(prefix);
  const upstreamPort = await freePort();
  const now = new Date();
  const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
  const files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
  const responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort });
  return { tmp, pki, files, responder };
}

describe('absolute-form requests through staplerd as a proxy (curl -x)', { skip: bins.skip, timeout: 30_000 }, () => {
  let s: Awaited<ReturnType<typeof setup>> | undefined;
  let daemon: Staplerd | undefined;
  let cached: Buffer;
  let upstreamWhenReady = 0;

  before(async () => {
    bins.path('curl');
    s = await setup('proxy');
    const config = await writeStaplerdConfig(s.tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(s.tmp.dir, 'var'),
      certificates: [{ name: 'good', chain: s.files.leaves.good.chain }],
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
    upstreamWhenReady = s.responder.stats.requests;
    cached = Buffer.from(await (await daemon.get('/v1/certificates/good/ocsp')).arrayBuffer());
    await writeFile(join(s.tmp.dir, 'req.der'), requestFor(s.pki, 'good'));
  });

  after(async () => {
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await s?.responder.close();
    await s?.tmp.cleanup();
  });

  /** curl through staplerd; no proxy variables from the environment (NO_PROXY could bypass -x). */
  async function curl(args: string[]): Promise<{ status: string; body: Buffer }> {
    const out = join(s!.tmp.dir, 'answer.der');
    const r = await run(bins.path('curl'), ['-sS', '--max-time', '5', '-x', daemon!.url, '-o', out, '-w', '%{http_code} %{content_type}', ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    return { status: r.stdout, body: await readFile(out) };
  }

  test('GET http://ocsp.ca.example/<url-encoded base64> answers with the cached staple', async () => {
    const b64 = encodeURIComponent(requestFor(s!.pki, 'good').toString('base64'));
    const r = await curl([`http://ocsp.ca.example/${b64}`]);
    assert.equal(r.status, '200 application/ocsp-response');
    assert.ok(r.body.equals(cached), 'the same bytes as /v1/certificates/good/ocsp');
    const withPath = await curl([`http://ocsp.ca.example/ocsp/${b64}`]);
    assert.ok(withPath.body.equals(cached), 'a CA responder URL with a path of its own');
  });

  test('POST http://ocsp.ca.example/ with application/ocsp-request answers with the cached staple', async () => {
    const r = await curl(['--data-binary', `@${join(s!.tmp.dir, 'req.der')}`, '-H', 'Content-Type: application/ocsp-request', 'http://ocsp.ca.example/']);
    assert.equal(r.status, '200 application/ocsp-response');
    assert.ok(r.body.equals(cached), 'the same bytes as /v1/certificates/good/ocsp');
  });

  test('nothing went upstream, and never to the host in the request', () => {
    // ocsp.ca.example is a reserved name that resolves nowhere: curl -x only ever talks to the proxy.
    assert.equal(upstreamWhenReady, 1);
    assert.equal(s!.responder.stats.requests, upstreamWhenReady, 'the upstream saw no request after staplerd was ready');
  });
});

describe('learning mode: nginx asks for a certificate staplerd was never configured for', { skip: bins.skip, timeout: 90_000 }, () => {
  let s: Awaited<ReturnType<typeof setup>> | undefined;
  let daemon: Staplerd | undefined;
  let nginx: Child | undefined;
  let nginxPort: number;
  let knownBeforeNginx = -1;

  before(async () => {
    const nginxBin = bins.path('nginx');
    bins.path('openssl');
    s = await setup('learning');
    const config = await writeStaplerdConfig(s.tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(s.tmp.dir, 'var'),
      learning: { issuers: [{ certificate: s.files.issuer, responder: s.responder.url }] },
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
    knownBeforeNginx = (await daemon.json<{ certificates: CertificateView[] }>('/v1/certificates')).certificates.length;

    const trusted = join(s.tmp.dir, 'trusted.pem');
    await writeFile(trusted, s.pki.root.pem + s.pki.issuer.pem);
    nginxPort = await freePort();
    const conf = join(s.tmp.dir, 'nginx.conf');
    const responder = `http://127.0.0.1:${new URL(daemon.url).port}/ocsp`;
    await writeFile(conf, nginxConf(s.tmp.dir, { writtenBy: 'test/e2e/proxy-learning.test.ts', port: nginxPort, chain: s.files.leaves.good.chain, key: s.files.leaves.good.key, trusted, responder }));
    nginx = new Child('nginx', nginxBin, ['-p', s.tmp.dir, '-c', conf, '-g', 'daemon off; master_process off;']);
    await waitFor('nginx to accept TLS connections', 10_000, async () => {
      if (!nginx!.running) throw new Error(`nginx exited\n${nginx!.output()}`);
      return (await sClient()).includes('Verify return code: 0 (ok)') ? true : undefined;
    }, 100);
  });

  after(async () => {
    await nginx?.stop('SIGQUIT').catch(() => nginx?.stop('SIGKILL'));
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await s?.responder.close();
    await s?.tmp.cleanup();
  });

  const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), nginxPort, s!.files.root, 10_000);

  const post = (body: Buffer): Promise<Buffer> => postOcsp(daemon!, body);

  test('the staple appears: s_client shows Cert Status: good, and /v1/certificates lists it as learned', async () => {
    assert.equal(knownBeforeNginx, 0, 'configured with no certificates');
    let out = '';
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      out = await sClient();
      if (/OCSP Response Status: successful/.test(out)) break;
      await sleep(200);
    }
    const errorLog = await readFile(join(s!.tmp.dir, 'error.log'), 'utf8').catch(() => '(no error.log)');
    assert.match(out, /Cert Status: good/, `no staple within 10 s\n${out}\n--- nginx error.log ---\n${errorLog}\n${daemon!.output()}`);
    const { certificates } = await daemon!.json<{ certificates: CertificateView[] }>('/v1/certificates');
    assert.equal(certificates.length, 1);
    const learned = certificates[0]!;
    assert.match(learned.name, /^learned-/);
    assert.equal(learned.serial.toLowerCase(), s!.pki.leaves.good.serialHex.toLowerCase());
    assert.equal(learned.state, 'good');
    assert.equal(s!.responder.stats.requests, 1, 'one upstream fetch for the learned certificate');
  });

  test('a hundred concurrent requests for another new certificate make one upstream fetch', async () => {
    const before = s!.responder.stats.requests;
    const req = requestFor(s!.pki, 'mustStaple');
    const answers = await Promise.all(Array.from({ length: 100 }, () => post(req)));
    assert.equal(s!.responder.stats.requests, before + 1, `the upstream saw ${s!.responder.stats.requests - before} requests`);
    assert.equal(s!.responder.stats.bySerial.get(s!.pki.leaves.mustStaple.serialHex.toLowerCase().replace(/^(00)+/, '')), 1);
    const { certificates } = await daemon!.json<{ certificates: CertificateView[] }>('/v1/certificates');
    const learned = certificates.find((c) => c.serial.toLowerCase() === s!.pki.leaves.mustStaple.serialHex.toLowerCase());
    assert.ok(learned, `learned: ${certificates.map((c) => c.name).join(', ')}`);
    const staple = Buffer.from(await (await daemon!.get(`/v1/certificates/${learned.name}/ocsp`)).arrayBuffer());
    for (const a of answers) assert.ok(a.equals(staple), 'every one of the hundred got the staple');
  });

  test('a certificate of an unlisted issuer gets unauthorized and nothing is fetched', async () => {
    const other = createDemoPki({ now: new Date(), ocspUrl: 'http://127.0.0.1:9/' });
    const before = s!.responder.stats.requests;
    assert.ok((await post(requestFor(other, 'good'))).equals(UNAUTHORIZED));
    const b64 = encodeURIComponent(requestFor(other, 'good').toString('base64'));
    const r = await daemon!.get(`/ocsp/${b64}`);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(UNAUTHORIZED), 'GET as nginx sends it');
    assert.equal(s!.responder.stats.requests, before);
    assert.equal((await daemon!.json<{ certificates: CertificateView[] }>('/v1/certificates')).certificates.length, 2, 'nothing learned');
  });
});

describe('learning mode with openssl ocsp as the trusted issuer\'s responder', { skip: bins.skip, timeout: 90_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>> | undefined;
  let pki: DemoPki;
  let upstream: Child | undefined;
  let daemon: Staplerd | undefined;

  before(async () => {
    const openssl = bins.path('openssl');
    tmp = await tempDir('learning-openssl');
    const upstreamPort = await freePort();
    const now = new Date();
    pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    const files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    upstream = await startOpensslResponder(openssl, { index: files.index, issuer: files.issuer, signer: files.ocspSigner, signerKey: files.ocspSignerKey }, upstreamPort);
    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      learning: { issuers: [{ certificate: files.issuer, responder: `http://127.0.0.1:${upstreamPort}/` }] },
      sinks: { files: [{ path: join(tmp.dir, 'staples', '{name}.der') }, { path: '{chain}.ocsp' }] },
      hooks: { revoked: { command: ['sh', '-c', `echo "$STAPLERD_NAME" >> ${join(tmp.dir, 'hook.out')}`] } },
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
  });

  after(async () => {
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await upstream?.stop('SIGTERM').catch(() => upstream?.stop('SIGKILL'));
    await tmp?.cleanup();
  });

  test('a hundred concurrent POSTs for a new certificate all get the staple, from one upstream fetch', async () => {
    const req = requestFor(pki, 'good');
    const answers = await Promise.all(Array.from({ length: 100 }, () => postOcsp(daemon!, req)));
    const { certificates } = await daemon!.json<{ certificates: CertificateView[] }>('/v1/certificates');
    assert.equal(certificates.length, 1, `learned: ${certificates.map((c) => c.name).join(', ')}`);
    const staple = Buffer.from(await (await daemon!.get(`/v1/certificates/${certificates[0]!.name}/ocsp`)).arrayBuffer());
    const missed = answers.filter((a) => !a.equals(staple)).length;
    assert.equal(missed, 0, `${missed} of 100 did not get the staple`);
    const metrics = await (await daemon!.get('/metrics')).text();
    const fetches = [...metrics.matchAll(/^staplerd_fetch_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(fetches, 1, 'one upstream fetch');
  });

  test('a learned revoked certificate runs no hook and gets no staple file (learning.hooks and learning.sinks default off)', async () => {
    const r = await daemon!.get('/ocsp', { method: 'POST', body: requestFor(pki, 'revoked'), headers: { 'content-type': 'application/ocsp-request' } });
    const body = Buffer.from(await r.arrayBuffer());
    assert.ok(body.length > 100, 'the revoked staple is served');
    // The sinks and hooks run right after the staple is committed; give them time to (wrongly) act.
    await sleep(1000);
    assert.equal(await readFile(join(tmp!.dir, 'hook.out'), 'utf8').catch(() => ''), '', 'no hook ran');
    assert.deepEqual(await readdir(join(tmp!.dir, 'staples')).catch(() => []), [], 'no staple file');
    assert.ok(!daemon!.logs().some((l) => /\{chain\}/.test(l.msg)), 'learned ones are not even offered to the sinks');
  });
});
