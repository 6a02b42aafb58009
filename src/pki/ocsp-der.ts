import type { HashName } from './bytes.js';
import type { CertId } from './certid.js';
import { boolean, content, DerError, expect, explicit, Fields, integerContent, nullValue, oid, readTlv, TAG, type Tlv } from './der.js';
import { OID } from './oids.js';

/** Pieces shared by OCSP requests and responses (RFC 6960 §4.1.1, §4.4.1), read with the DER reader. */

const HASH_OIDS: Record<string, HashName> = { [OID.sha1]: 'sha1', [OID.sha256]: 'sha256', [OID.sha384]: 'sha384', [OID.sha512]: 'sha512' };
const HASH_BYTES: Record<HashName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

/**
 * A CertID (RFC 6960 §4.1.1); undefined when its hash algorithm is not one we know (SHA-1, SHA-2). With a
 * known algorithm the parameters are NULL or absent (RFC 5754 §2: both occur) and both hashes have its size.
 */
export function certIdAt(b: Uint8Array, t: Tlv | undefined): CertId | undefined {
  const f = new Fields(b, expect(t, TAG.SEQUENCE, 'CertID'), 'CertID');
  const alg = new Fields(b, f.take(TAG.SEQUENCE, 'hashAlgorithm'), 'hashAlgorithm');
  const hashAlgorithm = HASH_OIDS[oid(b, alg.take(TAG.OID, 'algorithm'))];
  const params = alg.maybeAny();
  if (hashAlgorithm && params) nullValue(params, 'hashAlgorithm parameters');
  alg.end();
  const issuerNameHash = content(b, f.take(TAG.OCTET_STRING, 'issuerNameHash'));
  const issuerKeyHash = content(b, f.take(TAG.OCTET_STRING, 'issuerKeyHash'));
  const serialNumber = integerContent(b, f.take(TAG.INTEGER, 'serialNumber'));
  f.end();
  if (!hashAlgorithm) return undefined;
  const size = HASH_BYTES[hashAlgorithm];
  if (issuerNameHash.length !== size || issuerKeyHash.length !== size) throw new DerError(`CertID hashes are not ${hashAlgorithm} sized`);
  return { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber };
}

/** One Extension (RFC 5280 §4.1): the extnValue content is a view into the buffer. */
export interface Extension {
  id: string;
  critical: boolean;
  value: Uint8Array;
}

/**
 * The Extensions inside an [n] EXPLICIT wrapper: SEQUENCE SIZE (1..MAX) OF Extension, each OID at most once
 * (RFC 5280 §4.2). `critical` is BOOLEAN DEFAULT FALSE, so DER leaves FALSE out (X.690 §11.5); an explicit
 * FALSE is still accepted, because extensions only occur inside signed data (a CA's harmless habit cannot
 * be used to change bytes), and refusing it would refuse that CA's every response.
 */
export function extensionsIn(b: Uint8Array, wrapper: Tlv): Extension[] {
  const list = explicit(b, wrapper, TAG.SEQUENCE, 'Extensions');
  const out: Extension[] = [];
  for (let at = list.body; at < list.end; ) {
    const ext = readTlv(b, at, list.end);
    at = ext.end;
    const f = new Fields(b, expect(ext, TAG.SEQUENCE, 'Extension'), 'Extension');
    const id = oid(b, f.take(TAG.OID, 'extnID'));
    const critical = f.maybe(TAG.BOOLEAN);
    const value = content(b, f.take(TAG.OCTET_STRING, 'extnValue'));
    f.end();
    if (out.some((e) => e.id === id)) throw new DerError(`extension ${id} twice`);
    out.push({ id, critical: critical ? boolean(b, critical) : false, value });
  }
  if (out.length === 0) throw new DerError('empty Extensions');
  return out;
}

/** The extnValue content of extension `id` in an [n] EXPLICIT Extensions, if present. */
export function extensionValue(b: Uint8Array, wrapper: Tlv, id: string): Uint8Array | undefined {
  return extensionsIn(b, wrapper).find((e) => e.id === id)?.value;
}

/** RFC 8954 wraps the nonce in an inner OCTET STRING; older clients put raw bytes. Accept both. */
export function nonceValue(extnValue: Uint8Array): Uint8Array {
  try {
    const inner = readTlv(extnValue, 0);
    if (inner.tag === TAG.OCTET_STRING && inner.end === extnValue.length) return extnValue.slice(inner.body, inner.end);
  } catch {
    // not DER: the raw form
  }
  return extnValue.slice();
}
