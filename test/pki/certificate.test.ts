import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactLeaf, isIssuedBy, parseCertificate } from '../../src/pki/certificate.js';
import { certIdKey, certIdOf } from '../../src/pki/certid.js';
import { certificatesFromPem } from '../../src/pki/pem.js';
import { buildOcspRequest, parseOcspRequest } from '../../src/pki/request.js';
import { isStaplerError } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();

test('extracts serial, OCSP URL, must-staple and EKU from real certificates', () => {
  assert.equal(f.good.serialHex, f.pki.leaves.good.serialHex);
  assert.deepEqual(f.good.ocspUrls, ['http://127.0.0.1:9/']);
  assert.equal(f.good.mustStaple, false);
  assert.equal(f.mustStaple.mustStaple, true);
  const signer = parseCertificate(f.pki.ocspSigner.der);
  assert.equal(signer.ekuOcspSigning, true);
  assert.equal(signer.ocspNoCheck, true);
  assert.equal(f.good.ekuOcspSigning, false);
  assert.equal(f.issuer.isCA, true);
  assert.match(f.good.subject, /CN=good\.demo\.test/);
});

test('proves issuance by signature, not by name alone', () => {
  assert.equal(isIssuedBy(f.good, f.issuer), true);
  const root = parseCertificate(f.pki.root.der);
  assert.equal(isIssuedBy(f.good, root), false);
  assert.equal(isIssuedBy(f.issuer, root), true);
});

test('reads every certificate of a PEM bundle and ignores private keys', () => {
  const bundle = f.pki.leaves.good.keyPem + f.pki.leaves.good.pem + f.pki.issuer.pem;
  const ders = certificatesFromPem(bundle, 'bundle');
  assert.equal(ders.length, 2);
  assert.equal(parseCertificate(ders[1]!).fingerprint, f.issuer.fingerprint);
  assert.throws(() => certificatesFromPem('hello', 'x.pem'), (e: unknown) => isStaplerError(e) && e.code === 'CERT_NO_CERTIFICATE');
  assert.throws(() => parseCertificate(new Uint8Array([0x30, 0x03, 1, 2, 3])), (e: unknown) => isStaplerError(e) && e.code === 'CERT_PARSE');
});

test('computes the same CertIDs (SHA-1, SHA-256, SHA-384, SHA-512) as openssl does', () => {
  const dir = mkdtempSync(join(tmpdir(), 'staplerd-certid-'));
  try {
    writeFileSync(join(dir, 'issuer.pem'), f.pki.issuer.pem);
    writeFileSync(join(dir, 'leaf.pem'), f.pki.leaves.good.pem);
    for (const alg of ['sha1', 'sha256', 'sha384', 'sha512'] as const) {
      const out = join(dir, `${alg}.der`);
      execFileSync('openssl', ['ocsp', `-${alg}`, '-issuer', join(dir, 'issuer.pem'), '-cert', join(dir, 'leaf.pem'), '-no_nonce', '-reqout', out], { stdio: 'pipe' });
      const req = parseOcspRequest(new Uint8Array(readFileSync(out)));
      assert.equal(req.certIds.length, 1);
      assert.equal(certIdKey(req.certIds[0]!), certIdKey(f.certId(f.good, alg)), alg);
      assert.equal(req.nonce, undefined);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('builds requests openssl can read, without a nonce unless asked', () => {
  const dir = mkdtempSync(join(tmpdir(), 'staplerd-req-'));
  try {
    const plain = buildOcspRequest([f.certId(f.good)]);
    writeFileSync(join(dir, 'plain.der'), plain);
    const text = execFileSync('openssl', ['ocsp', '-reqin', join(dir, 'plain.der'), '-req_text'], { encoding: 'utf8' });
    assert.match(text, new RegExp(`Serial Number: ${f.good.serialHex.toUpperCase()}`));
    assert.doesNotMatch(text, /OCSP Nonce/);
    const nonce = Uint8Array.from({ length: 16 }, (_, i) => i);
    const withNonce = buildOcspRequest([f.certId(f.good)], { nonce });
    writeFileSync(join(dir, 'nonce.der'), withNonce);
    assert.match(execFileSync('openssl', ['ocsp', '-reqin', join(dir, 'nonce.der'), '-req_text'], { encoding: 'utf8' }), /OCSP Nonce/);
    assert.deepEqual(parseOcspRequest(withNonce).nonce, nonce);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('refuses requests that are not OCSPRequests', () => {
  for (const bad of [new Uint8Array(0), new Uint8Array([0x30, 0x00]), new Uint8Array(Buffer.from('GET / HTTP/1.1'))]) {
    assert.throws(() => parseOcspRequest(bad), (e: unknown) => isStaplerError(e) && e.code === 'REQUEST_MALFORMED');
  }
  const good = buildOcspRequest([f.certId(f.good)]);
  assert.throws(() => parseOcspRequest(Buffer.concat([good, Buffer.from([0, 0])])), (e: unknown) => isStaplerError(e) && e.code === 'REQUEST_MALFORMED');
});

test('a compacted leaf keeps its CertIDs and identity but not its DER', () => {
  const c = compactLeaf(f.good);
  assert.equal(c.der.byteLength, 0);
  assert.equal(c.fingerprint, f.good.fingerprint);
  assert.equal(c.serialHex, f.good.serialHex);
  for (const alg of ['sha1', 'sha256'] as const) assert.equal(certIdKey(certIdOf(c, f.issuer, alg)), certIdKey(certIdOf(f.good, f.issuer, alg)));
  assert.notEqual(c.serialNumber.buffer, f.good.der.buffer, 'the serial is copied out, so the DER can be freed');
});

test('refuses certificates that are not DER field by field: an appended element, a padded serial, BER lengths', async () => {
  const { decode, encode, longFormOuterLength } = await import('./der-edit.js');
  const cert = f.pki.leaves.good.der;
  const bad = (n: ReturnType<typeof decode>) => assert.throws(() => parseCertificate(encode(n)), (e: unknown) => isStaplerError(e) && e.code === 'CERT_PARSE');
  const appended = decode(cert);
  appended.kids!.push({ tag: 0x05, bytes: new Uint8Array(0) });
  bad(appended);
  const inTbs = decode(cert);
  inTbs.kids![0]!.kids!.push({ tag: 0x05, bytes: new Uint8Array(0) });
  bad(inTbs);
  const padded = decode(cert);
  const serial = padded.kids![0]!.kids![1]!;
  serial.bytes = Uint8Array.from([0, ...serial.bytes!]);
  bad(padded);
  assert.throws(() => parseCertificate(longFormOuterLength(cert)), (e: unknown) => isStaplerError(e) && e.code === 'CERT_PARSE');
  assert.equal(parseCertificate(encode(decode(cert))).fingerprint, f.good.fingerprint);
});
