import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, sign } from 'node:crypto';
import { encodeOid, NULL_DER, readRoot, seq, tlv } from '../../src/pki/der.js';
import { algorithm, verifySignature } from '../../src/pki/signature.js';
import { isStaplerError } from '../../src/errors.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const data = Buffer.from('tbsResponseData stand-in');

/** AlgorithmIdentifier for RSASSA-PSS (RFC 4055 §3.1) with SHA-256, MGF1-SHA-256 and the given salt. */
function pssAlgorithm(saltLength: number, hashOid = '2.16.840.1.101.3.4.2.1'): Uint8Array {
  const hashAlg = seq(encodeOid(hashOid), NULL_DER);
  const params = seq(tlv(0xa0, hashAlg), tlv(0xa1, seq(encodeOid('1.2.840.113549.1.1.8'), hashAlg)), tlv(0xa2, tlv(0x02, Uint8Array.of(saltLength))));
  return seq(encodeOid('1.2.840.113549.1.1.10'), params);
}

test('verifies RSASSA-PSS signatures with the parameters the algorithm identifier gives', () => {
  const sig = sign('sha256', data, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  const der = pssAlgorithm(32);
  const alg = algorithm(der, readRoot(der));
  assert.equal(verifySignature(alg, data, sig, rsa.publicKey), true);
  assert.equal(verifySignature(alg, Buffer.from('tampered'), sig, rsa.publicKey), false);
  const wrongSalt = pssAlgorithm(20);
  assert.equal(verifySignature(algorithm(wrongSalt, readRoot(wrongSalt)), data, sig, rsa.publicKey), false, 'salt length is taken from the parameters');
});

test('an unknown algorithm is an error with its own code, a mismatched key a plain failure', () => {
  assert.throws(() => verifySignature({ oid: '1.2.3.4' }, data, Buffer.alloc(10), rsa.publicKey), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_UNSUPPORTED_ALGORITHM');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const sig = sign('sha256', data, rsa.privateKey);
  assert.equal(verifySignature({ oid: '1.2.840.10045.4.3.2' }, data, sig, ec.publicKey), false);
  const md5 = pssAlgorithm(20, '1.2.840.113549.2.5');
  assert.throws(() => verifySignature(algorithm(md5, readRoot(md5)), data, sig, rsa.publicKey), (e: unknown) => isStaplerError(e) && e.code === 'OCSP_UNSUPPORTED_ALGORITHM');
});
