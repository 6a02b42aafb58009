import type { HashName } from './bytes.js';
import type { CertId } from './certid.js';
import { children, content, expect, oid, readTlv, TAG, type Tlv } from './der.js';
import { OID } from './oids.js';

/** Pieces shared by OCSP requests and responses (RFC 6960 §4.1.1, §4.4.1), read with the DER reader. */

const HASH_OIDS: Record<string, HashName> = { [OID.sha1]: 'sha1', [OID.sha256]: 'sha256' };

/** A CertID; undefined when its hash algorithm is one we do not index (SHA-1 and SHA-256 only). */
export function certIdAt(b: Uint8Array, t: Tlv | undefined): CertId | undefined {
  const [alg, nameHash, keyHash, serial] = children(b, expect(t, TAG.SEQUENCE, 'CertID'));
  const hashAlgorithm = HASH_OIDS[oid(b, children(b, expect(alg, TAG.SEQUENCE, 'hashAlgorithm'))[0]!)];
  const id = {
    issuerNameHash: content(b, expect(nameHash, TAG.OCTET_STRING, 'issuerNameHash')),
    issuerKeyHash: content(b, expect(keyHash, TAG.OCTET_STRING, 'issuerKeyHash')),
    serialNumber: content(b, expect(serial, TAG.INTEGER, 'serialNumber')),
  };
  return hashAlgorithm ? { hashAlgorithm, ...id } : undefined;
}

/** The extnValue content of extension `id` in an [n] EXPLICIT Extensions, if present. */
export function extensionValue(b: Uint8Array, wrapper: Tlv, id: string): Uint8Array | undefined {
  for (const ext of children(b, expect(readTlv(b, wrapper.body, wrapper.end), TAG.SEQUENCE, 'Extensions'))) {
    const f = children(b, expect(ext, TAG.SEQUENCE, 'Extension'));
    if (oid(b, f[0]!) !== id) continue;
    return content(b, expect(f[f.length - 1], TAG.OCTET_STRING, 'extnValue'));
  }
  return undefined;
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
