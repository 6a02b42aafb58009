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

/** The CertID of `leaf` under `issuer`: hashes of the issuer's Name DER and public key bits, leaf serial. */
export function certIdOf(leaf: CertInfo, issuer: CertInfo, alg: HashName): CertId {
  return {
    hashAlgorithm: alg,
    issuerNameHash: hash(alg, leaf.issuerNameDer),
    issuerKeyHash: hash(alg, issuer.publicKeyBits),
    serialNumber: leaf.serialNumber,
  };
}

export function computeCertId(leafDer: Uint8Array, issuerDer: Uint8Array, alg: HashName): CertId {
  return certIdOf(parseCertificate(leafDer, 'leaf'), parseCertificate(issuerDer, 'issuer'), alg);
}

/**
 * Map key for a CertID: the hash algorithm and a 144-bit digest of the CertID's content octets (name hash,
 * key hash, serial as encoded, which is what clients copy from the certificate). Two per certificate are
 * held for its whole life, so the key is short (25 characters, not the ~170 of the hex fields); the digest
 * is far beyond accidental collision, and a staple found by a crafted collision would still carry the other
 * certificate's CertID, which the client checks (RFC 6960 §4.2.2.3).
 */
export function certIdKey(id: CertId): string {
  const d = createHash('sha256').update(id.issuerNameHash).update(id.issuerKeyHash).update(id.serialNumber).digest();
  return (id.hashAlgorithm === 'sha1' ? '1' : '2') + d.toString('base64', 0, 18);
}

export function certIdEqual(a: CertId, b: CertId): boolean {
  return (
    a.hashAlgorithm === b.hashAlgorithm &&
    bytesEqual(a.issuerNameHash, b.issuerNameHash) &&
    bytesEqual(a.issuerKeyHash, b.issuerKeyHash) &&
    bytesEqual(a.serialNumber, b.serialNumber)
  );
}
