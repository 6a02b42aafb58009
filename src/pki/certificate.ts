import { createPublicKey, type KeyObject } from 'node:crypto';
import { StaplerError } from '../errors.js';
import { bytesEqual, hash, toHex } from './bytes.js';
import { bitString, children, content, ctx, expect, Fields, integerContent, oid, readRoot, readTlv, time, TAG, whole, type Tlv } from './der.js';
import { namesMatch } from './names.js';
import { OID } from './oids.js';
import { algorithm, verifySignature } from './signature.js';

/**
 * What staplerd needs of a certificate, extracted once with a plain DER walk (RFC 5280 §4.1). No parser
 * objects are kept, so 100,000 of these stay small; the public key is created on demand by `publicKeyOf`.
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
  /** notAfter in epoch ms (checked on every refresh and readiness pass, without a Date each time). */
  readonly notAfterMs: number;
  readonly ocspUrls: readonly string[];
  /** RFC 7633 TLS feature extension containing status_request (5). */
  readonly mustStaple: boolean;
  readonly isCA: boolean;
  readonly ekuOcspSigning: boolean;
  readonly ocspNoCheck: boolean;
}

interface Parts {
  tbs: Tlv;
  alg: Tlv;
  sig: Tlv;
  serial: Tlv;
  issuer: Tlv;
  validity: Tlv;
  subject: Tlv;
  spki: Tlv;
  extensions: Tlv | undefined;
}

/**
 * Certificate and TBSCertificate (RFC 5280 §4.1) field by field, in order, nothing after the last field:
 * certificate files are as hostile as OCSP responses. Only the structure is enforced here, not every
 * extension's contents (those are signed, and OpenSSL reads them for nginx and HAProxy anyway).
 */
function parts(der: Uint8Array): Parts {
  const cert = new Fields(der, expect(readRoot(der), TAG.SEQUENCE, 'Certificate'), 'Certificate');
  const tbs = cert.take(TAG.SEQUENCE, 'tbsCertificate');
  const alg = cert.take(TAG.SEQUENCE, 'signatureAlgorithm');
  const sig = cert.take(TAG.BIT_STRING, 'signatureValue');
  cert.end();
  const f = new Fields(der, tbs, 'TBSCertificate');
  f.maybe(ctx(0)); // version [0] EXPLICIT
  const serial = f.take(TAG.INTEGER, 'serialNumber');
  f.take(TAG.SEQUENCE, 'signature');
  const issuer = f.take(TAG.SEQUENCE, 'issuer');
  const validity = f.take(TAG.SEQUENCE, 'validity');
  const subject = f.take(TAG.SEQUENCE, 'subject');
  const spki = f.take(TAG.SEQUENCE, 'subjectPublicKeyInfo');
  f.maybe(ctx(1, false)); // issuerUniqueID
  f.maybe(ctx(2, false)); // subjectUniqueID
  const extensions = f.maybe(ctx(3));
  f.end();
  return { tbs, alg, sig, serial, issuer, validity, subject, spki, extensions };
}

export function parseCertificate(input: Uint8Array, source = 'certificate'): CertInfo {
  const der = input.slice(); // own copy: the input may be a view into a larger buffer
  try {
    const { serial, issuer, validity, subject, spki, extensions } = parts(der);
    const v = new Fields(der, validity, 'Validity');
    const nb = v.any('notBefore');
    const na = v.any('notAfter');
    v.end();
    const [, pk] = children(der, spki);
    const exts = extensionsOf(der, extensions);
    // A padded serial is refused by OpenSSL too (c2i_ibuf "illegal padding"): nginx could not load it either.
    const serialNumber = integerContent(der, serial);
    const notAfter = time(der, na);
    return {
      der,
      fingerprint: toHex(hash('sha256', der)),
      serialNumber,
      serialHex: toHex(serialNumber),
      subject: nameToString(der, subject),
      issuerNameDer: whole(der, issuer),
      subjectNameDer: whole(der, subject),
      spkiDer: whole(der, spki),
      publicKeyBits: bitString(der, pk!),
      notBefore: time(der, nb),
      notAfter,
      notAfterMs: notAfter.getTime(),
      ocspUrls: ocspUrlsOf(der, exts.get(OID.aia)),
      mustStaple: hasStatusRequestFeature(der, exts.get(OID.tlsFeature)),
      isCA: isCaOf(der, exts.get(OID.basicConstraints)),
      ekuOcspSigning: ekuOf(der, exts.get(OID.extKeyUsage)).includes(OID.kpOcspSigning),
      ocspNoCheck: exts.has(OID.ocspNoCheck),
    };
  } catch (cause) {
    if (cause instanceof StaplerError) throw cause;
    throw new StaplerError('CERT_PARSE', `${source}: ${(cause as Error).message}`, { cause });
  }
}

/** Extension OID → the TLV inside its extnValue OCTET STRING. */
function extensionsOf(der: Uint8Array, wrapper: Tlv | undefined): Map<string, Tlv | undefined> {
  const out = new Map<string, Tlv | undefined>();
  if (!wrapper) return out;
  for (const ext of children(der, expect(readTlv(der, wrapper.body, wrapper.end), TAG.SEQUENCE, 'Extensions'))) {
    const f = children(der, expect(ext, TAG.SEQUENCE, 'Extension'));
    const value = expect(f[f.length - 1], TAG.OCTET_STRING, 'extnValue');
    out.set(oid(der, f[0]!), value.end > value.body ? readTlv(der, value.body, value.end) : undefined);
  }
  return out;
}

/** RFC 5280 §4.2.2.1: AccessDescription { accessMethod, accessLocation GeneralName }; URI is [6] IA5String. */
function ocspUrlsOf(der: Uint8Array, t: Tlv | undefined): string[] {
  if (!t) return [];
  const urls: string[] = [];
  for (const ad of children(der, expect(t, TAG.SEQUENCE, 'AuthorityInfoAccess'))) {
    const [method, location] = children(der, ad);
    if (oid(der, method!) === OID.adOcsp && location?.tag === ctx(6, false)) urls.push(Buffer.from(content(der, location)).toString('latin1'));
  }
  return urls;
}

/** RFC 7633 §4.1: Features ::= SEQUENCE OF INTEGER; status_request is 5 (RFC 6066). */
function hasStatusRequestFeature(der: Uint8Array, t: Tlv | undefined): boolean {
  if (!t || t.tag !== TAG.SEQUENCE) return false;
  return children(der, t).some((i) => i.tag === TAG.INTEGER && i.end - i.body === 1 && der[i.body] === 5);
}

function isCaOf(der: Uint8Array, t: Tlv | undefined): boolean {
  const first = t && t.tag === TAG.SEQUENCE ? children(der, t)[0] : undefined;
  return first?.tag === TAG.BOOLEAN && der[first.body] !== 0;
}

function ekuOf(der: Uint8Array, t: Tlv | undefined): string[] {
  return t && t.tag === TAG.SEQUENCE ? children(der, t).map((o) => oid(der, o)) : [];
}

const SHORT: Record<string, string> = {
  '2.5.4.3': 'CN', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU',
  '2.5.4.5': 'serialNumber', '1.2.840.113549.1.9.1': 'emailAddress', '0.9.2342.19200300.100.1.25': 'DC',
};

/** "CN=www.example, O=Example" in encoding order, for people (never compared). */
function nameToString(der: Uint8Array, name: Tlv): string {
  // Pieces joined once: one flat string, not a chain of concatenations held for the certificate's life.
  const out: string[] = [];
  for (const rdn of children(der, name)) {
    for (const atv of children(der, rdn)) {
      const [type, value] = children(der, atv);
      const o = oid(der, type!);
      const raw = content(der, value!);
      const text = value!.tag === TAG.BMPString ? Buffer.from(raw).swap16().toString('utf16le') : Buffer.from(raw).toString(value!.tag === TAG.UTF8String ? 'utf8' : 'latin1');
      if (out.length > 0) out.push(', ');
      out.push(SHORT[o] ?? o, '=', text);
    }
  }
  return out.join('');
}

const NONE = new Uint8Array(0);

/**
 * What a served certificate keeps once it has been proven to be issued by its issuer: its CertID inputs and
 * identity, not its DER or key. The issuer Name is the issuer's own bytes when equal (always, in a good
 * chain), the serial is kept as hex only, the dates as numbers, the OCSP URL list shared with every leaf
 * naming the same URLs: at 100,000 certificates each byte array or Date per leaf costs ~10-20 MB. Such a
 * CertInfo cannot be an issuer, a signer or checked again by isIssuedBy.
 */
export function compactLeaf(c: CertInfo, issuer?: CertInfo): CertInfo {
  return new CompactLeaf(c, issuer);
}

class CompactLeaf implements CertInfo {
  readonly fingerprint: string;
  readonly serialHex: string;
  readonly subject: string;
  readonly issuerNameDer: Uint8Array;
  readonly notAfterMs: number;
  readonly #notBeforeMs: number;
  readonly ocspUrls: readonly string[];
  readonly mustStaple: boolean;
  readonly isCA: boolean;
  readonly ekuOcspSigning: boolean;
  readonly ocspNoCheck: boolean;

  constructor(c: CertInfo, issuer: CertInfo | undefined) {
    this.fingerprint = c.fingerprint;
    this.serialHex = c.serialHex;
    this.subject = c.subject;
    this.issuerNameDer = issuer && bytesEqual(c.issuerNameDer, issuer.subjectNameDer) ? issuer.subjectNameDer : c.issuerNameDer.slice();
    this.notAfterMs = c.notAfterMs;
    this.#notBeforeMs = c.notBefore.getTime();
    this.ocspUrls = sharedUrls(c.ocspUrls);
    this.mustStaple = c.mustStaple;
    this.isCA = c.isCA;
    this.ekuOcspSigning = c.ekuOcspSigning;
    this.ocspNoCheck = c.ocspNoCheck;
  }

  get der(): Uint8Array {
    return NONE;
  }
  get subjectNameDer(): Uint8Array {
    return NONE;
  }
  get spkiDer(): Uint8Array {
    return NONE;
  }
  get publicKeyBits(): Uint8Array {
    return NONE;
  }
  /** The INTEGER content octets, rebuilt from hex for each request (a few per day per certificate). */
  get serialNumber(): Uint8Array {
    return new Uint8Array(Buffer.from(this.serialHex, 'hex'));
  }
  get notBefore(): Date {
    return new Date(this.#notBeforeMs);
  }
  get notAfter(): Date {
    return new Date(this.notAfterMs);
  }
}

/** OCSP URL lists, one frozen array per distinct list: thousands of leaves name the same responder. */
const urlLists = new Map<string, readonly string[]>();
const MAX_URL_LISTS = 4096;

function sharedUrls(urls: readonly string[]): readonly string[] {
  if (urls.length === 0) return NO_URLS;
  const key = urls.join('\n');
  let shared = urlLists.get(key);
  if (!shared) {
    if (urlLists.size >= MAX_URL_LISTS) urlLists.clear();
    urlLists.set(key, (shared = Object.freeze([...urls])));
  }
  return shared;
}

const NO_URLS: readonly string[] = Object.freeze([]);

const keys = new WeakMap<CertInfo, KeyObject>();

/** The certificate's public key (created once per CertInfo). */
export function publicKeyOf(c: CertInfo): KeyObject {
  let k = keys.get(c);
  if (!k) keys.set(c, (k = createPublicKey({ key: Buffer.from(c.spkiDer), format: 'der', type: 'spki' })));
  return k;
}

/**
 * True when `issuer`'s subject is `leaf`'s issuer and `issuer`'s key signed `leaf` (RFC 5280 §6.1.3).
 * Names are compared as RFC 5280 §7.1 says (names.ts): byte-equal in practice, otherwise after RFC 4518
 * preparation. (This used node's X509Certificate.checkIssued, which throws a non-StaplerError on a
 * certificate OpenSSL cannot read, e.g. a delegate in a hostile response with a bad UTF8String.)
 */
export function isIssuedBy(leaf: CertInfo, issuer: CertInfo): boolean {
  if (!namesMatch(leaf.issuerNameDer, issuer.subjectNameDer)) return false;
  const { tbs, alg, sig } = parts(leaf.der);
  try {
    return verifySignature(algorithm(leaf.der, alg), whole(leaf.der, tbs), bitString(leaf.der, sig), publicKeyOf(issuer));
  } catch {
    return false; // an algorithm we cannot check: not proven
  }
}

/** Valid at `now` by its own dates. */
export function isTimeValid(c: CertInfo, now: Date): boolean {
  return c.notBefore.getTime() <= now.getTime() && now.getTime() <= c.notAfterMs;
}
