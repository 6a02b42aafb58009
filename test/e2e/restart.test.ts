/**
 * Persistence across restarts of the real process: staples written under dataDir are served again after
 * a graceful stop (SIGTERM) and after a crash (SIGKILL), with the upstream CA down, so they can only
 * have come from disk.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPki } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { parseCertificate, type CertInfo } from '../../src/pki/certificate.js';
import { certIdEqual, certIdOf } from '../../src/pki/certid.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { parseOcspResponse } from '../../src/pki/response.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import type { CertificateView } from '../../src/service/staple.js';
import { freePort, startStaplerd, tempDir, waitFor, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';

const NAMES = ['good', 'revoked', 'must-staple'] as const;
type Name = (typeof NAMES)[number];
const TOKEN = 'restart-test-token';

describe('staplerd restarts serve persisted staples', { timeout: 60_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let pki: DemoPki;
  let issuer: CertInfo;
  let leaves: Record<Name, CertInfo>;
  let upstreamPort: number;
  let responder: DemoResponder | undefined;
  let daemon: Staplerd | undefined;
  let config: string;
  let dataDir: string;

  before(async () => {
    tmp = await tempDir('restart');
    upstreamPort = await freePort();
    const now = new Date();
    pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
    const files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    issuer = parseCertificate(pki.issuer.der);
    leaves = { good: parseCertificate(pki.leaves.good.der), revoked: parseCertificate(pki.leaves.revoked.der), 'must-staple': parseCertificate(pki.leaves.mustStaple.der) };
    dataDir = join(tmp.dir, 'var');
    config = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir,
      adminToken: TOKEN,
      ocsp: { pathPrefix: '/ocsp' },
      certificates: [
        { name: 'good', chain: files.leaves.good.chain },
        { name: 'revoked', chain: files.leaves.revoked.chain },
        { name: 'must-staple', chain: files.leaves.mustStaple.chain },
      ],
    });
  });

  after(async () => {
    await daemon?.stop('SIGKILL').catch(() => undefined);
    await responder?.close();
    await tmp?.cleanup();
  });

  /** Starts the demo CA on the port the certificates' AIA names; each response is a second newer than the last. */
  async function startUpstream(): Promise<DemoResponder> {
    let tick = 0;
    const base = Date.now();
    return startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, new Date()), port: upstreamPort, now: () => new Date(base + 1000 * tick++) });
  }

  async function start(): Promise<Staplerd> {
    daemon = await startStaplerd(config);
    await daemon.waitReady(15_000);
    return daemon;
  }

  /** The staple for `name` over the OCSP responder route (GET, SHA-1 CertID, as nginx asks). */
  async function stapleOf(d: Staplerd, name: Name): Promise<Uint8Array> {
    const req = buildOcspRequest([certIdOf(leaves[name], issuer, 'sha1')]);
    const res = await d.get(`/ocsp/${encodeURIComponent(Buffer.from(req).toString('base64'))}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/ocsp-response');
    const body = new Uint8Array(await res.arrayBuffer());
    assert.notEqual(body.byteLength, 5, `${name}: an OCSP error status instead of a staple`);
    return body;
  }

  async function allStaples(d: Staplerd): Promise<Record<Name, Uint8Array>> {
    const out = {} as Record<Name, Uint8Array>;
    for (const n of NAMES) out[n] = await stapleOf(d, n);
    return out;
  }

  /** Every `<dataDir>/staples/*.der` parses and verifies for one of our leaves; returns them by leaf. */
  async function persisted(): Promise<Map<Name, Uint8Array>> {
    const dir = join(dataDir, 'staples');
    const found = new Map<Name, Uint8Array>();
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.der') && !f.startsWith('.'))) {
      const der = new Uint8Array(await readFile(join(dir, file)));
      const parsed = parseOcspResponse(der); // throws on a torn or truncated file
      const id = parsed.responses[0]?.certId;
      const name = NAMES.find((n) => id && certIdEqual(id, certIdOf(leaves[n], issuer, 'sha1')));
      assert.ok(name, `${file}: a staple for none of the configured certificates`);
      verifyOcspResponse({ der, leaf: leaves[name], issuer, now: new Date(), policy: { skewSeconds: 300, marginSeconds: 300 } });
      assert.ok(!found.has(name), `two staple files for ${name}`);
      found.set(name, der);
    }
    return found;
  }

  test('after SIGTERM (exit 0) it serves the same staples from disk with the upstream down', async () => {
    responder = await startUpstream();
    const first = await start();
    const before = await allStaples(first);
    const { certificates } = await first.json<{ certificates: CertificateView[] }>('/v1/certificates');
    assert.deepEqual(certificates.map((c) => [c.name, c.state]).sort(), [['good', 'good'], ['must-staple', 'good'], ['revoked', 'revoked']]);

    const t0 = Date.now();
    assert.equal(await first.stop('SIGTERM', 5000), 0, first.output());
    assert.ok(Date.now() - t0 < 5000);
    const upstreamRequests = responder.stats.requests;
    assert.ok(upstreamRequests >= NAMES.length);
    await responder.close();
    responder = undefined;

    const second = await start();
    const after = await allStaples(second);
    for (const n of NAMES) assert.deepEqual(after[n], before[n], `${n}: different bytes after the restart`);
    const again = await second.json<CertificateView>('/v1/certificates/good');
    assert.equal(again.state, 'good');
    assert.equal(again.thisUpdate, certificates.find((c) => c.name === 'good')?.thisUpdate);
    assert.equal(await second.stop('SIGTERM', 5000), 0, second.output());
    daemon = undefined;
  });

  test('after SIGKILL during refreshes, the staple files are complete and served after restart', async () => {
    responder = await startUpstream();
    const first = await start();
    // Keep it writing: forced refreshes get a newer response each time, and each replaces the files.
    const auth = { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } };
    for (let i = 0; i < 3; i++) {
      const res = await first.get('/v1/certificates/good/refresh', auth);
      assert.equal(res.status, 200, await res.text());
    }
    const inFlight = NAMES.map((n) => first.get(`/v1/certificates/${n}/refresh`, auth).catch(() => undefined));
    const code = await first.stop('SIGKILL', 5000);
    assert.equal(code, 128 + 9);
    await Promise.all(inFlight);
    daemon = undefined;

    const onDisk = await persisted();
    assert.deepEqual([...onDisk.keys()].sort(), [...NAMES].sort());
    await responder.close();
    responder = undefined;

    const second = await start();
    const leftovers = (await readdir(join(dataDir, 'staples'))).filter((f) => f.startsWith('.') && f.endsWith('.tmp'));
    assert.deepEqual(leftovers, [], 'temp files a crash left behind are removed at start');
    for (const n of NAMES) assert.deepEqual(await stapleOf(second, n), onDisk.get(n), `${n}: not the staple on disk`);
    const good = await second.json<CertificateView>('/v1/certificates/good');
    assert.equal(good.state, 'good');
    assert.equal(good.thisUpdate, parseOcspResponse(onDisk.get('good')!).responses[0]?.thisUpdate.toISOString());
    assert.equal(await second.stop('SIGTERM', 5000), 0, second.output());
    daemon = undefined;
  });

  test('a corrupt staple file is logged and skipped, and a fresh staple is fetched', async () => {
    const dir = join(dataDir, 'staples');
    const victims = (await readdir(dir)).filter((f) => f.endsWith('.der') && !f.startsWith('.'));
    assert.ok(victims.length >= 1, 'earlier tests left staples on disk');
    for (const f of victims) await writeFile(join(dir, f), Buffer.from('not an OCSP response'));
    responder = await startUpstream();
    const d = await start();
    const skipped = d.logs().filter((l) => l.msg === 'persisted staple unusable, skipping it');
    assert.equal(skipped.length, victims.length, d.output());
    for (const n of NAMES) parseOcspResponse(await stapleOf(d, n));
    assert.ok(responder.stats.requests >= NAMES.length, 'fresh staples came from the upstream');
    // Staples reach the disk a moment later (write-behind): wait for the corrupt files to be replaced.
    await waitFor('the corrupt files to be replaced by good ones', 5000, async () => {
      const p = await persisted().catch(() => undefined);
      return p?.size === NAMES.length ? true : undefined;
    });
    assert.equal(await d.stop('SIGTERM', 5000), 0, d.output());
    daemon = undefined;
    await responder.close();
    responder = undefined;
  });

  test('SIGTERM exits promptly even while a fetch hangs on the upstream', async () => {
    responder = await startUpstream();
    const d = await start();
    responder.setFault({ kind: 'hang' });
    const before = responder.stats.requests;
    // The refresh hangs with the upstream: the request is only the trigger, its answer does not matter.
    const trigger = d.get('/v1/certificates/good/refresh', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }).catch(() => undefined);
    await waitFor('the refresh to reach the upstream', 5000, () => (responder!.stats.requests > before ? true : undefined));
    const code = await d.stop('SIGTERM', 3000).finally(() => trigger);
    daemon = undefined;
    assert.equal(code, 0);
  });
});
