import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildErrorResponse, buildSuccessfulResponse, type SignOptions } from '../../src/demo/ocsp-sign.js';
import { generateKey, issueCertificate } from '../../src/demo/ca.js';
import { parseCertificate } from '../../src/pki/certificate.js';
import { certIdOf } from '../../src/pki/certid.js';
import { verifyOcspResponse, type SignerMemo } from '../../src/pki/verify.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();
const MIN = 60_000;
const policy = { skewSeconds: 300, marginSeconds: 300 };

function respond(over: Partial<SignOptions> & { thisUpdate?: Date; nextUpdate?: Date | null; serialOf?: 'good' | 'revoked' } = {}): Uint8Array {
  const leaf = over.serialOf === 'revoked' ? f.revoked : f.good;
  const thisUpdate = over.thisUpdate ?? new Date(f.now.getTime() - MIN);
  const nextUpdate = over.nextUpdate === null ? undefined : (over.nextUpdate ?? new Date(thisUpdate.getTime() + 60 * MIN));
  return buildSuccessfulResponse({
    responses: [{ certId: f.certId(leaf), status: over.serialOf === 'revoked' ? { kind: 'revoked', at: new Date(f.now.getTime() - 10 * MIN), reason: 1 } : { kind: 'good' }, thisUpdate, ...(nextUpdate && { nextUpdate }) }],
    signer: over.signer ?? f.pki.ocspSigner,
    producedAt: f.now,
    ...(over.includeCerts && { includeCerts: over.includeCerts }),
    ...(over.responderIdBy && { responderIdBy: over.responderIdBy }),
    ...(over.nonce && { nonce: over.nonce }),
    ...(over.corruptSignature && { corruptSignature: true }),
    ...(over.responses && { responses: over.responses }),
  });
}

function verify(der: Uint8Array, extra: { nonce?: Uint8Array; now?: Date; memo?: SignerMemo } = {}) {
  return verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: extra.now ?? f.now, policy, nonce: extra.nonce, memo: extra.memo });
}

function rejects(der: Uint8Array, code: ErrorCode, extra: Parameters<typeof verify>[1] = {}) {
  assert.throws(() => verify(der, extra), (e: unknown) => {
    assert.ok(isStaplerError(e), `expected a StaplerError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

test('accepts a good response signed by a delegated responder, reporting its window', () => {
  const v = verify(respond());
  assert.deepEqual(v.status, { kind: 'good' });
  assert.equal(v.signer, 'delegate');
  assert.equal(v.thisUpdate.getTime(), f.now.getTime() - MIN);
  assert.equal(v.nextUpdate.getTime(), f.now.getTime() + 59 * MIN);
  assert.equal(v.singleCount, 1);
});

test('accepts a response signed by the issuer itself, with the responder named by key or by name', () => {
  for (const by of ['key', 'name'] as const) {
    const v = verify(respond({ signer: f.pki.issuer, includeCerts: [], responderIdBy: by }));
    assert.equal(v.signer, 'issuer', by);
  }
});

test('reports revoked with time and reason', () => {
  const der = respond({ serialOf: 'revoked' });
  const v = verifyOcspResponse({ der, leaf: f.revoked, issuer: f.issuer, now: f.now, policy });
  assert.equal(v.status.kind, 'revoked');
  assert.ok(v.status.kind === 'revoked' && v.status.at.getTime() === f.now.getTime() - 10 * MIN && v.status.reason === 1);
});

test('accepts a SHA-256 CertID', () => {
  const thisUpdate = new Date(f.now.getTime() - MIN);
  const der = respond({ responses: [{ certId: f.certId(f.good, 'sha256'), status: { kind: 'good' }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 60 * MIN) }] });
  assert.equal(verify(der).status.kind, 'good');
});

test('rejects a corrupted signature', () => rejects(respond({ corruptSignature: true }), 'OCSP_BAD_SIGNATURE'));

test('rejects a delegate without id-kp-OCSPSigning', () => {
  const noEku = issueCertificate({ subjectCN: 'no eku', notBefore: new Date(f.now.getTime() - 60 * MIN), notAfter: new Date(f.now.getTime() + 600 * MIN) }, f.pki.issuer);
  rejects(respond({ signer: noEku, includeCerts: [noEku] }), 'OCSP_SIGNER_NO_EKU');
});

test('rejects a delegate issued by another CA, even with the right EKU', () => {
  const otherCa = issueCertificate({ subjectCN: 'other CA', isCA: true, notBefore: new Date(f.now.getTime() - 600 * MIN), notAfter: new Date(f.now.getTime() + 6000 * MIN) }, 'self');
  const d = issueCertificate({ subjectCN: 'rogue responder', ekuOcspSigning: true, notBefore: new Date(f.now.getTime() - 60 * MIN), notAfter: new Date(f.now.getTime() + 600 * MIN) }, otherCa);
  rejects(respond({ signer: d, includeCerts: [d] }), 'OCSP_SIGNER_UNAUTHORIZED');
});

test('rejects a delegate that is not valid now', () => {
  const old = issueCertificate({ subjectCN: 'expired responder', ekuOcspSigning: true, notBefore: new Date(f.now.getTime() - 600 * MIN), notAfter: new Date(f.now.getTime() - 60 * MIN) }, f.pki.issuer);
  rejects(respond({ signer: old, includeCerts: [old] }), 'OCSP_SIGNER_EXPIRED');
});

test('rejects a delegate signature when the delegate certificate is not carried', () => {
  rejects(respond({ includeCerts: [] }), 'OCSP_SIGNER_NOT_FOUND');
});

test('rejects a response about another certificate', () => {
  rejects(respond({ serialOf: 'revoked' }), 'OCSP_CERTID_MISMATCH');
});

test('rejects thisUpdate beyond the allowed skew, accepts it within', () => {
  rejects(respond({ thisUpdate: new Date(f.now.getTime() + 10 * MIN) }), 'OCSP_THIS_UPDATE_FUTURE');
  assert.equal(verify(respond({ thisUpdate: new Date(f.now.getTime() + 2 * MIN) })).status.kind, 'good');
});

test('rejects a response without nextUpdate', () => rejects(respond({ nextUpdate: null }), 'OCSP_NEXT_UPDATE_MISSING'));

test('rejects nextUpdate in the past or inside the margin', () => {
  rejects(respond({ thisUpdate: new Date(f.now.getTime() - 120 * MIN), nextUpdate: new Date(f.now.getTime() - MIN) }), 'OCSP_EXPIRED');
  rejects(respond({ thisUpdate: new Date(f.now.getTime() - 60 * MIN), nextUpdate: new Date(f.now.getTime() + 4 * MIN) }), 'OCSP_EXPIRED'); // a 64-minute window: the full 5-minute margin
});

test('requires the nonce it sent to come back', () => {
  const nonce = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(verify(respond({ nonce }), { nonce }).status.kind, 'good');
  rejects(respond(), 'OCSP_NONCE_MISMATCH', { nonce });
  rejects(respond({ nonce: Uint8Array.from([9, 9]) }), 'OCSP_NONCE_MISMATCH', { nonce });
});

test('maps each OCSP error status to its own code', () => {
  const codes: Record<number, ErrorCode> = { 1: 'OCSP_STATUS_MALFORMED_REQUEST', 2: 'OCSP_STATUS_INTERNAL_ERROR', 3: 'OCSP_STATUS_TRY_LATER', 5: 'OCSP_STATUS_SIG_REQUIRED', 6: 'OCSP_STATUS_UNAUTHORIZED' };
  for (const [s, code] of Object.entries(codes)) rejects(buildErrorResponse(Number(s) as 1), code);
});

test('rejects garbage, truncated and trailing-data bodies as malformed', () => {
  const good = respond();
  rejects(new Uint8Array(Buffer.from('<html>oops</html>')), 'OCSP_MALFORMED');
  rejects(good.slice(0, good.length - 10), 'OCSP_MALFORMED');
  rejects(Buffer.concat([good, Buffer.from([0])]), 'OCSP_MALFORMED');
  rejects(new Uint8Array(0), 'OCSP_MALFORMED');
});

test('works with RSA keys as well as ECDSA', () => {
  const rsaCa = issueCertificate({ subjectCN: 'rsa CA', isCA: true, key: generateKey('rsa-2048'), notBefore: new Date(f.now.getTime() - 600 * MIN), notAfter: new Date(f.now.getTime() + 6000 * MIN) }, 'self');
  const leafCert = issueCertificate({ subjectCN: 'rsa leaf', notBefore: new Date(f.now.getTime() - 60 * MIN), notAfter: new Date(f.now.getTime() + 600 * MIN) }, rsaCa);
  const issuer = parseCertificate(rsaCa.der);
  const leaf = parseCertificate(leafCert.der);
  const thisUpdate = new Date(f.now.getTime() - MIN);
  const der = buildSuccessfulResponse({ responses: [{ certId: certIdOf(leaf, issuer, 'sha1'), status: { kind: 'good' }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 60 * MIN) }], signer: rsaCa, producedAt: f.now, includeCerts: [] });
  assert.equal(verifyOcspResponse({ der, leaf, issuer, now: f.now, policy }).signer, 'issuer');
});

test('a memoised delegate is still checked for time validity on every call', () => {
  const memo: SignerMemo = new Map();
  const der = respond();
  assert.equal(verify(der, { memo }).signer, 'delegate');
  assert.ok(memo.size > 0, 'the delegate was memoised');
  const signerNotAfter = parseCertificate(f.pki.ocspSigner.der).notAfter;
  const later = new Date(signerNotAfter.getTime() + MIN);
  assert.throws(() => verify(der, { memo, now: later }), (e: unknown) => isStaplerError(e) && ['OCSP_SIGNER_EXPIRED', 'OCSP_EXPIRED'].includes(e.code));
  // Re-signed with a window around `later`, the expired delegate must be refused by the memo path too.
  const fresh = respond({ thisUpdate: new Date(later.getTime() - MIN), nextUpdate: new Date(later.getTime() + 60 * MIN) });
  rejects(fresh, 'OCSP_SIGNER_EXPIRED', { memo, now: later });
});

test('a response valid for only 4 minutes verifies: the margin shrinks to a tenth of its window', () => {
  const thisUpdate = new Date(f.now.getTime() - 30_000);
  const v = verify(respond({ thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 4 * MIN) }));
  assert.equal(v.nextUpdate.getTime(), thisUpdate.getTime() + 4 * MIN);
  rejects(respond({ thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 4 * MIN) }), 'OCSP_EXPIRED', { now: new Date(thisUpdate.getTime() + 4 * MIN - 20_000) });
});

test('without nextUpdate: refused by default, valid for refresh.assumeValidity when set', () => {
  const der = respond({ nextUpdate: null });
  rejects(der, 'OCSP_NEXT_UPDATE_MISSING');
  const v = verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: f.now, policy: { ...policy, assumeValiditySeconds: 12 * 3600 } });
  assert.equal(v.nextUpdate.getTime(), f.now.getTime() - MIN + 12 * 3600_000);
  assert.equal(v.nextUpdateAssumed, true);
  assert.equal(verify(respond()).nextUpdateAssumed, undefined, 'a real nextUpdate is not assumed');
  assert.throws(() => verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: new Date(f.now.getTime() + 12 * 3600_000), policy: { ...policy, assumeValiditySeconds: 12 * 3600 } }), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_EXPIRED');
});
