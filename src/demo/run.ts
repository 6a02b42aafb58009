/**
 * `staplerd demo` / `npm run demo`: the embedded default. There is no public CA to reach here, so it makes a
 * throwaway CA (root, issuer, delegated OCSP signer; a good, a revoked, a must-staple leaf and one with no
 * OCSP URL), starts the small responder that signs real responses with the CA's keys, and runs staplerd on
 * it with a generated config. Then it shows what staplerd serves and the commands to look for yourself.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import { freePort } from '../util/net.js';
import { startDaemon, type Daemon } from '../daemon.js';
import { createLogger } from '../main.js';
import { createDemoPki, demoStatuses, issueCertificate, writeDemoPki } from './ca.js';
import { startResponder, type DemoResponder } from './responder.js';

export interface DemoOptions {
  port: number;
  dir: string | undefined;
  say: (s: string) => void;
  /** Exit after the first look instead of serving until Ctrl-C (used by tests). */
  once?: boolean;
}


export interface DemoSetup {
  dir: string;
  /** True when the directory is a temp dir made for this run (removed after `--once`). */
  madeDir: boolean;
  configPath: string;
  responder: DemoResponder;
  daemon: Daemon;
  files: Awaited<ReturnType<typeof writeDemoPki>>;
}

/** Builds the CA, the responder and a running daemon; the caller stops both. */
export async function setUpDemo(o: { port: number; dir: string | undefined; logLevel?: 'warn' | 'info' | 'silent' }): Promise<DemoSetup> {
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'staplerd-demo-')));
  const now = new Date();
  const upstreamPort = await freePort();
  const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${upstreamPort}/` });
  const files = await writeDemoPki(pki, join(dir, 'pki'), now);
  const quiet = issueCertificate(
    { subjectCN: 'no-ocsp.demo.test', notBefore: new Date(now.getTime() - 3600_000), notAfter: new Date(now.getTime() + 90 * 86400_000), ekuServerAuth: true, dnsNames: ['no-ocsp.demo.test'] },
    pki.issuer,
  );
  await writeFile(join(files.dir, 'no-ocsp.chain.pem'), quiet.pem + pki.issuer.pem);
  const responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: upstreamPort, maxAgeHeader: true });
  const doc = {
    listen: { host: '127.0.0.1', port: o.port },
    dataDir: join(dir, 'var'),
    adminToken: 'demo-token',
    ocsp: { pathPrefix: '/ocsp' },
    certificates: [
      { name: 'good', chain: files.leaves.good.chain },
      { name: 'revoked', chain: files.leaves.revoked.chain },
      { name: 'must-staple', chain: files.leaves.mustStaple.chain },
      { name: 'no-ocsp', chain: join(files.dir, 'no-ocsp.chain.pem') },
    ],
  };
  const configPath = join(dir, 'staplerd.yaml');
  await writeFile(configPath, `# written by staplerd demo\n${JSON.stringify(doc, null, 2)}\n`);
  const cfg = parseConfig(doc, configPath);
  const daemon = await startDaemon(cfg, { log: createLogger(o.logLevel ?? 'warn') });
  return { dir, madeDir: o.dir === undefined, configPath, responder, daemon, files };
}

async function waitReady(d: Daemon, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (d.stapler.readiness().ready) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

export async function runDemo(o: DemoOptions): Promise<void> {
  const s = await setUpDemo({ port: o.port, dir: o.dir });
  const { say } = o;
  const ready = await waitReady(s.daemon, 10_000);
  const url = s.daemon.url;
  const f = s.files;
  say(`staplerd demo: ${ready ? 'ready' : 'NOT ready after 10 s'}, serving on ${url}`);
  say(`  throwaway CA and certificates in ${f.dir}, config ${s.configPath}`);
  say(`  upstream OCSP responder (the "CA") on ${s.responder.url}\n`);
  say('  certificate   state           thisUpdate                nextUpdate');
  for (const c of s.daemon.stapler.list()) {
    say(`  ${c.name.padEnd(13)} ${c.state.padEnd(15)} ${(c.thisUpdate ?? '-').padEnd(25)} ${c.nextUpdate ?? '-'}`);
  }
  say(`\nTry it:
  curl -s ${url}/v1/certificates
  curl -s ${url}/readyz
  openssl ocsp -issuer ${f.issuer} -cert ${f.leaves.good.cert} -url ${url}/ocsp -CAfile ${f.root} -no_nonce -resp_text
  openssl ocsp -issuer ${f.issuer} -cert ${f.leaves.revoked.cert} -url ${url}/ocsp -CAfile ${f.root} -no_nonce
  curl -s ${url}/v1/certificates/good/ocsp -o good.der && openssl ocsp -respin good.der -CAfile ${f.root} -issuer ${f.issuer} -resp_text
  curl -s -X POST -H 'Authorization: Bearer demo-token' ${url}/v1/certificates/good/refresh
nginx: ssl_stapling on; ssl_stapling_responder ${url}/ocsp;  (see README)
`);
  const stop = async () => {
    await s.daemon.stop();
    await s.responder.close();
  };
  if (o.once) {
    await stop();
    if (s.madeDir) await rm(s.dir, { recursive: true, force: true });
    if (!ready) throw new Error('demo did not become ready');
    return;
  }
  say('Ctrl-C to stop.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stop();
}
