import { createHash } from 'node:crypto';
import { bytesEqual, hash, type HashName } from './bytes.js';
import { parseCertificate, type CertInfo } from './certificate.js';

export type { HashName } from './bytes.js';

/** RFC 6960 §4.1.1 CertID. */
export interface CertId {
  hashAlgorithm: HashName;
  issuerNameHash: Uint8Array;
  issuerKeyHash: Uint8Array;
  serialNumber: Uint8Array;
}

type IssuerHashes = { name: Uint8Array; key: Uint8Array };
const issuerHashes = new WeakMap<CertInfo, Partial<Record<HashName, IssuerHashes>>>();

/** An issuer's name and key hashes, computed once per issuer and algorithm (every request and check needs them). */
function hashesOf(issuer: CertInfo, alg: HashName): IssuerHashes {
  let byAlg = issuerHashes.get(issuer);
  if (!byAlg) issuerHashes.set(issuer, (byAlg = {}));
  return (byAlg[alg] ??= { name: hash(alg, issuer.subjectNameDer), key: hash(alg, issuer.publicKeyBits) });
}

/**
 * The CertID of `leaf` under `issuer` (RFC 6960 §4.1.1): hashes of the issuer's Name DER as the leaf
 * carries it and of the issuer's public key bits, and the leaf's serial. The hashes are shared per issuer
 * when the leaf's issuer Name is byte-equal to the issuer's subject (always, in a well-formed chain).
 */
export function certIdOf(leaf: CertInfo, issuer: CertInfo, alg: HashName): CertId {
  const memo = hashesOf(issuer, alg);
  return {
    hashAlgorithm: alg,
    issuerNameHash: bytesEqual(leaf.issuerNameDer, issuer.subjectNameDer) ? memo.name : hash(alg, leaf.issuerNameDer),
    issuerKeyHash: memo.key,
    serialNumber: leaf.serialNumber,
  };
}

export function computeCertId(leafDer: Uint8Array, issuerDer: Uint8Array, alg: HashName): CertId {
  return certIdOf(parseCertificate(leafDer, 'leaf'), parseCertificate(issuerDer, 'issuer'), alg);
}

/**
 * Map key for a CertID: a 138-bit digest of the CertID's content octets (name hash, key hash, serial as
 * encoded, which is what clients copy from the certificate) with the hash algorithm in the first character
 * ('A' SHA-1, 'B' SHA-256, 'C' SHA-384, 'D' SHA-512), 24 characters of base64. Two per certificate are held
 * for its whole life, so the key is short (not the ~170 characters of the hex fields) and one flat string.
 * The digest is far beyond accidental collision, and a staple found by a crafted collision would still
 * carry the other certificate's CertID, which the client checks (RFC 6960 §4.2.2.3).
 */
export function certIdKey(id: CertId): string {
  const d = createHash('sha256').update(id.issuerNameHash).update(id.issuerKeyHash).update(id.serialNumber).digest();
  // The top six bits of the first byte become the first base64 character.
  d[0] = (KEY_PREFIX[id.hashAlgorithm] << 2) | (d[0]! & 3);
  return d.toString('base64', 0, 18);
}

const KEY_PREFIX: Record<HashName, number> = { sha1: 0, sha256: 1, sha384: 2, sha512: 3 };
/**
 * The form a certIdKey of an indexed staple was made for. Staples are held in the SHA-1 and SHA-256 forms
 * only, so a key found in the index is one of those; SHA-384/SHA-512 keys ('C', 'D') are never indexed.
 */
export function algOfKey(key: string): 'sha1' | 'sha256' {
  return key.charCodeAt(0) === 0x41 ? 'sha1' : 'sha256';
}

export function certIdEqual(a: CertId, b: CertId): boolean {
  return (
    a.hashAlgorithm === b.hashAlgorithm &&
    bytesEqual(a.issuerNameHash, b.issuerNameHash) &&
    bytesEqual(a.issuerKeyHash, b.issuerKeyHash) &&
    bytesEqual(a.serialNumber, b.serialNumber)
  );
}
