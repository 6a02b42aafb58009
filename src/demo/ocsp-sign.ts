/**
 * Signed OCSP responses for the demo responder and tests (RFC 6960 §4.2.1). Encoded with a tiny DER
 * writer rather than pkijs: the CertID must go on the wire exactly as the client sent it, faults need
 * fields pkijs would "fix", and the benchmark responder signs tens of thousands of these.
 */
import { createHash, sign } from 'node:crypto';
import type { CertId } from '../pki/certid.js';
import { parseCertificate } from '../pki/certificate.js';
import { OID } from '../pki/oids.js';
import { encodeGeneralizedTime, encodeOid, NULL_DER, octets, seq, tlv } from '../pki/der.js';
import { encodeCertId } from '../pki/request.js';
import type { IssuedCert } from './ca.js';

export type CertStatus = { kind: 'good' } | { kind: 'revoked'; at: Date; reason?: number } | { kind: 'unknown' };

export interface SingleSpec {
  certId: CertId;
  status: CertStatus;
  thisUpdate: Date;
  /** Absent means "newer information is always available" (RFC 6960 §4.2.2.1); HAProxy rejects it. */
  nextUpdate?: Date;
}

export interface SignOptions {
  responses: SingleSpec[];
  signer: IssuedCert;
  producedAt: Date;
  /** Certificates for the `certs` field. Default: [signer] unless the signer is a CA (i.e. the issuer itself). */
  includeCerts?: IssuedCert[];
  /** ResponderID choice (RFC 6960 §4.2.1); default byKey, as most CAs send. */
  responderIdBy?: 'name' | 'key';
  /** Echoed as id-pkix-ocsp-nonce (RFC 8954): extnValue is an OCTET STRING wrapping this OCTET STRING. */
  nonce?: Uint8Array;
  /** Flip a bit of the signature (the encoding stays valid, verification fails). */
  corruptSignature?: boolean;
}

export type OcspErrorStatus = 1 | 2 | 3 | 5 | 6;

const ALG = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
} as const;

const EMPTY = new Uint8Array(0);
const enumerated = (n: number) => tlv(0x0a, Uint8Array.of(n));

// --- OCSP structures ---

/** What we need of a signer, derived once per IssuedCert: the responder signs on every request. */
interface SignerView {
  nameDer: Uint8Array;
  keyHash: Uint8Array;
  sigAlgDer: Uint8Array;
  isCA: boolean;
}
const signerViews = new WeakMap<IssuedCert, SignerView>();

function signerView(c: IssuedCert): SignerView {
  let v = signerViews.get(c);
  if (!v) {
    const info = parseCertificate(c.der, 'OCSP signer');
    const type = c.key.privateKey.asymmetricKeyType;
    // RFC 5758 §3.2: ecdsa-with-SHA256 has no parameters; RFC 4055 §5: sha256WithRSAEncryption has NULL.
    const sigAlgDer = type === 'ec' ? seq(encodeOid(ALG.ecdsaWithSha256)) : type === 'rsa' ? seq(encodeOid(ALG.sha256WithRsa), NULL_DER) : undefined;
    if (!sigAlgDer) throw new Error(`demo OCSP signer: unsupported key type ${String(type)}`);
    // RFC 6960 §4.2.1: byKey is the SHA-1 of the subjectPublicKey BIT STRING value.
    const keyHash = new Uint8Array(createHash('sha1').update(info.publicKeyBits).digest());
    v = { nameDer: info.subjectNameDer, keyHash, sigAlgDer, isCA: info.isCA };
    signerViews.set(c, v);
  }
  return v;
}


/** CertStatus CHOICE: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT NULL. */
function encodeStatus(s: CertStatus): Uint8Array {
  switch (s.kind) {
    case 'good':
      return Uint8Array.of(0x80, 0x00);
    case 'unknown':
      return Uint8Array.of(0x82, 0x00);
    case 'revoked': {
      // RevokedInfo: revocationTime, revocationReason [0] EXPLICIT CRLReason (RFC 5280 §5.3.1) OPTIONAL.
      const reason = s.reason === undefined ? EMPTY : tlv(0xa0, enumerated(s.reason));
      return tlv(0xa1, encodeGeneralizedTime(s.at), reason);
    }
  }
}

function encodeSingle(r: SingleSpec): Uint8Array {
  const next = r.nextUpdate ? tlv(0xa0, encodeGeneralizedTime(r.nextUpdate)) : EMPTY;
  return seq(encodeCertId(r.certId), encodeStatus(r.status), encodeGeneralizedTime(r.thisUpdate), next);
}

/** responseExtensions [1] EXPLICIT Extensions with the RFC 8954 nonce (non-critical). */
function nonceExtensions(nonce: Uint8Array): Uint8Array {
  return tlv(0xa1, seq(seq(encodeOid(OID.ocspNonce), octets(octets(nonce)))));
}

function responseData(o: SignOptions, v: SignerView): Uint8Array {
  // Version is DEFAULT v1 and so omitted (X.690 §11.5).
  const responderId = o.responderIdBy === 'name' ? tlv(0xa1, v.nameDer) : tlv(0xa2, octets(v.keyHash));
  const extensions = o.nonce ? nonceExtensions(o.nonce) : EMPTY;
  return seq(responderId, encodeGeneralizedTime(o.producedAt), seq(...o.responses.map(encodeSingle)), extensions);
}

/** A complete OCSPResponse: responseStatus successful (0) with an id-pkix-ocsp-basic BasicOCSPResponse. */
export function buildSuccessfulResponse(o: SignOptions): Uint8Array {
  if (o.responses.length === 0) throw new Error('buildSuccessfulResponse: responses must not be empty');
  const v = signerView(o.signer);
  const tbs = responseData(o, v);
  const sig = new Uint8Array(sign('sha256', tbs, o.signer.key.privateKey));
  if (o.corruptSignature) sig[sig.length - 1]! ^= 0x01;
  const certs = o.includeCerts ?? (v.isCA ? [] : [o.signer]);
  const certsField = certs.length > 0 ? tlv(0xa0, seq(...certs.map((c) => c.der))) : EMPTY;
  // BIT STRING: leading octet is the number of unused bits (0).
  const basic = seq(tbs, v.sigAlgDer, tlv(0x03, Uint8Array.of(0), sig), certsField);
  const responseBytes = tlv(0xa0, seq(encodeOid(OID.ocspBasic), octets(basic)));
  return new Uint8Array(seq(enumerated(0), responseBytes));
}

/** RFC 6960 §4.2.1: an unsuccessful status carries no responseBytes. */
export function buildErrorResponse(status: OcspErrorStatus): Uint8Array {
  return new Uint8Array(seq(enumerated(status)));
}
