/**
 * Signals to the real process: SIGTERM stops within a bound even while an upstream fetch hangs; SIGHUP
 * reloads the certificate list without dropping (or refetching) staples that are still valid, and a bad
 * new config is rejected while the old one keeps serving.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import { canConnect, freePort, sleep, startStaplerd, tempDir, waitFor, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';
import { chainPem, OCSP_STATUS, ocspErrorStatus, ocspPath, testPki, writeAtomically, type Leaf, type TestPki } from './helpers.js';

describe('signals', { timeout: 45_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let pki: TestPki;
  let leaves: Record<'a' | 'b' | 'c', Leaf>;
  let responder: DemoResponder;
  let daemon: Staplerd | undefined;

  before(async () => {
    tmp = await tempDir('signals');
    const port = await freePort();
    pki = testPki(`http://127.0.0.1:${port}/`);
    leaves = { a: pki.leaf('a'), b: pki.leaf('b'), c: pki.leaf('c') };
    for (const l of Object.values(leaves)) await writeAtomically(join(tmp.dir, 'certs'), `${l.name}.pem`, chainPem(l, pki.pki));
    responder = await startResponder({ issuer: pki.pki.issuer, signer: pki.pki.ocspSigner, statuses: new Map(Object.values(leaves).map((l) => [l.cert.serialHex, { kind: 'good' }])), port });
  });

  after(async () => {
    await daemon?.stop('SIGKILL').catch(() => undefined);
    await responder?.close();
    await tmp?.cleanup();
  });

  const cert = (l: Leaf) => ({ name: l.name, chain: join(tmp.dir, 'certs', `${l.name}.pem`) });
  const config = (name: string, doc: Record<string, unknown>) =>
    writeStaplerdConfig(tmp.dir, { listen: { host: '127.0.0.1', port: 0 }, dataDir: join(tmp.dir, `var-${name}`), ...doc }, `${name}.yaml`);

  async function ocsp(d: Staplerd, l: Leaf): Promise<Buffer> {
    const res = await d.get(ocspPath('/ocsp', l.info, pki.issuer));
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  }

  test('SIGTERM exits 0 within 5 s while an upstream fetch hangs (fetch.timeout 2s)', async () => {
    responder.setFault({ kind: 'hang' });
    try {
      const before = responder.stats.requests;
      const d = (daemon = await startStaplerd(await config('term', { fetch: { timeout: '2s' }, certificates: [cert(leaves.a)] })));
      await waitFor('the upstream fetch to be in flight', 5000, () => (responder.stats.requests > before ? true : undefined), 20);
      const t0 = Date.now();
      const stopping = d.stop('SIGTERM', 10_000);
      await sleep(300);
      assert.equal(await canConnect(Number(new URL(d.url).port)), false, 'no new connections are accepted once stopping');
      const code = await stopping;
      const took = Date.now() - t0;
      assert.equal(code, 0, d.output());
      assert.ok(took < 5000, `stopped in ${took} ms`);
      assert.ok(d.logs().some((l) => l.msg === 'stopped'), 'logs that it stopped');
      daemon = undefined;
    } finally {
      responder.setFault(null);
    }
  });

  test('SIGHUP adds and removes certificates, keeps the valid staples of unchanged ones, and rejects a bad config', async () => {
    const path = await config('hup', { certificates: [cert(leaves.a), cert(leaves.b)] });
    const d = (daemon = await startStaplerd(path));
    await d.waitReady();
    const aBytes = await ocsp(d, leaves.a);
    assert.equal(ocspErrorStatus(aBytes), undefined);
    const aFetches = responder.stats.bySerial.get(leaves.a.cert.serialHex);

    await config('hup', { certificates: [cert(leaves.a), cert(leaves.c)] });
    d.proc.kill('SIGHUP');
    await waitFor('the reload', 5000, async () => {
      const { certificates } = await d.json<{ certificates: CertificateView[] }>('/v1/certificates');
      const names = certificates.map((c) => `${c.name}:${c.state}`).sort().join(',');
      return names === 'a:good,c:good' ? true : undefined;
    });
    assert.ok(d.logs().some((l) => /SIGHUP: certificates reloaded/.test(l.msg)));
    assert.equal(responder.stats.bySerial.get(leaves.a.cert.serialHex), aFetches, 'no new upstream request for the unchanged certificate');
    assert.ok((await ocsp(d, leaves.a)).equals(aBytes), 'the same staple is still served for the unchanged certificate');
    assert.equal(ocspErrorStatus(await ocsp(d, leaves.b)), OCSP_STATUS.unauthorized, 'the removed certificate is no longer answered');
    assert.equal(ocspErrorStatus(await ocsp(d, leaves.c)), undefined, 'the added certificate is served');

    await writeStaplerdConfig(tmp.dir, { listen: { host: '127.0.0.1', port: 0 }, dataDir: join(tmp.dir, 'var-hup'), bogusKey: 1, certificates: [cert(leaves.b)] }, 'hup.yaml');
    d.proc.kill('SIGHUP');
    const line = await waitFor('the rejection log line', 5000, () => d.logs().find((l) => /SIGHUP: new config rejected/.test(l.msg)));
    assert.ok(line.level >= 50, 'logged at error');
    assert.match(JSON.stringify(line), /bogusKey: unknown key/, 'the log line names the bad key');
    assert.ok(d.running, 'still running');
    const { certificates } = await d.json<{ certificates: CertificateView[] }>('/v1/certificates');
    assert.deepEqual(certificates.map((c) => c.name).sort(), ['a', 'c'], 'the old set is kept');
    assert.ok((await ocsp(d, leaves.a)).equals(aBytes));
    assert.equal(ocspErrorStatus(await ocsp(d, leaves.c)), undefined);
    assert.equal(await d.stop('SIGTERM'), 0);
    daemon = undefined;
  });
});
