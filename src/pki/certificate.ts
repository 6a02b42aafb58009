import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { StaplerError } from '../errors.js';
import { hash, own, toArrayBuffer, toHex } from './bytes.js';
import { OID } from './oids.js';

/**
 * What staplerd needs of a certificate, extracted once. No pkijs or native objects are kept, so
 * 100,000 of these stay small; the public key is created on demand by `publicKeyOf`.
 */
export interface CertInfo {
  readonly der: Uint8Array;
  /** Hex SHA-256 of the DER: the identity used for persisted staples (a renewed cert gets a new one). */
  readonly fingerprint: string;
  readonly serialNumber: Uint8Array;
  readonly serialHex: string;
  readonly subject: string;
  /** DER of this certificate's issuer Name (hashed into the CertID's issuerNameHash of its own CertID). */
  readonly issuerNameDer: Uint8Array;
  /** DER of this certificate's subject Name (hashed when this certificate is the issuer). */
  readonly subjectNameDer: Uint8Array;
  /** DER SubjectPublicKeyInfo. */
  readonly spkiDer: Uint8Array;
  /** Value of the subjectPublicKey BIT STRING: RFC 6960 §4.1.1 issuerKeyHash and byKey ResponderID hash it. */
  readonly publicKeyBits: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly ocspUrls: readonly string[];
  /** RFC 7633 TLS feature extension containing status_request (5). */
  readonly mustStaple: boolean;
  readonly isCA: boolean;
  readonly ekuOcspSigning: boolean;
  readonly ocspNoCheck: boolean;
}

export function parseCertificate(der: Uint8Array, source = 'certificate'): CertInfo {
  let cert: pkijs.Certificate;
  try {
    cert = pkijs.Certificate.fromBER(toArrayBuffer(der));
  } catch (cause) {
    throw new StaplerError('CERT_PARSE', source, { cause });
  }
  const exts = cert.extensions ?? [];
  const find = (oid: string) => exts.find((e) => e.extnID === oid);
  const spki = cert.subjectPublicKeyInfo;
  const x509 = new X509Certificate(der);
  return {
    der: own(der),
    fingerprint: toHex(hash('sha256', der)),
    serialNumber: own(cert.serialNumber.valueBlock.valueHexView),
    serialHex: toHex(cert.serialNumber.valueBlock.valueHexView),
    subject: x509.subject.split('\n').join(', '),
    issuerNameDer: own(cert.issuer.valueBeforeDecode),
    subjectNameDer: own(cert.subject.valueBeforeDecode),
    spkiDer: new Uint8Array(spki.toSchema().toBER()),
    publicKeyBits: own(spki.subjectPublicKey.valueBlock.valueHexView),
    notBefore: cert.notBefore.value,
    notAfter: cert.notAfter.value,
    ocspUrls: ocspUrlsOf(find(OID.aia)),
    mustStaple: hasStatusRequestFeature(find(OID.tlsFeature)),
    isCA: isCaOf(find(OID.basicConstraints)),
    ekuOcspSigning: ekuOf(find(OID.extKeyUsage)).includes(OID.kpOcspSigning),
    ocspNoCheck: find(OID.ocspNoCheck) !== undefined,
  };
}

function ocspUrlsOf(ext: pkijs.Extension | undefined): string[] {
  const parsed = ext?.parsedValue as pkijs.InfoAccess | undefined;
  if (!parsed?.accessDescriptions) return [];
  return parsed.accessDescriptions
    .filter((d) => d.accessMethod === OID.adOcsp && d.accessLocation.type === 6)
    .map((d) => String(d.accessLocation.value));
}

/** RFC 7633 §4.1: Features ::= SEQUENCE OF INTEGER; status_request is 5 (RFC 6066). */
function hasStatusRequestFeature(ext: pkijs.Extension | undefined): boolean {
  if (!ext) return false;
  const parsed = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView);
  if (parsed.offset === -1 || !(parsed.result instanceof asn1js.Sequence)) return false;
  return parsed.result.valueBlock.value.some((v) => v instanceof asn1js.Integer && v.valueBlock.valueDec === 5);
}

function isCaOf(ext: pkijs.Extension | undefined): boolean {
  const parsed = ext?.parsedValue as pkijs.BasicConstraints | undefined;
  return parsed?.cA === true;
}

function ekuOf(ext: pkijs.Extension | undefined): string[] {
  const parsed = ext?.parsedValue as pkijs.ExtKeyUsage | undefined;
  return parsed?.keyPurposes ?? [];
}

export function publicKeyOf(c: CertInfo): KeyObject {
  return createPublicKey({ key: Buffer.from(c.spkiDer), format: 'der', type: 'spki' });
}

/** True when `issuer`'s subject is `leaf`'s issuer and `issuer`'s key signed `leaf` (RFC 5280 §6.1.3). */
export function isIssuedBy(leaf: CertInfo, issuer: CertInfo): boolean {
  const l = new X509Certificate(leaf.der);
  const i = new X509Certificate(issuer.der);
  return l.checkIssued(i) && l.verify(i.publicKey);
}

/** Valid at `now` by its own dates. */
export function isTimeValid(c: CertInfo, now: Date): boolean {
  return c.notBefore.getTime() <= now.getTime() && now.getTime() <= c.notAfter.getTime();
}
