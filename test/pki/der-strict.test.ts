import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import { parseOcspResponse } from '../../src/pki/response.js';
import { parseOcspRequest, buildOcspRequest } from '../../src/pki/request.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { DerError, readTlv, time, oid, TAG, tlv } from '../../src/pki/der.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { fixture } from '../helpers/pki.js';
import { at, decode, encode, JUNK, longFormOuterLength, mutate, type Node } from './der-edit.js';

const f = fixture();
const MIN = 60_000;
const policy = { skewSeconds: 300, marginSeconds: 300 };

function response(extra: { nonce?: Uint8Array } = {}): Uint8Array {
  const thisUpdate = new Date(f.now.getTime() - MIN);
  return buildSuccessfulResponse({
    responses: [{ certId: f.certId(f.good), status: { kind: 'revoked', at: new Date(f.now.getTime() - 10 * MIN), reason: 1 }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 60 * MIN) }],
    signer: f.pki.ocspSigner,
    producedAt: f.now,
    ...extra,
  });
}

const verify = (der: Uint8Array) => verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: f.now, policy });

function refused(der: Uint8Array, code: ErrorCode = 'OCSP_MALFORMED'): void {
  assert.throws(() => verify(der), (e: unknown) => {
    assert.ok(isStaplerError(e), `expected a StaplerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

const original = response();

test('the unmutated response verifies and re-encodes to the same bytes (the editor is faithful)', () => {
  assert.equal(verify(original).status.kind, 'revoked');
  assert.deepEqual(encode(decode(original)), original);
});

/** Mutations outside the signed ResponseData: the signature still verifies, so only strict DER stops them. */
const unsigned: Record<string, (r: Node) => void> = {
  'an element appended inside OCSPResponse': (r) => at.ocspResponse(r).kids!.push(JUNK),
  'an element appended inside ResponseBytes': (r) => at.responseBytes(r).kids!.push(JUNK),
  'an element appended inside BasicOCSPResponse': (r) => at.basic(r).kids!.push(JUNK),
  'an element appended inside the certs list wrapper': (r) => at.basic(r).kids![3]!.kids!.push(JUNK),
  'a padded responseStatus ENUMERATED': (r) => (at.ocspResponse(r).kids![0]!.bytes = Uint8Array.of(0, 0)),
  'a signature BIT STRING with unused bits': (r) => {
    const sig = at.basic(r).kids![2]!;
    sig.bytes = Uint8Array.from([3, ...sig.bytes!.subarray(1)]);
  },
  'NULL parameters on an ECDSA signatureAlgorithm': (r) => at.basic(r).kids![1]!.kids!.push({ tag: TAG.NULL, bytes: new Uint8Array(0) }),
  'bytes after the BasicOCSPResponse inside its OCTET STRING': (r) => {
    const os = at.responseBytes(r).kids![1]!;
    os.bytes = Uint8Array.from([...encode(os.wraps!), 0x05, 0x00]);
    delete os.wraps;
  },
  'a primitive responseBytes [0] tag': (r) => {
    const rb = r.kids![1]!;
    rb.tag = 0x80;
    rb.bytes = encode(rb.kids![0]!);
    delete rb.kids;
  },
};

for (const [what, change] of Object.entries(unsigned)) {
  test(`refuses ${what}, though the signature still covers the same ResponseData`, () => refused(mutate(original, change)));
}

test('refuses a non-minimal long-form length on the outer SEQUENCE', () => refused(longFormOuterLength(original)));

test('refuses trailing bytes after the OCSPResponse', () => refused(Uint8Array.from([...original, 0x00, 0x00])));

test('refuses an indefinite length', () => {
  const t = readTlv(original, 0);
  refused(Uint8Array.from([0x30, 0x80, ...original.subarray(t.body), 0x00, 0x00]));
});

test('refuses a successful status without responseBytes, and an undefined status', () => {
  refused(Uint8Array.from([0x30, 0x03, 0x0a, 0x01, 0x00]));
  refused(mutate(original, (r) => (r.kids![0]!.bytes = Uint8Array.of(4)))); // status 4 is not defined
});

test('refuses ResponseBytes without its response OCTET STRING', () => refused(mutate(original, (r) => at.responseBytes(r).kids!.pop())));

test('refuses fields out of order inside ResponseData', () => {
  refused(mutate(original, (r) => at.responseData(r).kids!.reverse()));
});

test('refuses an explicit version other than v1, and accepts an explicit v1 (signed, a DER-default habit)', () => {
  const withVersion = (v: number) => parseOcspResponse(mutate(original, (r) => at.responseData(r).kids!.unshift({ tag: 0xa0, kids: [{ tag: TAG.INTEGER, bytes: Uint8Array.of(v) }] })));
  assert.equal(withVersion(0).responses.length, 1);
  assert.throws(() => withVersion(1), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_MALFORMED');
});

test('refuses a SingleResponse with an extra element after its last field', () => refused(mutate(original, (r) => at.single(r).kids!.push(JUNK))));

test('refuses a revocation reason that is padded, negative or undefined', () => {
  const reason = (bytes: number[]) => mutate(original, (r) => (at.single(r).kids![1]!.kids![1]!.kids![0]!.bytes = Uint8Array.from(bytes)));
  for (const bytes of [[0, 1], [0xff], [7], [11]]) refused(reason(bytes));
  assert.equal(parseOcspResponse(reason([4])).responses[0]!.status.kind, 'revoked');
});

test('refuses a good status with content', () => {
  refused(mutate(original, (r) => Object.assign(at.single(r).kids![1]!, { tag: 0x80, kids: undefined, bytes: Uint8Array.of(0) })));
});

test('refuses a CertID whose serial INTEGER is padded or whose hashes have the wrong size', () => {
  refused(mutate(original, (r) => {
    const serial = at.single(r).kids![0]!.kids![3]!;
    serial.bytes = Uint8Array.from([0, ...serial.bytes!]);
  }));
  refused(mutate(original, (r) => (at.single(r).kids![0]!.kids![1]!.bytes = new Uint8Array(19))));
});

test('refuses a certificate in certs that is not DER throughout (unsigned bytes staplerd would pass on)', () => {
  const cert = f.pki.ocspSigner.der;
  const outer = readTlv(cert, 0);
  const tbs = readTlv(cert, outer.body);
  const len = tbs.end - tbs.body;
  // tbsCertificate's length in five octets with leading zeros: BER, not DER.
  const tbsBer = Uint8Array.from([0x30, 0x84, 0, 0, len >> 8, len & 0xff, ...cert.subarray(tbs.body, tbs.end)]);
  const ber = tlv(0x30, tbsBer, cert.subarray(tbs.end, outer.end));
  refused(mutate(original, (r) => (at.basic(r).kids![3]!.kids![0]!.kids![0] = { tag: 0x30, raw: ber })));
});

test('a nonce extension marked critical is known and accepted; other critical extensions are refused', () => {
  const critical = (id: number[]) => mutate(response({ nonce: Uint8Array.of(1, 2, 3) }), (r) => {
    const ext = at.responseData(r).kids![3]!.kids![0]!.kids![0]!;
    ext.kids![0]!.bytes = Uint8Array.from(id);
    ext.kids!.splice(1, 0, { tag: TAG.BOOLEAN, bytes: Uint8Array.of(0xff) });
  });
  const nonceOid = [0x2b, 6, 1, 5, 5, 7, 48, 1, 2];
  assert.deepEqual(parseOcspResponse(critical(nonceOid)).nonce, Uint8Array.of(1, 2, 3));
  assert.throws(() => parseOcspResponse(critical([0x2b, 6, 1, 5, 5, 7, 48, 1, 99])), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_CRITICAL_EXTENSION');
});

test('refuses a BOOLEAN other than 00 or FF and an extension listed twice', () => {
  const base = response({ nonce: Uint8Array.of(1, 2, 3) });
  const bool = mutate(base, (r) => at.responseData(r).kids![3]!.kids![0]!.kids![0]!.kids!.splice(1, 0, { tag: TAG.BOOLEAN, bytes: Uint8Array.of(1) }));
  assert.throws(() => parseOcspResponse(bool), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_MALFORMED');
  const twice = mutate(base, (r) => {
    const list = at.responseData(r).kids![3]!.kids![0]!;
    list.kids!.push(list.kids![0]!);
  });
  assert.throws(() => parseOcspResponse(twice), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_MALFORMED');
});

test('an unknown critical singleExtension is refused, a non-critical one is not', () => {
  const withExt = (critical: boolean) => mutate(original, (r) => at.single(r).kids!.push({ tag: 0xa1, kids: [{ tag: 0x30, kids: [{ tag: 0x30, kids: [
    { tag: TAG.OID, bytes: Uint8Array.of(0x2a, 3, 4) }, ...(critical ? [{ tag: TAG.BOOLEAN, bytes: Uint8Array.of(0xff) }] : []), { tag: 0x04, bytes: Uint8Array.of(5, 0) },
  ] }] }] }));
  assert.equal(parseOcspResponse(withExt(false)).responses.length, 1);
  assert.throws(() => parseOcspResponse(withExt(true)), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_CRITICAL_EXTENSION');
});

test('reads GeneralizedTime strictly: Z, seconds, real dates, DER fractions only', () => {
  const gt = (s: string) => time(tlv(TAG.GeneralizedTime, Buffer.from(s)), readTlv(tlv(TAG.GeneralizedTime, Buffer.from(s)), 0));
  assert.equal(gt('20240229235959Z').toISOString(), '2024-02-29T23:59:59.000Z');
  assert.equal(gt('20240101000000.5Z').getTime(), Date.UTC(2024, 0, 1, 0, 0, 0, 500));
  for (const bad of ['20240101000000.50Z', '20240101000000.Z', '20240101000000', '202401010000Z', '20240431000000Z', '20230229000000Z', '20240101240000Z', '20240101006000Z', '20240101000060Z', '20240101000000+0100', '20241301000000Z']) {
    assert.throws(() => gt(bad), DerError, bad);
  }
});

test('reads OBJECT IDENTIFIERs strictly: no 0x80 padding, no unfinished subidentifier', () => {
  const o = (bytes: number[]) => { const d = tlv(TAG.OID, Uint8Array.from(bytes)); return oid(d, readTlv(d, 0)); };
  assert.equal(o([0x2b, 6, 1, 5, 5, 7, 48, 1, 1]), '1.3.6.1.5.5.7.48.1.1');
  assert.throws(() => o([0x2b, 0x80, 6]), DerError);
  assert.throws(() => o([0x2b, 0x86]), DerError);
  assert.throws(() => o([]), DerError);
});

test('parses requests strictly too: a request with an element appended is malformed', () => {
  const req = buildOcspRequest([f.certId(f.good)]);
  assert.equal(parseOcspRequest(req).certIds.length, 1);
  const bad = mutate(req, (r) => r.kids![0]!.kids![0]!.kids![0]!.kids!.push(JUNK));
  assert.throws(() => parseOcspRequest(bad), (e: unknown) => isStaplerError(e) && e.code === 'REQUEST_MALFORMED');
  assert.throws(() => parseOcspRequest(longFormOuterLength(req)), (e: unknown) => isStaplerError(e) && e.code === 'REQUEST_MALFORMED');
});

test('fuzz: no inserted, deleted or changed byte anywhere yields a different response that still verifies', () => {
  // With a delegate certificate carried and a nonce, every region is covered: envelope, ResponseData,
  // signature, certs. Accepted bytes must be the original bytes (the property item 1 of issue 12 asks for).
  const der = response({ nonce: Uint8Array.of(9, 8, 7, 6) });
  const accepted = (b: Uint8Array): boolean => {
    try {
      verify(b);
      return true;
    } catch (e) {
      assert.ok(isStaplerError(e), `a ${String(e)} escaped the parser`);
      return false;
    }
  };
  const edit = fc.record({ at: fc.nat({ max: der.length }), kind: fc.constantFrom('flip', 'insert', 'delete'), byte: fc.integer({ min: 0, max: 255 }) });
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
      let b = Uint8Array.from(der);
      for (const e of edits) {
        const at = Math.min(e.at, b.length - 1);
        if (e.kind === 'flip') b[at] = b[at]! ^ (e.byte || 1);
        else if (e.kind === 'insert') b = Uint8Array.from([...b.subarray(0, e.at), e.byte, ...b.subarray(e.at)]);
        else b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1)]);
      }
      if (Buffer.from(b).equals(der)) return;
      assert.equal(accepted(b), false, `accepted a changed response: ${Buffer.from(b).toString('hex')}`);
    }),
    { numRuns: 1500 },
  );
});
