import type { KeyObject } from 'node:crypto';
import { StaplerError } from '../errors.js';
import { bytesEqual } from './bytes.js';
import { isIssuedBy, isTimeValid, parseCertificate, publicKeyOf, type CertInfo } from './certificate.js';
import { certIdEqual, certIdOf } from './certid.js';
import { keyIdOf, parseOcspResponse, type BasicResponse, type CertStatus, type ResponderId } from './response.js';
import { verifySignature, verifySignatureAsync } from './signature.js';
import { isServable } from './freshness.js';

export interface VerifyPolicy {
  /** Tolerated clock difference for thisUpdate in the future, seconds. */
  skewSeconds: number;
  /** nextUpdate must be later than now + margin (at most a tenth of the window, see servableUntil). */
  marginSeconds: number;
  /** A response without nextUpdate is taken as valid this long after thisUpdate; absent or 0: refused. */
  assumeValiditySeconds?: number | undefined;
}

export interface VerifyInput {
  der: Uint8Array;
  leaf: CertInfo;
  issuer: CertInfo;
  now: Date;
  policy: VerifyPolicy;
  /** The nonce we sent, if any: it must come back (RFC 8954 §2.1). */
  nonce?: Uint8Array | undefined;
  /** Memo of delegated signers already proven to be issued by an issuer (see SignerMemo). */
  memo?: SignerMemo | undefined;
}

export interface VerifiedResponse {
  der: Uint8Array;
  status: CertStatus;
  thisUpdate: Date;
  nextUpdate: Date;
  /** nextUpdate was absent and is thisUpdate + policy.assumeValiditySeconds. */
  nextUpdateAssumed?: boolean;
  producedAt: Date;
  signer: 'issuer' | 'delegate';
  /** SingleResponses in the response: HAProxy only accepts a staple with exactly one. */
  singleCount: number;
}

/**
 * Memo of proven delegated signers keyed by issuer and delegate fingerprints, so that 10,000 responses
 * signed by one delegate cost one chain check. Only issuance and EKU are memoised; the delegate's time
 * validity is checked on every call. Bounded by the caller (one entry per responder certificate).
 */
export type SignerMemo = Map<string, { key: KeyObject; cert: CertInfo }>;

/**
 * Full verification of an OCSP response for one certificate (RFC 6960 §3.2, §4.2.2.2), written out because
 * pkijs' BasicOCSPResponse.verify() fails without an embedded certificate and ignores the delegate's EKU.
 * Order: parse and status, responder authority, signature, CertID, times, nonce. Throws StaplerError.
 */
export function verifyOcspResponse(input: VerifyInput): VerifiedResponse {
  const { basic, signer } = authority(input);
  if (!verifySignature(basic.signatureAlgorithm, basic.tbs, basic.signature, signer.key)) {
    throw new StaplerError('OCSP_BAD_SIGNATURE', `signed by ${signer.kind}`);
  }
  return conclude(input, basic, signer.kind);
}

/** verifyOcspResponse with the signature checked on the thread pool (the same checks, in the same order). */
export async function verifyOcspResponseAsync(input: VerifyInput): Promise<VerifiedResponse> {
  const { basic, signer } = authority(input);
  if (!(await verifySignatureAsync(basic.signatureAlgorithm, basic.tbs, basic.signature, signer.key))) {
    throw new StaplerError('OCSP_BAD_SIGNATURE', `signed by ${signer.kind}`);
  }
  return conclude(input, basic, signer.kind);
}

/** Parse and status, then who signed it and whether they may (before the signature is checked). */
function authority(input: VerifyInput): { basic: BasicResponse; signer: { kind: 'issuer' | 'delegate'; key: KeyObject } } {
  const basic = parseOcspResponse(input.der);
  return { basic, signer: findSigner(basic, input.issuer, input.now, input.memo) };
}

/** After the signature: the CertID, the time window and the nonce. */
function conclude(input: VerifyInput, basic: BasicResponse, signer: 'issuer' | 'delegate'): VerifiedResponse {
  const { leaf, issuer, now, policy } = input;
  const single = basic.responses.find((r) => r.certId && certIdEqual(r.certId, certIdOf(leaf, issuer, r.certId.hashAlgorithm)));
  if (!single) throw new StaplerError('OCSP_CERTID_MISMATCH', `serial ${leaf.serialHex}`);
  const nowMs = now.getTime();
  if (single.thisUpdate.getTime() > nowMs + policy.skewSeconds * 1000) {
    throw new StaplerError('OCSP_THIS_UPDATE_FUTURE', single.thisUpdate.toISOString());
  }
  // RFC 9919 §3.2 requires nextUpdate for staples; without it there is no freshness window to serve in,
  // unless the operator opted into one (refresh.assumeValidity; RFC 6960 §4.2.2.1 "newer information is
  // always available" says nothing of how long this one holds, so the window is a local choice).
  const assume = policy.assumeValiditySeconds ?? 0;
  if (!single.nextUpdate && !(assume > 0)) throw new StaplerError('OCSP_NEXT_UPDATE_MISSING');
  const nextUpdate = single.nextUpdate ?? new Date(single.thisUpdate.getTime() + assume * 1000);
  // The same rule as serving: a response that could not be served now is not worth holding.
  if (!isServable(nextUpdate, now, policy.marginSeconds, single.thisUpdate)) {
    throw new StaplerError('OCSP_EXPIRED', `nextUpdate ${nextUpdate.toISOString()}${single.nextUpdate ? '' : ' (assumed)'}`);
  }
  if (input.nonce && !(basic.nonce && bytesEqual(basic.nonce, input.nonce))) {
    throw new StaplerError('OCSP_NONCE_MISMATCH');
  }
  return {
    der: input.der,
    status: single.status,
    thisUpdate: single.thisUpdate,
    nextUpdate,
    ...(!single.nextUpdate && { nextUpdateAssumed: true }),
    producedAt: basic.producedAt,
    signer,
    singleCount: basic.responses.length,
  };
}

const keyIds = new WeakMap<CertInfo, Uint8Array>();

function matchesResponderId(id: ResponderId, cert: CertInfo): boolean {
  if (id.kind !== 'key') return bytesEqual(id.der, cert.subjectNameDer);
  // The issuer's (or delegate's) key ID is compared with every response it signs: hashed once per certificate.
  let kid = keyIds.get(cert);
  if (!kid) keyIds.set(cert, (kid = keyIdOf(cert.publicKeyBits)));
  return bytesEqual(id.keyHash, kid);
}

/**
 * RFC 6960 §4.2.2.2: the signer is the issuing CA itself, or a certificate the CA issued directly that
 * carries id-kp-OCSPSigning. A delegate must be valid now (RFC 6960 §4.2.2.2.1 leaves revocation
 * checking of the delegate to policy; with id-pkix-ocsp-nocheck none is expected).
 */
function findSigner(
  basic: BasicResponse,
  issuer: CertInfo,
  now: Date,
  memo: SignerMemo | undefined,
): { kind: 'issuer' | 'delegate'; key: KeyObject } {
  if (matchesResponderId(basic.responderId, issuer)) return { kind: 'issuer', key: issuerKey(issuer, memo) };
  let candidate: CertInfo | undefined;
  for (const der of basic.certs) {
    // Keyed by issuer and size, confirmed by comparing the whole DER: no string built from the bytes per response.
    const memoKey = `${issuer.fingerprint}:${der.byteLength}`;
    const known = memo?.get(memoKey);
    if (known && bytesEqual(known.cert.der, der) && matchesResponderId(basic.responderId, known.cert)) {
      if (!isTimeValid(known.cert, now)) throw new StaplerError('OCSP_SIGNER_EXPIRED', known.cert.subject);
      return { kind: 'delegate', key: known.key };
    }
    const cert = parseCertificate(der, 'responder certificate');
    if (!matchesResponderId(basic.responderId, cert)) continue;
    candidate = cert;
    if (!isIssuedBy(cert, issuer)) throw new StaplerError('OCSP_SIGNER_UNAUTHORIZED', cert.subject);
    if (!cert.ekuOcspSigning) throw new StaplerError('OCSP_SIGNER_NO_EKU', cert.subject);
    if (!isTimeValid(cert, now)) throw new StaplerError('OCSP_SIGNER_EXPIRED', cert.subject);
    const key = publicKeyOf(cert);
    memo?.set(memoKey, { key, cert });
    return { kind: 'delegate', key };
  }
  throw new StaplerError(candidate ? 'OCSP_SIGNER_UNAUTHORIZED' : 'OCSP_SIGNER_NOT_FOUND');
}

function issuerKey(issuer: CertInfo, memo: SignerMemo | undefined): KeyObject {
  const k = `issuer:${issuer.fingerprint}`;
  const known = memo?.get(k);
  if (known) return known.key;
  const key = publicKeyOf(issuer);
  memo?.set(k, { key, cert: issuer });
  return key;
}
