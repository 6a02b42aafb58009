/**
 * HAProxy 3.0's own OCSP updater with staplerd as its proxy: `ocsp-update on` in a crt-list and the global
 * `ocsp-update.httpproxy` pointed at staplerd, so HAProxy sends absolute-form requests
 * (`GET http://127.0.0.1:<CA port>/<base64>`) that staplerd answers from its cache. The CA's responder is
 * stopped before HAProxy starts: every staple HAProxy gets came from staplerd.
 *
 * HAProxy 3.0 checks what it fetched against the chain it loaded (OCSP_basic_verify with OCSP_TRUSTOTHER and
 * the loaded certificates as the only trust, no partial chains). A response signed by the issuer itself
 * verifies with the usual leaf + issuer PEM; one signed by a delegated OCSP signer (RFC 6960 §4.2.2.2)
 * verifies only when the loaded PEM reaches the root, else the update fails with "OCSP response check
 * failure". The three cases below pin that down (README, "HAProxy 2.8 and 3.x").
 *
 * HAProxy 3.0 comes from the Debian 13 chroot (STAPLERD_TRIXIE_ROOT; Debian 12's 2.6 has no updater).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { opensslTime } from '../../src/check.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import type { CertificateView } from '../../src/service/staple.js';
import {
  Child, freePort, run, startStaplerd, suiteBinaries, waitFor, writeStaplerdConfig, type Staplerd, sClientStatus } from '../helpers/processes.js';
import { trixieBuild, type ServerBuild } from '../helpers/servers.js';

const build = trixieBuild('haproxy', "the HAProxy 3.0 ocsp-update test");
const bins = suiteBinaries(['openssl'], "the HAProxy 3.0 ocsp-update test");

interface Case {
  name: string;
  /** Who signs the CA's responses: the issuing CA itself, or its delegated OCSP signer. */
  signer: 'issuer' | 'delegated';
  /** Whether the PEM HAProxy loads carries the root after leaf and issuer. */
  withRoot: boolean;
  expect: 'staple' | 'check failure';
}

const CASES: Case[] = [
  { name: 'issuer-signed responses, PEM of leaf and issuer', signer: 'issuer', withRoot: false, expect: 'staple' },
  { name: 'a delegated OCSP signer, PEM reaching the root', signer: 'delegated', withRoot: true, expect: 'staple' },
  { name: 'a delegated OCSP signer, PEM stopping at the issuer', signer: 'delegated', withRoot: false, expect: 'check failure' },
];

/**
 * mindelay 1 s: a failed update is retried within seconds; maxdelay stays long, so after a success only
 * `update ssl ocsp-response` on the CLI makes HAProxy ask again (HAProxy 3.0 names; 2.8 had tune.ssl.*).
 */
function haproxyConf(o: { port: number; socket: string; crtList: string; proxyPort: number }): string {
  return `# written by test/e2e/haproxy-ocsp-update.test.ts
global
  stats socket ${o.socket} mode 600 level admin
  ocsp-update.httpproxy 127.0.0.1:${o.proxyPort}
  ocsp-update.mindelay 1
  ocsp-update.maxdelay 3600
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend tls
  bind 127.0.0.1:${o.port} ssl crt-list ${o.crtList}
  http-request return status 200 content-type text/plain string ok
`;
}

/** One command on the stats socket (HAProxy answers and closes). */
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

interface UpdateRow {
  successes: number;
  failures: number;
  status: string;
  raw: string;
}

/**
 * The row of `show ssl ocsp-updates` for one certificate: "certid | path | next | last | successes |
 * failures | status code | status string".
 */
async function updateRow(socket: string, crtInside: string): Promise<UpdateRow | undefined> {
  const out = await statsCommand(socket, 'show ssl ocsp-updates');
  const line = out.split('\n').find((l) => l.split(' | ')[1] === crtInside);
  if (!line) return undefined;
  const f = line.split(' | ');
  return { successes: Number(f[4]), failures: Number(f[5]), status: f[7] ?? '', raw: `${out.split('\n')[0]}\n${line}` };
}

for (const c of CASES) suite(c, build);

function suite(c: Case, b: ServerBuild): void {
  describe(`HAProxy ${b.label} ocsp-update through staplerd: ${c.name}`, { skip: bins.skip || b.skip, timeout: 180_000 }, () => {
    let tmp: Awaited<ReturnType<ServerBuild['tempDir']>>;
    let pki: DemoPki;
    let files: DemoPkiFiles;
    let responder: DemoResponder | undefined;
    let daemon: Staplerd | undefined;
    let haproxy: Child | undefined;
    let crt: string;
    let socket: string;
    let port: number;
    let held: CertificateView;

    before(async () => {
      b.check();
      bins.path('openssl');
      tmp = await b.tempDir('haproxy-update');
      const upstreamPort = await freePort();
      const now = new Date();
      pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
      files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
      const signer = c.signer === 'issuer' ? pki.issuer : pki.ocspSigner;
      responder = await startResponder({ issuer: pki.issuer, signer, statuses: demoStatuses(pki, now), port: upstreamPort });

      // HAProxy's crt: leaf, issuer (and the root when the case says so) and key in one PEM.
      crt = join(tmp.dir, 'good.pem');
      const chain = pki.leaves.good.pem + pki.issuer.pem + (c.withRoot ? pki.root.pem : '');
      await writeFile(crt, chain + pki.leaves.good.keyPem, { mode: 0o600 });
      const config = await writeStaplerdConfig(tmp.dir, {
        listen: { host: '127.0.0.1', port: 0 },
        dataDir: join(tmp.dir, 'var'),
        certificates: [{ name: 'good', chain: crt }],
      });
      daemon = await startStaplerd(config);
      await daemon.waitReady(30_000);
      held = await daemon.json<CertificateView>('/v1/certificates/good');
      // From here on the CA is down: HAProxy can only get a staple from staplerd's cache.
      await responder.close();
      responder = undefined;

      socket = join(tmp.dir, 'admin.sock');
      port = await freePort();
      const crtList = join(tmp.dir, 'crt-list.txt');
      await writeFile(crtList, `${b.inside(crt)} [ocsp-update on]\n`);
      const conf = join(tmp.dir, 'haproxy.cfg');
      const proxyPort = Number(new URL(daemon.url).port);
      await writeFile(conf, haproxyConf({ port, socket: b.inside(socket), crtList: b.inside(crtList), proxyPort }));
      const { cmd, args } = b.command(['-f', b.inside(conf), '-db']);
      haproxy = new Child('haproxy', cmd, args);
      await waitFor('HAProxy to answer on its stats socket', 30_000, async () => {
        if (!haproxy!.running) throw new Error(`haproxy exited\n${haproxy!.output()}`);
        return /^Pid: \d+$/m.test(await statsCommand(socket, 'show info')) ? true : undefined;
      }, 100);
    });

    after(async () => {
      await haproxy?.stop('SIGTERM').catch(() => haproxy?.stop('SIGKILL'));
      await daemon?.stop('SIGTERM').catch(() => daemon?.stop('SIGKILL'));
      await responder?.close();
      await tmp?.cleanup();
    });

    const sClient = (): Promise<string> => sClientStatus(bins.path('openssl'), port, files.root);

    /** Waits for the update row to satisfy `ok`; the message carries the row and both logs. */
    async function waitRow(what: string, ok: (r: UpdateRow) => boolean, ms = 30_000): Promise<UpdateRow> {
      let last: UpdateRow | undefined;
      try {
        return await waitFor(what, ms, async () => {
          last = await updateRow(socket, b.inside(crt));
          return last && ok(last) ? last : undefined;
        }, 200);
      } catch (e) {
        throw new Error(`${(e as Error).message}\n--- show ssl ocsp-updates ---\n${last?.raw ?? '(no row)'}\n${haproxy?.output() ?? ''}\n${daemon?.output() ?? ''}`);
      }
    }

    /** staplerd's count of OCSP requests it answered from its cache. */
    async function hits(): Promise<number> {
      const text = await (await daemon!.get('/metrics')).text();
      return Number(/^staplerd_ocsp_requests_total\{outcome="hit"\} (\d+)/m.exec(text)?.[1] ?? 0);
    }

    if (c.expect === 'staple') {
      test('HAProxy fetches the staple through staplerd and s_client shows it with the CA down', async () => {
        const row = await waitRow('a successful update', (r) => r.successes >= 1);
        assert.equal(row.failures, 0, row.raw);
        const want = `This Update: ${opensslTime(new Date(held.thisUpdate!))}`;
        const out = await waitFor(`s_client to show ${want}`, 30_000, async () => {
          const o = await sClient();
          return o.includes(want) ? o : undefined;
        }, 200);
        assert.match(out, /OCSP Response Status: successful/);
        assert.match(out, /Cert Status: good/);
        assert.match(out, new RegExp(`Produced At: ${opensslTime(new Date(held.producedAt!))}`));
        assert.ok((await hits()) >= 1, 'staplerd answered the request from its cache');
      });

      test('update ssl ocsp-response on the CLI makes HAProxy ask staplerd again', async () => {
        const before = await waitRow('a successful update', (r) => r.successes >= 1);
        const hitsBefore = await hits();
        const reply = await statsCommand(socket, `update ssl ocsp-response ${b.inside(crt)}`);
        assert.doesNotMatch(reply, /error|unknown|not found/i, reply);
        const row = await waitRow('one more successful update', (r) => r.successes > before.successes);
        assert.equal(row.failures, 0, row.raw);
        assert.ok((await hits()) > hitsBefore, 'the new update was answered by staplerd');
      });
    } else {
      test('HAProxy rejects the staple: "OCSP response check failure", and serves none', async () => {
        const row = await waitRow('a failed update', (r) => r.failures >= 1);
        assert.equal(row.successes, 0, row.raw);
        assert.match(row.status, /OCSP response check failure/i, row.raw);
        assert.ok((await hits()) >= 1, 'staplerd did answer: the check that failed is HAProxy’s own');
        const out = await sClient();
        assert.match(out, /OCSP response: no response sent/, out);
      });
    }
  });
}
