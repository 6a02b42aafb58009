import { constants, verify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
import { StaplerError } from '../errors.js';
import { children, ctx, DerError, expect, Fields, nullValue, oid, readRoot, readTlv, smallInt, TAG, whole, type Tlv } from './der.js';

type VerifyKeyWithOptions = VerifyKeyObjectInput & { key: KeyObject };

/** Signature algorithms seen on OCSP responses, mapped to node:crypto digests (null: the key decides). */
const DIGEST: Record<string, string | null> = {
  '1.2.840.113549.1.1.5': 'sha1', // sha1WithRSAEncryption: still used by some private CAs
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha1', // ecdsa-with-SHA1
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null, // Ed25519 (RFC 8410)
  '1.3.101.113': null, // Ed448
};
const RSA_PSS = '1.2.840.113549.1.1.10';
const HASH_NAMES: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

export interface SignatureAlgorithm {
  oid: string;
  /** DER of the AlgorithmIdentifier parameters, when present (only RSASSA-PSS needs them). */
  paramsDer?: Uint8Array | undefined;
  /** The parameters were an explicit NULL (rather than absent). */
  nullParams?: boolean;
}

/** An AlgorithmIdentifier (RFC 5280 §4.1.1.2) read from DER: the OID and at most one parameters element. */
export function algorithm(b: Uint8Array, t: Tlv | undefined): SignatureAlgorithm {
  const f = new Fields(b, expect(t, TAG.SEQUENCE, 'AlgorithmIdentifier'), 'AlgorithmIdentifier');
  const id = oid(b, f.take(TAG.OID, 'algorithm'));
  const params = f.maybeAny();
  f.end();
  if (params?.tag === TAG.NULL) nullValue(params, 'parameters');
  return { oid: id, paramsDer: params && params.tag !== TAG.NULL ? whole(b, params) : undefined, nullParams: params?.tag === TAG.NULL };
}

/**
 * The parameters an OCSP response's signatureAlgorithm may carry, which the signature does not cover:
 * none for ECDSA (RFC 5758 §3.2) and EdDSA (RFC 8410 §3), NULL or none for PKCS #1 v1.5 (RFC 4055 §5 says
 * NULL and that absent must be accepted), RSASSA-PSS-params for PSS. Anything else would be unsigned bytes
 * served to clients.
 */
export function checkParameters(alg: SignatureAlgorithm): void {
  const pkcs1 = alg.oid.startsWith('1.2.840.113549.1.1.');
  const ok = alg.oid === RSA_PSS ? alg.paramsDer !== undefined : pkcs1 ? alg.paramsDer === undefined : alg.paramsDer === undefined && !alg.nullParams;
  if (!ok) throw new DerError(`signatureAlgorithm ${alg.oid} with parameters it does not take`);
}

/** How node:crypto verifies this algorithm: the digest (null when the key decides) and the key options. */
function plan(alg: SignatureAlgorithm, key: KeyObject): { digest: string | null; key: KeyObject | VerifyKeyWithOptions } {
  if (alg.oid === RSA_PSS) {
    const p = pssParams(alg.paramsDer);
    return { digest: p.hash, key: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: p.saltLength } };
  }
  const digest = DIGEST[alg.oid];
  if (digest === undefined) throw new StaplerError('OCSP_UNSUPPORTED_ALGORITHM', alg.oid);
  return { digest, key };
}

/** Verifies `sig` over `data` with `key`; false on mismatch, throws only for algorithms we do not know. */
export function verifySignature(alg: SignatureAlgorithm, data: Uint8Array, sig: Uint8Array, key: KeyObject): boolean {
  const p = plan(alg, key);
  try {
    return verify(p.digest, data, p.key, sig);
  } catch {
    // node throws on key/algorithm mismatch (e.g. an RSA OID with an EC key): that is a bad signature.
    return false;
  }
}

/**
 * verifySignature on libuv's thread pool: the public-key operation (~40 µs for P-256, more for RSA-4096)
 * runs beside the event loop instead of on it, so a burst of fetches keeps the loop serving staples and
 * reading responses while earlier ones are checked.
 */
export function verifySignatureAsync(alg: SignatureAlgorithm, data: Uint8Array, sig: Uint8Array, key: KeyObject): Promise<boolean> {
  const p = plan(alg, key);
  return new Promise((resolve) => {
    try {
      verify(p.digest, data, p.key, sig, (err, ok) => resolve(!err && ok));
    } catch {
      resolve(false);
    }
  });
}

/** RFC 4055 §3.1 RSASSA-PSS-params; defaults are SHA-1 and salt length 20. */
function pssParams(der: Uint8Array | undefined): { hash: string; saltLength: number } {
  let hashOid = '1.3.14.3.2.26';
  let saltLength = 20;
  if (der) {
    const root = readRoot(der);
    if (root.tag === TAG.SEQUENCE) {
      for (const f of children(der, root)) {
        const inner = readTlv(der, f.body, f.end);
        if (f.tag === ctx(0)) hashOid = oid(der, children(der, expect(inner, TAG.SEQUENCE, 'hashAlgorithm'))[0]!);
        else if (f.tag === ctx(2)) saltLength = smallInt(der, expect(inner, TAG.INTEGER, 'saltLength'));
      }
    }
  }
  const hash = HASH_NAMES[hashOid];
  if (!hash) throw new StaplerError('OCSP_UNSUPPORTED_ALGORITHM', `RSASSA-PSS with ${hashOid}`);
  return { hash, saltLength };
}
