/**
 * Differential test against OpenSSL's DER decoder (`openssl ocsp -respin`, full verification against the
 * demo chain): mutated responses that OpenSSL refuses, staplerd refuses too, and both accept the original.
 * A second set is BER that OpenSSL's decoder tolerates (long-form and indefinite lengths, trailing bytes,
 * NULL parameters after ECDSA): staplerd refuses those on purpose, because they are bytes outside the
 * signature that a stricter client (Go's encoding/asn1, HAProxy builds with other libraries) may choke on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import { readTlv, TAG } from '../../src/pki/der.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { isStaplerError } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';
import { at, encode, JUNK, longFormOuterLength, mutate } from './der-edit.js';

const f = fixture();
const thisUpdate = new Date(f.now.getTime() - 60_000);
const original = buildSuccessfulResponse({
  responses: [{ certId: f.certId(f.good), status: { kind: 'good' }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 3_600_000) }],
  signer: f.pki.ocspSigner,
  producedAt: f.now,
});

const bothRefuse: Record<string, Uint8Array> = {
  'element appended inside OCSPResponse': mutate(original, (r) => at.ocspResponse(r).kids!.push(JUNK)),
  'element appended inside ResponseBytes': mutate(original, (r) => at.responseBytes(r).kids!.push(JUNK)),
  'element appended inside BasicOCSPResponse': mutate(original, (r) => at.basic(r).kids!.push(JUNK)),
  'element appended inside a SingleResponse': mutate(original, (r) => at.single(r).kids!.push(JUNK)),
  'padded responseStatus ENUMERATED': mutate(original, (r) => (r.kids![0]!.bytes = Uint8Array.of(0, 0))),
  'ResponseBytes without its response': mutate(original, (r) => at.responseBytes(r).kids!.pop()),
  'signature BIT STRING with unused bits': mutate(original, (r) => {
    const sig = at.basic(r).kids![2]!;
    sig.bytes = Uint8Array.from([3, ...sig.bytes!.subarray(1)]);
  }),
};

const outer = readTlv(original, 0);
const opensslTolerates: Record<string, Uint8Array> = {
  'non-minimal long-form length': longFormOuterLength(original),
  'indefinite length': Uint8Array.from([0x30, 0x80, ...original.subarray(outer.body), 0, 0]),
  'trailing bytes after the OCSPResponse': Uint8Array.from([...original, 0, 0]),
  'trailing bytes inside the response OCTET STRING': mutate(original, (r) => {
    const os = at.responseBytes(r).kids![1]!;
    os.bytes = Uint8Array.from([...encode(os.wraps!), 0x05, 0x00]);
    delete os.wraps;
  }),
  'NULL parameters after ecdsa-with-SHA256': mutate(original, (r) => at.basic(r).kids![1]!.kids!.push({ tag: TAG.NULL, bytes: new Uint8Array(0) })),
};

function staplerd(der: Uint8Array): string {
  try {
    return verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300 } }).status.kind;
  } catch (e) {
    if (isStaplerError(e)) return e.code;
    throw e;
  }
}

function withOpenssl(run: (openssl: (der: Uint8Array) => { ok: boolean; out: string }) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'staplerd-der-diff-'));
  try {
    writeFileSync(join(dir, 'ca.pem'), f.pki.root.pem + f.pki.issuer.pem);
    writeFileSync(join(dir, 'issuer.pem'), f.pki.issuer.pem);
    writeFileSync(join(dir, 'leaf.pem'), f.pki.leaves.good.pem);
    run((der) => {
      writeFileSync(join(dir, 'r.der'), der);
      const args = ['ocsp', '-respin', join(dir, 'r.der'), '-issuer', join(dir, 'issuer.pem'), '-cert', join(dir, 'leaf.pem'), '-CAfile', join(dir, 'ca.pem')];
      const p = spawnSync('openssl', args, { encoding: 'utf8' });
      return { ok: p.status === 0 && /leaf\.pem: good/.test(p.stdout), out: `${p.stdout}${p.stderr}` };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('openssl and staplerd both accept the original response', () => {
  withOpenssl((openssl) => {
    assert.ok(openssl(original).ok, openssl(original).out);
    assert.equal(staplerd(original), 'good');
  });
});

test('openssl and staplerd both refuse mutated responses OpenSSL\'s strict templates catch', () => {
  withOpenssl((openssl) => {
    for (const [what, der] of Object.entries(bothRefuse)) {
      assert.equal(openssl(der).ok, false, `openssl accepted: ${what}`);
      assert.equal(staplerd(der), 'OCSP_MALFORMED', what);
    }
  });
});

test('staplerd refuses BER that OpenSSL\'s decoder tolerates (unsigned bytes outside DER)', () => {
  for (const [what, der] of Object.entries(opensslTolerates)) assert.equal(staplerd(der), 'OCSP_MALFORMED', what);
});
