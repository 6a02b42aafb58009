import { bytesEqual, hash, toHex, type HashName } from './bytes.js';
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
 * Map key for a CertID. Serial bytes are taken as encoded (INTEGER content octets), which is what
 * clients copy from the certificate, so the same certificate always yields the same key.
 */
export function certIdKey(id: CertId): string {
  return `${id.hashAlgorithm}:${toHex(id.issuerNameHash)}:${toHex(id.issuerKeyHash)}:${toHex(id.serialNumber)}`;
}

export function certIdEqual(a: CertId, b: CertId): boolean {
  return (
    a.hashAlgorithm === b.hashAlgorithm &&
    bytesEqual(a.issuerNameHash, b.issuerNameHash) &&
    bytesEqual(a.issuerKeyHash, b.issuerKeyHash) &&
    bytesEqual(a.serialNumber, b.serialNumber)
  );
}
