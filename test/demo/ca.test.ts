import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, generateKey, issueCertificate, writeDemoPki } from '../../src/demo/index.js';
import { openssl, tempDir } from './helpers.js';

const NOW = new Date();
const OCSP_URL = 'http://127.0.0.1:9/ocsp';

async function demoFiles(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t);
  const pki = createDemoPki({ now: NOW, ocspUrl: OCSP_URL });
  return { pki, files: await writeDemoPki(pki, dir, NOW) };
}

test('every demo leaf and the OCSP signer chain to the root per openssl verify', async (t) => {
  const { files } = await demoFiles(t);
  const targets = [files.leaves.good.cert, files.leaves.revoked.cert, files.leaves.mustStaple.cert, files.ocspSigner];
  for (const cert of targets) {
    const r = await openssl(['verify', '-CAfile', files.root, '-untrusted', files.issuer, cert]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /: OK/);
  }
  const chain = await openssl(['verify', '-CAfile', files.root, '-untrusted', files.leaves.good.chain, files.leaves.good.cert]);
  assert.equal(chain.code, 0, chain.out);
  const serverAuth = await openssl(['verify', '-purpose', 'sslserver', '-CAfile', files.root, '-untrusted', files.issuer, files.leaves.good.cert]);
  assert.equal(serverAuth.code, 0, serverAuth.out);
});

test('only the must-staple leaf carries the RFC 7633 TLS feature; leaves carry the OCSP URL and SANs', async (t) => {
  const { files } = await demoFiles(t);
  for (const name of ['good', 'revoked', 'mustStaple'] as const) {
    const text = (await openssl(['x509', '-in', files.leaves[name].cert, '-noout', '-text'])).stdout;
    assert.match(text, new RegExp(`OCSP - URI:${OCSP_URL.replace(/[/.]/g, '\\$&')}`));
    assert.match(text, /DNS:localhost/);
    assert.match(text, /TLS Web Server Authentication/);
    if (name === 'mustStaple') assert.match(text, /TLS Feature:\s*\n\s*status_request/);
    else assert.doesNotMatch(text, /TLS Feature/);
  }
});

test('the delegated OCSP signer has EKU OCSP Signing and ocsp-nocheck; the CAs have critical basicConstraints', async (t) => {
  const { files } = await demoFiles(t);
  const signer = (await openssl(['x509', '-in', files.ocspSigner, '-noout', '-text'])).stdout;
  assert.match(signer, /Extended Key Usage:\s*\n\s*OCSP Signing/);
  assert.match(signer, /OCSP No Check/);
  assert.match(signer, /Issuer: CN = staplerd demo issuing CA/);
  for (const ca of [files.root, files.issuer]) {
    const text = (await openssl(['x509', '-in', ca, '-noout', '-text'])).stdout;
    assert.match(text, /Basic Constraints: critical\s*\n\s*CA:TRUE/);
    assert.match(text, /Certificate Sign, CRL Sign/);
  }
});

test('written keys match their certificates', async (t) => {
  const { files } = await demoFiles(t);
  const pairs = [[files.leaves.good.cert, files.leaves.good.key], [files.issuer, files.issuerKey], [files.ocspSigner, files.ocspSignerKey]];
  for (const [cert, key] of pairs) {
    const fromCert = await openssl(['x509', '-in', cert!, '-noout', '-pubkey']);
    const fromKey = await openssl(['pkey', '-in', key!, '-pubout']);
    assert.equal(fromKey.code, 0, fromKey.out);
    assert.equal(fromCert.stdout, fromKey.stdout);
  }
});

test('index.txt is in openssl ca format with uppercase serials and the revocation on the revoked leaf', async (t) => {
  const { pki, files } = await demoFiles(t);
  const lines = (await readFile(files.index, 'utf8')).trimEnd().split('\n').map((l) => l.split('\t'));
  assert.equal(lines.length, 3);
  const bySerial = new Map(lines.map((f) => [f[3], f]));
  const revoked = bySerial.get(pki.leaves.revoked.serialHex.toUpperCase());
  assert.ok(revoked);
  assert.equal(revoked[0], 'R');
  assert.match(revoked[2]!, /^\d{12}Z,keyCompromise$/);
  const good = bySerial.get(pki.leaves.good.serialHex.toUpperCase());
  assert.deepEqual([good?.[0], good?.[2], good?.[4], good?.[5]], ['V', '', 'unknown', '/CN=good.demo.test']);
  assert.match(good![1]!, /^\d{12}Z$/);
  assert.equal(await readFile(join(files.dir, 'index.txt.attr'), 'utf8'), 'unique_subject = no\n');
});

test('serials are positive 16-byte values unless given, and a given serial is used verbatim', () => {
  const key = generateKey();
  const dates = { notBefore: new Date(NOW.getTime() - 1000), notAfter: new Date(NOW.getTime() + 86_400_000) };
  const a = issueCertificate({ subjectCN: 'a', ...dates, key }, 'self');
  assert.equal(a.serialHex.length, 32);
  assert.ok(parseInt(a.serialHex.slice(0, 2), 16) < 0x80 && a.serialHex.slice(0, 2) !== '00');
  const b = issueCertificate({ subjectCN: 'b', ...dates, key, serial: Uint8Array.of(0x01, 0x02, 0xff) }, 'self');
  assert.equal(b.serialHex, '0102ff');
});

test('an RSA-2048 CA can issue and sign certificates openssl accepts', async (t) => {
  const dir = await tempDir(t);
  const dates = { notBefore: new Date(NOW.getTime() - 60_000), notAfter: new Date(NOW.getTime() + 86_400_000) };
  const ca = issueCertificate({ subjectCN: 'rsa root', isCA: true, ...dates, key: generateKey('rsa-2048') }, 'self');
  const leaf = issueCertificate({ subjectCN: 'rsa.demo.test', dnsNames: ['rsa.demo.test'], ekuServerAuth: true, ...dates }, ca);
  await writeFile(join(dir, 'ca.pem'), ca.pem);
  await writeFile(join(dir, 'leaf.pem'), leaf.pem);
  const r = await openssl(['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]);
  assert.equal(r.code, 0, r.out);
  const text = (await openssl(['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'])).stdout;
  assert.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
});
