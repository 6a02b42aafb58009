import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { buildSuccessfulResponse, type SingleSpec } from '../../src/demo/ocsp-sign.js';
import type { IssuedCert } from '../../src/demo/ca.js';
import { parseCertificate } from '../../src/pki/certificate.js';
import { encodeOid, TAG, tlv, seq } from '../../src/pki/der.js';
import { namesMatch } from '../../src/pki/names.js';
import { certIdKey } from '../../src/pki/certid.js';
import { buildOcspRequest, parseOcspRequest } from '../../src/pki/request.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import type { HashName } from '../../src/pki/bytes.js';
import { fixture } from '../helpers/pki.js';
import { at, decode, encode, mutate, type Node } from './der-edit.js';

const f = fixture();
const MIN = 60_000;
const policy = { skewSeconds: 300, marginSeconds: 300 };
const thisUpdate = new Date(f.now.getTime() - MIN);
const nextUpdate = new Date(thisUpdate.getTime() + 60 * MIN);
const single = (over: Partial<SingleSpec> = {}, alg: HashName = 'sha1'): SingleSpec => ({ certId: f.certId(f.good, alg), status: { kind: 'good' }, thisUpdate, nextUpdate, ...over });
const build = (responses: SingleSpec[], signer: IssuedCert = f.pki.ocspSigner, by: 'key' | 'name' = 'key') =>
  buildSuccessfulResponse({ responses, signer, producedAt: f.now, responderIdBy: by, ...(signer === f.pki.issuer && { includeCerts: [] }) });
const verify = (der: Uint8Array, issuer = f.issuer) => verifyOcspResponse({ der, leaf: f.good, issuer, now: f.now, policy });

function refused(der: Uint8Array, code: ErrorCode, issuer = f.issuer): void {
  assert.throws(() => verify(der, issuer), (e: unknown) => {
    assert.ok(isStaplerError(e), String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** Edits the signed ResponseData, then signs it again with `signer`'s key: a CA that encodes things its own way. */
function resigned(der: Uint8Array, signer: IssuedCert, change: (responseData: Node) => void): Uint8Array {
  return mutate(der, (r) => {
    change(at.responseData(r));
    const sig = sign('sha256', encode(at.responseData(r)), signer.key.privateKey);
    at.basic(r).kids![2]!.bytes = Uint8Array.from([0, ...sig]);
  });
}

/** The issuer's subject Name with every string value re-typed and re-cased. */
function reencodedName(nameDer: Uint8Array, tag: number, text: (s: string) => string): Node {
  const name = decode(nameDer);
  for (const rdn of name.kids!) for (const atv of rdn.kids!) {
    const v = atv.kids![1]!;
    v.bytes = new Uint8Array(Buffer.from(text(Buffer.from(v.bytes!).toString('utf8')), 'utf8'));
    v.tag = tag;
  }
  return name;
}

test('refuses two SingleResponses for the certificate that disagree, instead of reading the first', () => {
  refused(build([single(), single({ status: { kind: 'revoked', at: new Date(f.now.getTime() - 10 * MIN) } })]), 'OCSP_CERTID_AMBIGUOUS');
  refused(build([single(), single({ nextUpdate: new Date(nextUpdate.getTime() + MIN) }, 'sha256')]), 'OCSP_CERTID_AMBIGUOUS');
});

test('accepts two SingleResponses for the certificate that agree (SHA-1 and SHA-256 forms)', () => {
  assert.equal(verify(build([single(), single({}, 'sha256')])).status.kind, 'good');
});

test('accepts SHA-384 and SHA-512 CertIDs in responses and requests', () => {
  for (const alg of ['sha384', 'sha512'] as const) {
    assert.equal(verify(build([single({}, alg)])).status.kind, 'good', alg);
    const req = parseOcspRequest(buildOcspRequest([f.certId(f.good, alg)]));
    assert.equal(req.certIds[0]?.hashAlgorithm, alg);
  }
  // Map keys keep the forms apart: a SHA-384 request never finds a staple held in another form.
  const keys = (['sha1', 'sha256', 'sha384', 'sha512'] as const).map((a) => certIdKey(f.certId(f.good, a))[0]);
  assert.deepEqual(keys, ['A', 'B', 'C', 'D']);
});

test('matches a byName responder ID written in another string type, case and spacing (RFC 5280 §7.1)', () => {
  const original = build([single()], f.pki.issuer, 'name');
  const shouted = resigned(original, f.pki.issuer, (rd) => {
    rd.kids![0] = { tag: 0xa1, kids: [reencodedName(f.issuer.subjectNameDer, TAG.PrintableString, (s) => `  ${s.toUpperCase().replace(/ /g, '   ')} `)] };
  });
  assert.notDeepEqual(shouted, original);
  assert.equal(verify(shouted).signer, 'issuer');
  const other = resigned(original, f.pki.issuer, (rd) => {
    rd.kids![0] = { tag: 0xa1, kids: [reencodedName(f.issuer.subjectNameDer, TAG.UTF8String, (s) => `${s}x`)] };
  });
  refused(other, 'OCSP_SIGNER_NOT_FOUND');
});

test('refuses to verify for an issuer whose name the leaf does not carry', () => {
  refused(build([single()]), 'ISSUER_MISMATCH', parseCertificate(f.pki.root.der));
});

const cn = (value: Uint8Array, tag: number) => seq(tlv(TAG.SET, seq(encodeOid('2.5.4.3'), tlv(tag, value))));
const txt = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

test('namesMatch: string types, case and insignificant space match; types, order and values decide', () => {
  assert.ok(namesMatch(cn(txt('Example CA'), TAG.PrintableString), cn(txt('  example   ca '), TAG.UTF8String)));
  assert.ok(namesMatch(cn(txt('Ünïcode CA'), TAG.UTF8String), cn(new Uint8Array(Buffer.from('üNÏCODE CA', 'utf16le').swap16()), TAG.BMPString)));
  assert.ok(!namesMatch(cn(txt('Example CA'), TAG.PrintableString), cn(txt('Example CB'), TAG.PrintableString)));
  const two = (a: Uint8Array, b: Uint8Array) => seq(tlv(TAG.SET, a), tlv(TAG.SET, b));
  const o = seq(encodeOid('2.5.4.10'), tlv(TAG.UTF8String, txt('Org')));
  const c = seq(encodeOid('2.5.4.3'), tlv(TAG.UTF8String, txt('Name')));
  assert.ok(namesMatch(two(o, c), two(o, c)));
  assert.ok(!namesMatch(two(o, c), two(c, o)), 'RDN order matters');
  assert.ok(namesMatch(seq(tlv(TAG.SET, o, c)), seq(tlv(TAG.SET, c, o))), 'attributes inside one RDN form a set');
  const ou = seq(encodeOid('2.5.4.11'), tlv(TAG.UTF8String, txt('Org')));
  assert.ok(!namesMatch(seq(tlv(TAG.SET, o)), seq(tlv(TAG.SET, ou))), 'attribute types must be equal');
  assert.ok(!namesMatch(seq(tlv(TAG.SET, o)), Uint8Array.of(0x30, 0x05, 1)), 'an unreadable name matches nothing');
});
