import type { KeyObject } from 'node:crypto';
import { StaplerError } from '../errors.js';
import { bytesEqual } from './bytes.js';
import { isIssuedBy, isTimeValid, parseCertificate, publicKeyOf, type CertInfo } from './certificate.js';
import { certIdEqual, certIdOf } from './certid.js';
import { namesMatch } from './names.js';
import { keyIdOf, parseOcspResponse, type BasicResponse, type CertStatus, type ResponderId, type SingleResult } from './response.js';
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
 * Order: the leaf names the issuer, strict parse and status, responder authority, signature, CertID (one
 * unambiguous answer), times, nonce. Pure: bytes, certificates and `now` in. Throws StaplerError.
 * It relies on the caller having proven at load that `issuer` signed `leaf` (isIssuedBy): it checks the
 * names again here but not that signature, which compact leaves no longer carry.
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
  // The caller proved issuance by signature when it loaded the pair (isIssuedBy); compact leaves no longer
  // carry a signature to re-check, so what is checked here is the cheap part that would catch a mix-up of
  // records: the leaf names this issuer (RFC 5280 §7.1 matching, byte-equal in every real chain).
  if (!namesMatch(input.leaf.issuerNameDer, input.issuer.subjectNameDer)) throw new StaplerError('ISSUER_MISMATCH', `issuer of ${input.leaf.subject} is not ${input.issuer.subject}`);
  const basic = parseOcspResponse(input.der);
  return { basic, signer: findSigner(basic, input.issuer, input.now, input.memo) };
}

/**
 * The SingleResponse about `leaf`. A response may answer for it more than once (SHA-1 and SHA-256 CertIDs,
 * or a CA bug); answers that disagree on status or window are ambiguous, never read as the first one.
 */
function singleFor(basic: BasicResponse, leaf: CertInfo, issuer: CertInfo): SingleResult {
  let found: SingleResult | undefined;
  for (const r of basic.responses) {
    if (!r.certId || !certIdEqual(r.certId, certIdOf(leaf, issuer, r.certId.hashAlgorithm))) continue;
    if (found && !sameAnswer(found, r)) throw new StaplerError('OCSP_CERTID_AMBIGUOUS', `serial ${leaf.serialHex}`);
    found ??= r;
  }
  if (!found) throw new StaplerError('OCSP_CERTID_MISMATCH', `serial ${leaf.serialHex}`);
  return found;
}

function sameAnswer(a: SingleResult, b: SingleResult): boolean {
  const t = (d: Date | undefined) => d?.getTime();
  const s = (r: SingleResult) => (r.status.kind === 'revoked' ? `revoked:${r.status.at.getTime()}:${r.status.reason ?? ''}` : r.status.kind);
  return s(a) === s(b) && t(a.thisUpdate) === t(b.thisUpdate) && t(a.nextUpdate) === t(b.nextUpdate);
}

/** After the signature: the CertID, the time window and the nonce. */
function conclude(input: VerifyInput, basic: BasicResponse, signer: 'issuer' | 'delegate'): VerifiedResponse {
  const { leaf, issuer, now, policy } = input;
  const single = singleFor(basic, leaf, issuer);
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
  if (id.kind !== 'key') return namesMatch(id.der, cert.subjectNameDer);
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
    const key = delegateKey(cert);
    memo?.set(memoKey, { key, cert });
    return { kind: 'delegate', key };
  }
  throw new StaplerError(candidate ? 'OCSP_SIGNER_UNAUTHORIZED' : 'OCSP_SIGNER_NOT_FOUND');
}

/** The delegate's key; one node cannot load is the CA's odd certificate, not a reason to throw a TypeError. */
function delegateKey(cert: CertInfo): KeyObject {
  try {
    return publicKeyOf(cert);
  } catch (cause) {
    throw new StaplerError('OCSP_SIGNER_UNAUTHORIZED', `${cert.subject}: unusable public key`, { cause });
  }
}

function issuerKey(issuer: CertInfo, memo: SignerMemo | undefined): KeyObject {
  const k = `issuer:${issuer.fingerprint}`;
  const known = memo?.get(k);
  if (known) return known.key;
  const key = publicKeyOf(issuer);
  memo?.set(k, { key, cert: issuer });
  return key;
}
