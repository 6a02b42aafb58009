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
  // Real time (whole seconds): tests on the real clock need certificates valid now; fake clocks start here.
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
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
