import { createDemoPki, type DemoPki } from '../../src/demo/ca.js';
import { parseCertificate, type CertInfo } from '../../src/pki/certificate.js';
import { certIdOf, type CertId } from '../../src/pki/certid.js';
import type { HashName } from '../../src/pki/bytes.js';

export interface Fixture {
  pki: DemoPki;
  now: Date;
  issuer: CertInfo;
  good: CertInfo;
  revoked: CertInfo;
  mustStaple: CertInfo;
  certId(leaf: CertInfo, alg?: HashName): CertId;
}

let cached: Fixture | undefined;

/** One throwaway PKI per test process (key generation dominates otherwise). */
export function fixture(): Fixture {
  if (cached) return cached;
  const now = new Date(Date.UTC(2026, 10, 24, 12, 0, 0));
  const pki = createDemoPki({ now, ocspUrl: 'http://127.0.0.1:9/' });
  const issuer = parseCertificate(pki.issuer.der);
  cached = {
    pki,
    now,
    issuer,
    good: parseCertificate(pki.leaves.good.der),
    revoked: parseCertificate(pki.leaves.revoked.der),
    mustStaple: parseCertificate(pki.leaves.mustStaple.der),
    certId: (leaf, alg = 'sha1') => certIdOf(leaf, issuer, alg),
  };
  return cached;
}
