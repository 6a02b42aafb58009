/**
 * `staplerd demo-ca`: the demo CA as a long-running service (for docker-compose.yml's sidecar demo). It
 * keeps its PKI in a directory that other containers share: created on first start, loaded afterwards (so a
 * restart does not invalidate what nginx and HAProxy loaded), plus HAProxy-style bundles (leaf + issuer +
 * key), and it answers OCSP requests for it until stopped.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCertificate } from '../pki/certificate.js';
import { certificatesFromPem } from '../pki/pem.js';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoLeafName, type DemoPki, type IssuedCert } from './ca.js';
import { startResponder } from './responder.js';

export interface DemoCaOptions {
  dir: string;
  host: string;
  port: number;
  /** The OCSP URL put in the certificates (what staplerd will ask), e.g. http://ca:8889/. */
  ocspUrl: string;
  say: (s: string) => void;
}

const LEAVES: DemoLeafName[] = ['good', 'revoked', 'mustStaple'];

async function loadIssued(dir: string, name: string): Promise<IssuedCert> {
  const pem = await readFile(join(dir, `${name}.pem`), 'utf8');
  const keyPem = await readFile(join(dir, `${name}.key`), 'utf8');
  const der = certificatesFromPem(pem, name)[0]!;
  const info = parseCertificate(der, name);
  const privateKey = createPrivateKey(keyPem);
  return { der, pem, key: { privateKey, publicKey: createPublicKey(privateKey) }, keyPem, serialHex: info.serialHex, subjectCN: /CN=([^,]+)/.exec(info.subject)?.[1] ?? name };
}

/** The PKI in `dir`, loaded when it is there, else made and written. */
export async function loadOrCreateDemoPki(dir: string, ocspUrl: string, now: Date): Promise<{ pki: DemoPki; created: boolean }> {
  const exists = await stat(join(dir, 'issuer.key')).then(() => true, () => false);
  if (!exists) {
    const pki = createDemoPki({ now, ocspUrl });
    await writeDemoPki(pki, dir, now);
    return { pki, created: true };
  }
  const leaves = {} as DemoPki['leaves'];
  for (const l of LEAVES) leaves[l] = await loadIssued(dir, l);
  const issuer = await loadIssued(dir, 'issuer');
  // The root's key is not kept on disk; nothing here signs with it again, so the issuer's key object stands in.
  const rootPem = await readFile(join(dir, 'root.pem'), 'utf8');
  const rootDer = certificatesFromPem(rootPem, 'root')[0]!;
  const root: IssuedCert = { ...issuer, der: rootDer, pem: rootPem, serialHex: parseCertificate(rootDer).serialHex, subjectCN: 'root' };
  return { pki: { root, issuer, ocspSigner: await loadIssued(dir, 'ocsp-signer'), leaves }, created: false };
}

export async function runDemoCa(o: DemoCaOptions): Promise<void> {
  const now = new Date();
  const pkiDir = join(o.dir, 'pki');
  const { pki, created } = await loadOrCreateDemoPki(pkiDir, o.ocspUrl, now);
  // HAProxy wants leaf, chain and key in one file, and reads it as its own user: world-readable, demo only.
  const hx = join(o.dir, 'haproxy');
  await mkdir(hx, { recursive: true });
  for (const l of LEAVES) await writeFile(join(hx, `${l}.pem`), pki.leaves[l].pem + pki.issuer.pem + pki.leaves[l].keyPem, { mode: 0o644 });
  // nginx's ssl_trusted_certificate: what the staple's signer chains to.
  await writeFile(join(pkiDir, 'trusted.pem'), pki.root.pem + pki.issuer.pem);
  const responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), host: o.host, port: o.port, maxAgeHeader: true });
  o.say(`staplerd demo CA: ${created ? 'created' : 'loaded'} ${pkiDir}; OCSP responder on ${o.host}:${responder.port} (certificates name ${o.ocspUrl})`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await responder.close();
}
