/**
 * A throwaway PKI for tests, benchmarks and `staplerd demo`: root CA -> issuing CA -> leaves, plus a
 * delegated OCSP signer. Keys come from node:crypto, certificate structures from pkijs, and signing is
 * node's `crypto.sign` so nothing here needs WebCrypto or is async (except writing files).
 * Never use these certificates for anything real: keys are generated in-process and written unencrypted.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer, toHex } from '../pki/bytes.js';
import { OID } from '../pki/oids.js';
import { derToPem } from '../pki/pem.js';
import type { CertStatus } from './ocsp-sign.js';

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export type KeyKind = 'ec-p256' | 'rsa-2048';

export function generateKey(kind: KeyKind = 'ec-p256'): KeyPair {
  if (kind === 'rsa-2048') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

export interface CertSpec {
  subjectCN: string;
  /** INTEGER content octets; default 16 random bytes with the top bit clear (positive, RFC 5280 §4.1.2.2). */
  serial?: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  isCA?: boolean;
  /** AIA id-ad-ocsp URIs (RFC 5280 §4.2.2.1). */
  ocspUrls?: string[];
  /** RFC 7633 TLS Feature extension with status_request (5). */
  mustStaple?: boolean;
  ekuOcspSigning?: boolean;
  ekuServerAuth?: boolean;
  /** RFC 6960 §4.2.2.2.1 id-pkix-ocsp-nocheck. */
  ocspNoCheck?: boolean;
  dnsNames?: string[];
  /** Reuse a key (leaves may share one: generating keys dominates test time). */
  key?: KeyPair;
}

export interface IssuedCert {
  der: Uint8Array;
  pem: string;
  key: KeyPair;
  /** PKCS#8 PEM of the private key. */
  keyPem: string;
  /** Lowercase hex of the serial's INTEGER content octets. */
  serialHex: string;
  subjectCN: string;
}

const X509 = {
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  authorityKeyIdentifier: '2.5.29.35',
  kpServerAuth: '1.3.6.1.5.5.7.3.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
} as const;

/** KeyUsage bit positions (RFC 5280 §4.2.1.3). */
const KU = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

/** What we keep of an issuer to sign with: parsed once per IssuedCert (benchmarks issue many leaves). */
interface IssuerView {
  name: pkijs.RelativeDistinguishedNames;
  keyId: Uint8Array;
}
const issuerViews = new WeakMap<IssuedCert, IssuerView>();

function issuerView(c: IssuedCert): IssuerView {
  let v = issuerViews.get(c);
  if (!v) {
    const cert = pkijs.Certificate.fromBER(toArrayBuffer(c.der));
    v = { name: cert.subject, keyId: keyIdOf(cert.subjectPublicKeyInfo) };
    issuerViews.set(c, v);
  }
  return v;
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value. */
function keyIdOf(spki: pkijs.PublicKeyInfo): Uint8Array {
  return new Uint8Array(createHash('sha1').update(spki.subjectPublicKey.valueBlock.valueHexView).digest());
}

/** ecdsa-with-SHA256 has absent parameters (RFC 5758 §3.2); sha256WithRSAEncryption has NULL (RFC 4055 §5). */
export function signatureAlgorithmFor(key: KeyObject): pkijs.AlgorithmIdentifier {
  if (key.asymmetricKeyType === 'ec') return new pkijs.AlgorithmIdentifier({ algorithmId: X509.ecdsaWithSha256 });
  if (key.asymmetricKeyType === 'rsa') {
    return new pkijs.AlgorithmIdentifier({ algorithmId: X509.sha256WithRsa, algorithmParams: new asn1js.Null() });
  }
  throw new Error(`demo CA: unsupported key type ${String(key.asymmetricKeyType)}`);
}

function randomSerial(): Uint8Array {
  const s = new Uint8Array(randomBytes(16));
  s[0] = (s[0]! & 0x7f) || 0x01;
  return s;
}

function nameOf(cn: string): pkijs.RelativeDistinguishedNames {
  return new pkijs.RelativeDistinguishedNames({
    typesAndValues: [new pkijs.AttributeTypeAndValue({ type: X509.commonName, value: new asn1js.Utf8String({ value: cn }) })],
  });
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after; whole seconds only. */
function timeOf(d: Date): pkijs.Time {
  const value = new Date(Math.floor(d.getTime() / 1000) * 1000);
  return new pkijs.Time({ type: value.getUTCFullYear() < 2050 ? 0 : 1, value });
}

function ext(extnID: string, critical: boolean, value: asn1js.AsnType): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER() });
}

/** DER named bit list: trailing zero bits are dropped (X.690 §11.2.2). */
function keyUsageBits(bits: number[]): asn1js.BitString {
  const max = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(max / 8) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return new asn1js.BitString({ valueHex: toArrayBuffer(bytes), unusedBits: 7 - (max & 7) });
}

/** GeneralName with an IMPLICIT IA5String: [2] dNSName, [6] uniformResourceIdentifier (RFC 5280 §4.2.1.6). */
function ia5GeneralName(tag: 2 | 6, value: string): asn1js.Primitive {
  return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: tag }, valueHex: toArrayBuffer(Buffer.from(value, 'ascii')) });
}

function extensionsFor(spec: CertSpec, subjectKeyId: Uint8Array, authorityKeyId: Uint8Array): pkijs.Extension[] {
  const out: pkijs.Extension[] = [];
  if (spec.isCA) out.push(ext(OID.basicConstraints, true, new asn1js.Sequence({ value: [new asn1js.Boolean({ value: true })] })));
  const isRsa = spec.key?.publicKey.asymmetricKeyType === 'rsa';
  const ku = spec.isCA
    ? [KU.keyCertSign, KU.cRLSign, KU.digitalSignature]
    : isRsa && spec.ekuServerAuth ? [KU.digitalSignature, KU.keyEncipherment] : [KU.digitalSignature];
  out.push(ext(X509.keyUsage, true, keyUsageBits(ku)));
  const eku = [...(spec.ekuServerAuth ? [X509.kpServerAuth] : []), ...(spec.ekuOcspSigning ? [OID.kpOcspSigning] : [])];
  if (eku.length > 0) out.push(ext(OID.extKeyUsage, false, new asn1js.Sequence({ value: eku.map((o) => new asn1js.ObjectIdentifier({ value: o })) })));
  out.push(ext(X509.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: toArrayBuffer(subjectKeyId) })));
  // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
  const akiKeyId = new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: toArrayBuffer(authorityKeyId) });
  out.push(ext(X509.authorityKeyIdentifier, false, new asn1js.Sequence({ value: [akiKeyId] })));
  if (spec.dnsNames?.length) out.push(ext(X509.subjectAltName, false, new asn1js.Sequence({ value: spec.dnsNames.map((n) => ia5GeneralName(2, n)) })));
  if (spec.ocspUrls?.length) {
    const descriptions = spec.ocspUrls.map((u) => new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: OID.adOcsp }), ia5GeneralName(6, u)] }));
    out.push(ext(OID.aia, false, new asn1js.Sequence({ value: descriptions })));
  }
  // RFC 7633 §4.1: Features ::= SEQUENCE OF INTEGER; status_request is TLS extension 5 (RFC 6066).
  if (spec.mustStaple) out.push(ext(OID.tlsFeature, false, new asn1js.Sequence({ value: [new asn1js.Integer({ value: 5 })] })));
  // RFC 6960 §4.2.2.2.1: the extension value is NULL.
  if (spec.ocspNoCheck) out.push(ext(OID.ocspNoCheck, false, new asn1js.Null()));
  return out;
}

/** Issue a certificate signed by `issuer`'s key, or self-signed with the spec's own key. */
export function issueCertificate(spec: CertSpec, issuer: IssuedCert | 'self'): IssuedCert {
  const key = spec.key ?? generateKey();
  const full: CertSpec = { ...spec, key };
  const cert = new pkijs.Certificate();
  cert.version = 2; // v3
  const serial = spec.serial ?? randomSerial();
  cert.serialNumber = new asn1js.Integer({ valueHex: toArrayBuffer(serial) });
  cert.subject = nameOf(spec.subjectCN);
  cert.notBefore = timeOf(spec.notBefore);
  cert.notAfter = timeOf(spec.notAfter);
  const spkiDer = key.publicKey.export({ type: 'spki', format: 'der' });
  cert.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(toArrayBuffer(new Uint8Array(spkiDer)));
  const subjectKeyId = keyIdOf(cert.subjectPublicKeyInfo);
  const signer = issuer === 'self' ? { name: nameOf(spec.subjectCN), keyId: subjectKeyId } : issuerView(issuer);
  const signingKey = issuer === 'self' ? key.privateKey : issuer.key.privateKey;
  cert.issuer = signer.name;
  cert.extensions = extensionsFor(full, subjectKeyId, signer.keyId);
  // RFC 5280 §4.1.1.2: the outer signatureAlgorithm must equal the TBS `signature` field.
  cert.signature = signatureAlgorithmFor(signingKey);
  cert.signatureAlgorithm = signatureAlgorithmFor(signingKey);
  cert.tbsView = new Uint8Array(cert.encodeTBS().toBER());
  const sig = sign('sha256', cert.tbsView, signingKey);
  cert.signatureValue = new asn1js.BitString({ valueHex: toArrayBuffer(new Uint8Array(sig)) });
  const der = new Uint8Array(cert.toSchema(true).toBER());
  return {
    der,
    pem: derToPem(der),
    key,
    keyPem: key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    serialHex: toHex(serial),
    subjectCN: spec.subjectCN,
  };
}

export type DemoLeafName = 'good' | 'revoked' | 'mustStaple';

export interface DemoPki {
  root: IssuedCert;
  issuer: IssuedCert;
  /** Delegated responder (RFC 6960 §4.2.2.2): EKU OCSPSigning + ocsp-nocheck, issued by `issuer`. */
  ocspSigner: IssuedCert;
  leaves: Record<DemoLeafName, IssuedCert>;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** DNS label of each demo leaf: `<label>.demo.test`. */
export const DEMO_LEAF_LABELS: Record<DemoLeafName, string> = { good: 'good', revoked: 'revoked', mustStaple: 'must-staple' };

export function createDemoPki(opts: { now: Date; ocspUrl: string; leafKey?: KeyPair }): DemoPki {
  const now = opts.now.getTime();
  const caDates = { notBefore: new Date(now - DAY), notAfter: new Date(now + 3650 * DAY) };
  const root = issueCertificate({ subjectCN: 'staplerd demo root CA', isCA: true, ...caDates }, 'self');
  const issuer = issueCertificate({ subjectCN: 'staplerd demo issuing CA', isCA: true, ...caDates }, root);
  const ocspSigner = issueCertificate(
    { subjectCN: 'staplerd demo OCSP signer', notBefore: new Date(now - HOUR), notAfter: new Date(now + 90 * DAY), ekuOcspSigning: true, ocspNoCheck: true },
    issuer,
  );
  const leafKey = opts.leafKey ?? generateKey();
  const leaf = (name: DemoLeafName): IssuedCert => {
    const cn = `${DEMO_LEAF_LABELS[name]}.demo.test`;
    return issueCertificate(
      {
        subjectCN: cn, notBefore: new Date(now - HOUR), notAfter: new Date(now + 90 * DAY), ocspUrls: [opts.ocspUrl],
        ekuServerAuth: true, dnsNames: [cn, 'localhost'], mustStaple: name === 'mustStaple', key: leafKey,
      },
      issuer,
    );
  };
  return { root, issuer, ocspSigner, leaves: { good: leaf('good'), revoked: leaf('revoked'), mustStaple: leaf('mustStaple') } };
}

/** When the demo `revoked` leaf was revoked, relative to the PKI's `now` (shared by index.txt and demoStatuses). */
export function demoRevocationTime(now: Date): Date {
  return new Date(Math.floor(now.getTime() / 1000) * 1000 - 10 * 60_000);
}

/** RFC 5280 §5.3.1 CRLReason used for the demo revocation. */
export const DEMO_REVOCATION_REASON = 1; // keyCompromise

/** The truth for the demo responder: good, revoked (at `demoRevocationTime`), good. */
export function demoStatuses(pki: DemoPki, now: Date): Map<string, CertStatus> {
  return new Map([
    [pki.leaves.good.serialHex, { kind: 'good' }],
    [pki.leaves.revoked.serialHex, { kind: 'revoked', at: demoRevocationTime(now), reason: DEMO_REVOCATION_REASON }],
    [pki.leaves.mustStaple.serialHex, { kind: 'good' }],
  ]);
}

export interface DemoPkiFiles {
  dir: string;
  root: string;
  issuer: string;
  ocspSigner: string;
  ocspSignerKey: string;
  issuerKey: string;
  index: string;
  leaves: Record<DemoLeafName, { cert: string; key: string; chain: string }>;
}

/** `openssl ca` database time: YYMMDDHHMMSSZ. */
function caDbTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
}

function indexLine(cert: IssuedCert, revokedAt?: Date): string {
  const expiry = pkijs.Certificate.fromBER(toArrayBuffer(cert.der)).notAfter.value;
  // openssl ca index: status, expiry, revocation[,reason], serial (uppercase hex), file, subject DN.
  const revocation = revokedAt ? `${caDbTime(revokedAt)},keyCompromise` : '';
  const status = revokedAt ? 'R' : 'V';
  return [status, caDbTime(expiry), revocation, cert.serialHex.toUpperCase(), 'unknown', `/CN=${cert.subjectCN}`].join('\t');
}

/**
 * Write the PKI as PEM files plus an `openssl ocsp -index` database (the `revoked` leaf revoked at
 * `demoRevocationTime(now)`). Demo files nothing else reads while they change: plain writes are fine.
 */
export async function writeDemoPki(pki: DemoPki, dir: string, now: Date): Promise<DemoPkiFiles> {
  await mkdir(dir, { recursive: true });
  const p = (name: string) => join(dir, name);
  const write = (name: string, text: string, mode = 0o644) => writeFile(p(name), text, { mode });
  const leafFiles = {} as DemoPkiFiles['leaves'];
  const lines: string[] = [];
  for (const name of ['good', 'revoked', 'mustStaple'] as const) {
    const leaf = pki.leaves[name];
    await write(`${name}.pem`, leaf.pem);
    await write(`${name}.key`, leaf.keyPem, 0o600);
    await write(`${name}.chain.pem`, leaf.pem + pki.issuer.pem);
    leafFiles[name] = { cert: p(`${name}.pem`), key: p(`${name}.key`), chain: p(`${name}.chain.pem`) };
    lines.push(indexLine(leaf, name === 'revoked' ? demoRevocationTime(now) : undefined));
  }
  await write('root.pem', pki.root.pem);
  await write('issuer.pem', pki.issuer.pem);
  await write('issuer.key', pki.issuer.keyPem, 0o600);
  await write('ocsp-signer.pem', pki.ocspSigner.pem);
  await write('ocsp-signer.key', pki.ocspSigner.keyPem, 0o600);
  await write('index.txt', lines.join('\n') + '\n');
  await write('index.txt.attr', 'unique_subject = no\n');
  return {
    dir, root: p('root.pem'), issuer: p('issuer.pem'), issuerKey: p('issuer.key'), ocspSigner: p('ocsp-signer.pem'),
    ocspSignerKey: p('ocsp-signer.key'), index: p('index.txt'), leaves: leafFiles,
  };
}
