/**
 * The status page as a person sees it: rendered by real headless Chromium (Debian's package) from a running
 * staplerd, every configured certificate shows, and a failing one shows its error.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { createDemoPki, demoStatuses, writeDemoPki } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { run, startStaplerd, suiteBinaries, tempDir, waitFor, writeStaplerdConfig, type Staplerd } from '../helpers/processes.js';

const bins = suiteBinaries(['chromium'], 'the status page test in headless Chromium');

/** The flags this workplace needs for a quiet, offline, root-run headless Chromium. */
function chromiumArgs(profile: string): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`];
}

describe('status page in headless Chromium', { skip: bins.skip }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let responder: DemoResponder;
  let daemon: Staplerd;

  before(async () => {
    tmp = await tempDir('staplerd-status-page-');
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: 'http://127.0.0.1:9/' });
    const files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now) });
    const cfg = await writeStaplerdConfig(tmp.dir, {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(tmp.dir, 'var'),
      logLevel: 'info',
      certificates: [
        { name: 'good', chain: files.leaves.good.chain, responder: responder.url },
        { name: 'revoked', chain: files.leaves.revoked.chain, responder: responder.url },
        // Nothing listens on port 9: this one fails with FETCH_CONNECT.
        { name: 'must-staple', chain: files.leaves.mustStaple.chain },
      ],
    });
    daemon = await startStaplerd(cfg);
    await waitFor('first fetches', 10_000, async () => {
      const r = (await (await daemon.get('/v1/certificates')).json()) as { certificates: Array<{ state: string }> };
      return r.certificates.every((c) => c.state !== 'pending') ? true : undefined;
    });
  });
  after(async () => {
    await daemon?.stop('SIGTERM', 5000).catch(() => undefined);
    await responder?.close();
    await tmp?.cleanup();
  });

  test('renders every certificate, and the failing one with its error', async () => {
    const chromium = bins.path('chromium');
    const profile = join(tmp.dir, 'chromium-profile');
    const dom = await run(chromium, [...chromiumArgs(profile), '--dump-dom', `${daemon.url}/`], { timeoutMs: 60_000 });
    assert.equal(dom.code, 0, dom.stderr);
    for (const [name, state] of [['good', 'good'], ['revoked', 'revoked'], ['must-staple', 'failing']]) {
      assert.match(dom.stdout, new RegExp(`<tr data-cert="${name}" data-state="${state}">`), `${name} is ${state}`);
    }
    assert.match(dom.stdout, /<code>FETCH_CONNECT<\/code>/);
    assert.match(dom.stdout, /not ready/, 'a must-staple certificate without a staple makes it not ready');
    const png = join(tmp.dir, 'status.png');
    const shot = await run(chromium, [...chromiumArgs(profile), '--window-size=1300,500', `--screenshot=${png}`, `${daemon.url}/`], { timeoutMs: 60_000 });
    assert.equal(shot.code, 0, shot.stderr);
    const bytes = await readFile(png);
    assert.ok(bytes.subarray(1, 4).toString() === 'PNG' && bytes.length > 5000, 'a real screenshot was rendered');
    if (process.env.STAPLERD_KEEP_SCREENSHOT) await run('cp', [png, process.env.STAPLERD_KEEP_SCREENSHOT]);
  });
});
