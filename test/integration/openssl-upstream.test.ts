/**
 * staplerd against an independent upstream: `openssl ocsp -index` signs with the delegated responder, so
 * nothing here shares code with staplerd's own demo responder. staplerd runs as a real child process;
 * everything it serves is checked by `openssl ocsp` as a client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, issueCertificate, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  type Child, freePort, run, startOpensslResponder, startStaplerd, suiteBinaries, tempDir, writeStaplerdConfig, type Staplerd,
} from '../helpers/processes.js';

const bins = suiteBinaries(['openssl'], 'the openssl-upstream integration test');

describe('staplerd with openssl ocsp as the upstream responder', { skip: bins.skip, timeout: 60_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let upstream: Child | undefined;
  let daemon: Staplerd | undefined;
  let files: DemoPkiFiles;
  let openssl: string;
  let strangerPem: string;

  before(async () => {
    openssl = bins.path('openssl');
    tmp = await tempDir('openssl-upstream');
    const upstreamPort = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    // A leaf of the same issuer that staplerd was not told about.
    const stranger = issueCertificate(
      { subjectCN: 'stranger.demo.test', notBefore: new Date(now.getTime() - 3600_000), notAfter: new Date(now.getTime() + 30 * 86400_000), ocspUrls: [`http://127.0.0.1:${upstreamPort}/`], key: pki.leaves.good.key },
      pki.issuer,
    );
    strangerPem = join(files.dir, 'stranger.pem');
    await writeFile(strangerPem, stranger.pem);
    upstream = await startOpensslResponder(openssl, { index: files.index, issuer: files.issuer, signer: files.ocspSigner, signerKey: files.ocspSignerKey }, upstreamPort);
    const config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      ocsp: { pathPrefix: '/ocsp' },
      certificates: [
        { name: 'good', chain: files.leaves.good.chain },
        { name: 'revoked', chain: files.leaves.revoked.chain },
        { name: 'must-staple', chain: files.leaves.mustStaple.chain },
      ],
    });
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
  });

  after(async () => {
    await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
    await upstream?.stop('SIGTERM').catch(() => upstream?.stop('SIGKILL'));
    await tmp?.cleanup();
  });

  /** `openssl ocsp -reqout` for `cert`; `digest` goes before -cert (openssl insists). */
  async function opensslRequest(cert: string, digest: 'sha1' | 'sha256' = 'sha1'): Promise<Buffer> {
    const out = join(tmp.dir, `req-${digest}-${Math.random().toString(36).slice(2)}.der`);
    const r = await run(openssl, ['ocsp', '-issuer', files.issuer, `-${digest}`, '-cert', cert, '-no_nonce', '-reqout', out]);
    assert.equal(r.code, 0, r.stderr);
    return readFile(out);
  }

  /** `openssl ocsp -respin` on `body`, verified against the demo root; returns stdout + stderr. */
  async function opensslVerify(body: Uint8Array, cert: string): Promise<string> {
    const file = join(tmp.dir, `resp-${Math.random().toString(36).slice(2)}.der`);
    await writeFile(file, body);
    const r = await run(openssl, ['ocsp', '-respin', file, '-issuer', files.issuer, '-CAfile', files.root, '-cert', cert, '-no_nonce', '-resp_text']);
    return `${r.stdout}\n${r.stderr}`;
  }

  async function assertOcspResponse(res: Response): Promise<Uint8Array> {
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/ocsp-response');
    return new Uint8Array(await res.arrayBuffer());
  }

  test('lists the good leaf as good and the revoked leaf as revoked', async () => {
    const { certificates } = await daemon!.json<{ certificates: CertificateView[] }>('/v1/certificates');
    const byName = new Map(certificates.map((c) => [c.name, c]));
    assert.equal(byName.get('good')?.state, 'good');
    assert.equal(byName.get('revoked')?.state, 'revoked');
    assert.equal(byName.get('must-staple')?.state, 'good');
    assert.equal(byName.get('must-staple')?.mustStaple, true);
    assert.equal(byName.get('good')?.lastError, null);
  });

  test('serves over GET a staple that openssl verifies as good', async () => {
    const req = await opensslRequest(files.leaves.good.cert);
    const res = await daemon!.get(`/ocsp/${encodeURIComponent(req.toString('base64'))}`);
    const body = await assertOcspResponse(res);
    const text = await opensslVerify(body, files.leaves.good.cert);
    assert.match(text, /Response verify OK/);
    assert.match(text, /good\.pem: good/);
    assert.match(text, /Responder Id: CN = staplerd demo OCSP signer/);
  });

  test('serves over POST a staple that openssl verifies as revoked', async () => {
    const req = await opensslRequest(files.leaves.revoked.cert);
    const res = await daemon!.get('/ocsp', { method: 'POST', body: req, headers: { 'content-type': 'application/ocsp-request' } });
    const body = await assertOcspResponse(res);
    const text = await opensslVerify(body, files.leaves.revoked.cert);
    assert.match(text, /Response verify OK/);
    assert.match(text, /revoked\.pem: revoked/);
    assert.match(text, /Reason: keyCompromise/);
  });

  test('serves the same bytes over GET, POST and the JSON API', async () => {
    const req = await opensslRequest(files.leaves.good.cert);
    const viaGet = await assertOcspResponse(await daemon!.get(`/ocsp/${encodeURIComponent(req.toString('base64'))}`));
    const viaPost = await assertOcspResponse(await daemon!.get('/ocsp', { method: 'POST', body: req, headers: { 'content-type': 'application/ocsp-request' } }));
    const viaApi = await assertOcspResponse(await daemon!.get('/v1/certificates/good/ocsp'));
    assert.deepEqual(viaPost, viaGet);
    assert.deepEqual(viaApi, viaGet);
  });

  test('answers openssl ocsp -url pointed at staplerd directly', async () => {
    const ask = (cert: string) => run(openssl, ['ocsp', '-issuer', files.issuer, '-cert', cert, '-url', `${daemon!.url}/ocsp`, '-CAfile', files.root, '-no_nonce']);
    const good = await ask(files.leaves.good.cert);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /good\.pem: good/);
    assert.match(good.stderr, /Response verify OK/);
    const revoked = await ask(files.leaves.revoked.cert);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /revoked\.pem: revoked/);
  });

  test('answers at the root URL too: openssl ocsp -url http://host:port POSTs to /, a GET /<base64> gets the same staple', async () => {
    // The OCSP protocol at the root, beside ocsp.pathPrefix (/ocsp here): what every OCSP client assumes.
    for (const url of [daemon!.url, `${daemon!.url}/`]) {
      const r = await run(openssl, ['ocsp', '-issuer', files.issuer, '-cert', files.leaves.good.cert, '-url', url, '-CAfile', files.root, '-no_nonce']);
      assert.equal(r.code, 0, `${url}: ${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /good\.pem: good/, url);
      assert.match(r.stderr, /Response verify OK/, url);
    }
    const req = await opensslRequest(files.leaves.good.cert, 'sha1');
    const viaRoot = await assertOcspResponse(await daemon!.get(`/${encodeURIComponent(req.toString('base64'))}`));
    const viaPrefix = await assertOcspResponse(await daemon!.get(`/ocsp/${encodeURIComponent(req.toString('base64'))}`));
    assert.deepEqual(viaRoot, viaPrefix);
    assert.match((await daemon!.get('/')).headers.get('content-type') ?? '', /^text\/html/, 'GET / is still the status page');
  });

  test('answers a GET with a SHA-256 CertID with a successful response for that certificate', async () => {
    const req = await opensslRequest(files.leaves.good.cert, 'sha256');
    const body = await assertOcspResponse(await daemon!.get(`/ocsp/${encodeURIComponent(req.toString('base64'))}`));
    const text = await opensslVerify(body, files.leaves.good.cert);
    assert.match(text, /OCSP Response Status: successful/);
    assert.match(text, /Response verify OK/);
    const { serial } = await daemon!.json<CertificateView>('/v1/certificates/good');
    assert.match(text.replace(/:/g, '').toLowerCase(), new RegExp(`serial number ${serial.replace(/:/g, '').toLowerCase()}`));
  });

  test('a SHA-256 CertID request gets a response openssl matches to its request', async () => {
    const r = await run(openssl, ['ocsp', '-issuer', files.issuer, '-sha256', '-cert', files.leaves.good.cert, '-url', `${daemon!.url}/ocsp`, '-CAfile', files.root, '-no_nonce']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /good\.pem: good/);
  });

  test('answers unauthorized for a certificate it does not hold, without asking upstream', async () => {
    const before = (upstream!.stdout + upstream!.stderr).match(/Received request/g)?.length ?? 0;
    assert.ok(before >= 3, `openssl ocsp logged ${before} requests; staplerd should have fetched 3 staples from it`);
    const r = await run(openssl, ['ocsp', '-issuer', files.issuer, '-cert', strangerPem, '-url', `${daemon!.url}/ocsp`, '-CAfile', files.root, '-no_nonce']);
    assert.match(`${r.stdout}\n${r.stderr}`, /Responder Error: unauthorized \(6\)/);
    const req = await opensslRequest(strangerPem);
    const body = await assertOcspResponse(await daemon!.get(`/ocsp/${encodeURIComponent(req.toString('base64'))}`));
    // OCSPResponse { responseStatus ENUMERATED 6 } with no responseBytes.
    assert.deepEqual([...body], [0x30, 0x03, 0x0a, 0x01, 0x06]);
    assert.equal((upstream!.stdout + upstream!.stderr).match(/Received request/g)?.length ?? 0, before);
  });

  test('answers malformedRequest for garbage, never a 500', async () => {
    const viaGet = await assertOcspResponse(await daemon!.get('/ocsp/MAAAAA%3D%3D'));
    assert.deepEqual([...viaGet], [0x30, 0x03, 0x0a, 0x01, 0x01]);
    const viaPost = await assertOcspResponse(await daemon!.get('/ocsp', { method: 'POST', body: new Uint8Array([1, 2, 3]), headers: { 'content-type': 'application/ocsp-request' } }));
    assert.deepEqual([...viaPost], [0x30, 0x03, 0x0a, 0x01, 0x01]);
  });
});
