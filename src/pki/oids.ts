/** Object identifiers staplerd decides on. */
export const OID = {
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  aia: '1.3.6.1.5.5.7.1.1',
  adOcsp: '1.3.6.1.5.5.7.48.1',
  ocspBasic: '1.3.6.1.5.5.7.48.1.1',
  ocspNonce: '1.3.6.1.5.5.7.48.1.2',
  ocspNoCheck: '1.3.6.1.5.5.7.48.1.5',
  tlsFeature: '1.3.6.1.5.5.7.1.24',
  extKeyUsage: '2.5.29.37',
  kpOcspSigning: '1.3.6.1.5.5.7.3.9',
  basicConstraints: '2.5.29.19',
} as const;
