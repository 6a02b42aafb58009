/**
 * Certificate rotation in a watched directory, as certbot and cert-manager do it: write the new bundle
 * under another name and rename it over the old one. The real process notices by itself (no signal).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import type { CertificateView } from '../../src/service/staple.js';
import { freePort, sleep, startStaplerd, tempDir, waitFor, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';
import { chainPem, OCSP_STATUS, ocspErrorStatus, ocspPath, testPki, writeAtomically, type Leaf, type TestPki } from './helpers.js';

const policy = { skewSeconds: 300, marginSeconds: 300 };
const exists = (p: string) => access(p).then(() => true, () => false);

describe('certificate rotation in a watched directory', { timeout: 45_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let pki: TestPki;
  let certs: string;
  let dataDir: string;
  let responder: DemoResponder;
  let daemon: Staplerd;
  let v1: Leaf;
  let v2: Leaf;
  let other: Leaf;

  before(async () => {
    tmp = await tempDir('rotation');
    const port = await freePort();
    pki = testPki(`http://127.0.0.1:${port}/`);
    [v1, v2, other] = [pki.leaf('site-v1'), pki.leaf('site-v2'), pki.leaf('other')];
    certs = join(tmp.dir, 'certs');
    dataDir = join(tmp.dir, 'var');
    await writeAtomically(certs, 'site.pem', chainPem(v1, pki.pki));
    await writeAtomically(certs, 'other.pem', chainPem(other, pki.pki));
    responder = await startResponder({ issuer: pki.pki.issuer, signer: pki.pki.ocspSigner, statuses: new Map([v1, v2, other].map((l) => [l.cert.serialHex, { kind: 'good' }])), port });
    const config = await writeStaplerdConfig(tmp.dir, { listen: { host: '127.0.0.1', port: 0 }, dataDir, directories: [{ path: certs, pattern: '*.pem' }] });
    daemon = await startStaplerd(config);
    await daemon.waitReady();
  });

  after(async () => {
    await daemon?.stop('SIGKILL').catch(() => undefined);
    await responder?.close();
    await tmp?.cleanup();
  });

  async function site(): Promise<CertificateView | undefined> {
    const r = await daemon.get('/v1/certificates/site');
    if (r.status === 404) return undefined;
    assert.equal(r.status, 200);
    return (await r.json()) as CertificateView;
  }

  async function ocsp(l: Leaf): Promise<Uint8Array> {
    const res = await daemon.get(ocspPath('/ocsp', l.info, pki.issuer));
    assert.equal(res.status, 200);
    return new Uint8Array(await res.arrayBuffer());
  }

  const waitSite = (what: string, ok: (v: CertificateView | undefined) => boolean, ms = 5000) =>
    waitFor(what, ms, async () => {
      const v = await site();
      return ok(v) ? (v ?? null) : undefined;
    });

  test('a bundle renamed over the old one: within seconds the new serial is listed and served, the old CertID gets unauthorized', async () => {
    assert.equal((await site())?.serial, v1.info.serialHex);
    const otherFetches = responder.stats.bySerial.get(other.cert.serialHex);
    await writeAtomically(certs, 'site.pem', chainPem(v2, pki.pki));
    const t0 = Date.now();
    await waitSite('the new serial, with a staple', (v) => v?.serial === v2.info.serialHex && v.state === 'good');
    assert.ok(Date.now() - t0 < 5000);
    const fresh = await ocsp(v2);
    assert.equal(ocspErrorStatus(fresh), undefined, 'the new certificate is served');
    verifyOcspResponse({ der: fresh, leaf: v2.info, issuer: pki.issuer, now: new Date(), policy });
    assert.equal(ocspErrorStatus(await ocsp(v1)), OCSP_STATUS.unauthorized, 'the old CertID is no longer answered');
    assert.equal(responder.stats.bySerial.get(other.cert.serialHex), otherFetches, 'the untouched bundle was not refetched');
  });

  test('a rotation removes the old certificate\'s persisted staple from dataDir', async () => {
    const oldFile = join(dataDir, 'staples', `${v1.info.fingerprint}.der`);
    await waitFor('the new staple on disk', 5000, async () => ((await exists(join(dataDir, 'staples', `${v2.info.fingerprint}.der`))) ? true : undefined));
    await sleep(200);
    assert.equal(await exists(oldFile), false, `${v1.info.fingerprint}.der is left behind for a certificate no longer configured`);
  });

  test('a half-written bundle is ignored, the old certificate staying served, until it becomes valid', async () => {
    const full = chainPem(v2, pki.pki);
    const held = await ocsp(v2);
    const skipsBefore = daemon.logs().filter((l) => /skipping certificate file/.test(l.msg)).length;
    try {
      await writeFile(join(certs, 'site.pem'), full.slice(0, Math.floor(full.length * 0.6)));
      await waitFor('the rescan to reject the half-written file', 5000, () =>
        daemon.logs().filter((l) => /skipping certificate file/.test(l.msg) && String(l.file).endsWith('site.pem')).length > skipsBefore ? true : undefined,
      );
      await sleep(200);
      const v = await site();
      assert.equal(v?.serial, v2.info.serialHex, 'the entry is kept while its file is half-written');
      assert.deepEqual(await ocsp(v2), held, 'the held staple is still served');
    } finally {
      await writeFile(join(certs, 'site.pem'), full);
      await waitSite('the completed bundle to be back', (x) => x?.serial === v2.info.serialHex && x.state === 'good');
    }
    assert.equal(ocspErrorStatus(await ocsp(v2)), undefined);
  });

  test('a removed file removes its entry and its persisted staple', async () => {
    await waitSite('site present', (v) => v?.state === 'good');
    const file = join(dataDir, 'staples', `${v2.info.fingerprint}.der`);
    await waitFor('the staple on disk', 5000, async () => ((await exists(file)) ? true : undefined));
    await unlink(join(certs, 'site.pem'));
    await waitSite('the entry to go', (v) => v === undefined);
    assert.equal(ocspErrorStatus(await ocsp(v2)), OCSP_STATUS.unauthorized);
    await waitFor('the persisted staple to be deleted', 3000, async () => ((await exists(file)) ? undefined : true));
    assert.ok((await daemon.json<{ certificates: CertificateView[] }>('/v1/certificates')).certificates.some((c) => c.name === 'other' && c.state === 'good'), 'the other bundle is untouched');
    assert.ok((await readFile(join(certs, 'other.pem'), 'utf8')).includes('BEGIN CERTIFICATE'));
  });
});
