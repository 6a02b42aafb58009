import { StaplerError, type ErrorCode } from '../errors.js';
import { hash } from './bytes.js';
import type { CertId } from './certid.js';
import { bitString, checkDer, children, content, ctx, DerError, expect, explicit, Fields, oid, readRoot, smallInt, TAG, time, whole, type Tlv } from './der.js';
import { OID } from './oids.js';
import { certIdAt, extensionsIn, nonceValue } from './ocsp-der.js';
import { algorithm, checkParameters, type SignatureAlgorithm } from './signature.js';

/** RFC 6960 §4.2.1 CertStatus. */
export type CertStatus =
  | { kind: 'good' }
  | { kind: 'revoked'; at: Date; reason?: number }
  | { kind: 'unknown' };

export interface SingleResult {
  /** Undefined when the CertID uses a hash algorithm we do not index. */
  certId: CertId | undefined;
  status: CertStatus;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
}

export type ResponderId = { kind: 'name'; der: Uint8Array } | { kind: 'key'; keyHash: Uint8Array };

export interface BasicResponse {
  /** The exact encoded ResponseData the signature covers. */
  tbs: Uint8Array;
  signatureAlgorithm: SignatureAlgorithm;
  signature: Uint8Array;
  responderId: ResponderId;
  producedAt: Date;
  responses: SingleResult[];
  /** DER of certificates carried in the response (a delegated signer, usually). */
  certs: Uint8Array[];
  nonce: Uint8Array | undefined;
}

/** RFC 6960 §4.2.1 OCSPResponseStatus values other than successful(0), as our error codes. */
const STATUS_CODES: Record<number, ErrorCode> = {
  1: 'OCSP_STATUS_MALFORMED_REQUEST',
  2: 'OCSP_STATUS_INTERNAL_ERROR',
  3: 'OCSP_STATUS_TRY_LATER',
  5: 'OCSP_STATUS_SIG_REQUIRED',
  6: 'OCSP_STATUS_UNAUTHORIZED',
};


/** More certificates than any CA sends (a delegate, perhaps its chain): the `certs` field is not signed. */
const MAX_CERTS = 8;

/**
 * Parses an OCSPResponse and its BasicOCSPResponse (RFC 6960 §4.2.1) as strict DER: every SEQUENCE has
 * exactly the fields its ASN.1 lists, in order, with nothing after the last one and no trailing bytes at any
 * level, minimal lengths and integers (see der.ts). So the envelope around the signed ResponseData (status,
 * responseBytes, responseType, the OCTET STRING, the signature and its algorithm) is the one DER encoding of
 * what we read: no byte outside the signature can be added or changed without the parse failing. The bytes
 * are kept as received, not re-encoded: strictness already makes them canonical, and serving the CA's own
 * bytes keeps ETags and fleet comparisons equal across instances. The `certs` field is unsigned by design
 * (RFC 6960); it is bounded, each entry must be DER all the way down, and clients check what they use.
 *
 * Throws OCSP_STATUS_* for error statuses (they carry no responseBytes), OCSP_NOT_BASIC for other response
 * types, OCSP_CRITICAL_EXTENSION for a critical extension we do not know (RFC 6960 §4.4, RFC 5280 §4.2),
 * OCSP_MALFORMED for anything else. Nothing here is trusted yet: see verify.ts. Arrays are views into `der`.
 */
export function parseOcspResponse(der: Uint8Array): BasicResponse {
  try {
    const f = new Fields(der, expect(readRoot(der), TAG.SEQUENCE, 'OCSPResponse'), 'OCSPResponse');
    const code = smallInt(der, f.take(TAG.ENUMERATED, 'responseStatus'));
    const bytes = f.maybe(ctx(0));
    f.end();
    if (code !== 0) throw new StaplerError(STATUS_CODES[code] ?? 'OCSP_MALFORMED', `responseStatus ${code}`);
    if (!bytes) throw new StaplerError('OCSP_MALFORMED', 'successful response without responseBytes');
    const rb = new Fields(der, explicit(der, bytes, TAG.SEQUENCE, 'ResponseBytes'), 'ResponseBytes');
    const responseType = oid(der, rb.take(TAG.OID, 'responseType'));
    const octets = rb.take(TAG.OCTET_STRING, 'response');
    rb.end();
    if (responseType !== OID.ocspBasic) throw new StaplerError('OCSP_NOT_BASIC', responseType);
    return parseBasic(content(der, octets));
  } catch (e) {
    if (e instanceof StaplerError) throw e;
    throw new StaplerError('OCSP_MALFORMED', (e as Error).message, { cause: e });
  }
}

function parseBasic(b: Uint8Array): BasicResponse {
  const f = new Fields(b, expect(readRoot(b), TAG.SEQUENCE, 'BasicOCSPResponse'), 'BasicOCSPResponse');
  const tbs = f.take(TAG.SEQUENCE, 'tbsResponseData');
  const signatureAlgorithm = algorithm(b, f.take(TAG.SEQUENCE, 'signatureAlgorithm'));
  const signature = bitString(b, f.take(TAG.BIT_STRING, 'signature'));
  const certsT = f.maybe(ctx(0));
  f.end();
  checkParameters(signatureAlgorithm);
  return { tbs: whole(b, tbs), signatureAlgorithm, signature, ...responseData(b, tbs), certs: certsT ? certsOf(b, certsT) : [] };
}

/**
 * ResponseData (RFC 6960 §4.2.1). version is DEFAULT v1, which DER leaves out; an explicit v1 is accepted
 * (it is inside the signed data, so it cannot be used to change bytes), any other version refused.
 */
function responseData(b: Uint8Array, tbs: Tlv): Pick<BasicResponse, 'responderId' | 'producedAt' | 'responses' | 'nonce'> {
  const f = new Fields(b, tbs, 'ResponseData');
  const version = f.maybe(ctx(0));
  if (version && smallInt(b, explicit(b, version, TAG.INTEGER, 'version')) !== 0) throw new DerError('ResponseData version is not v1');
  const responderId = responderIdOf(b, f.any('responderID'));
  const producedAt = time(b, f.take(TAG.GeneralizedTime, 'producedAt'));
  const list = f.take(TAG.SEQUENCE, 'responses');
  const extT = f.maybe(ctx(1));
  f.end();
  let nonce: Uint8Array | undefined;
  for (const e of extT ? extensionsIn(b, extT) : []) {
    if (e.id === OID.ocspNonce) nonce = nonceValue(e.value);
    else if (e.critical) throw new StaplerError('OCSP_CRITICAL_EXTENSION', `responseExtensions ${e.id}`);
  }
  return { responderId, producedAt, responses: children(b, list).map((r) => singleOf(b, r)), nonce };
}

/** certs [0] EXPLICIT SEQUENCE OF Certificate: passed on unread, so each is checked to be DER throughout. */
function certsOf(b: Uint8Array, wrapper: Tlv): Uint8Array[] {
  const list = children(b, explicit(b, wrapper, TAG.SEQUENCE, 'certs'));
  if (list.length > MAX_CERTS) throw new DerError(`more than ${MAX_CERTS} certificates`);
  return list.map((c) => {
    checkDer(b, expect(c, TAG.SEQUENCE, 'Certificate').body, c.end);
    return whole(b, c);
  });
}

/** RFC 6960 §4.2.1: byName [1] EXPLICIT Name, byKey [2] EXPLICIT OCTET STRING. */
function responderIdOf(b: Uint8Array, t: Tlv): ResponderId {
  if (t.tag === ctx(1)) {
    const name = explicit(b, t, TAG.SEQUENCE, 'Name');
    checkDer(b, name.body, name.end);
    return { kind: 'name', der: whole(b, name) };
  }
  if (t.tag === ctx(2)) return { kind: 'key', keyHash: content(b, explicit(b, t, TAG.OCTET_STRING, 'KeyHash')) };
  throw new DerError('responderID');
}

/** RFC 5280 §5.3.1 CRLReason: 0..10, 7 unused. */
const isReason = (n: number): boolean => n <= 10 && n !== 7;

/** RFC 6960 §4.2.1: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT UnknownInfo (NULL). */
function statusOf(b: Uint8Array, st: Tlv): CertStatus {
  if ((st.tag === ctx(0, false) || st.tag === ctx(2, false)) && st.end === st.body) return { kind: st.tag === ctx(0, false) ? 'good' : 'unknown' };
  if (st.tag !== ctx(1)) throw new DerError('certStatus');
  const f = new Fields(b, st, 'RevokedInfo');
  const status: CertStatus = { kind: 'revoked', at: time(b, f.take(TAG.GeneralizedTime, 'revocationTime')) };
  const reason = f.maybe(ctx(0));
  f.end();
  if (reason) {
    status.reason = smallInt(b, explicit(b, reason, TAG.ENUMERATED, 'revocationReason'));
    if (!isReason(status.reason)) throw new DerError(`revocationReason ${status.reason}`);
  }
  return status;
}

/** SingleResponse (RFC 6960 §4.2.1); no singleExtension is known to us, so none may be critical. */
function singleOf(b: Uint8Array, t: Tlv): SingleResult {
  const f = new Fields(b, expect(t, TAG.SEQUENCE, 'SingleResponse'), 'SingleResponse');
  const certId = certIdAt(b, f.take(TAG.SEQUENCE, 'certID'));
  const status = statusOf(b, f.any('certStatus'));
  const thisUpdate = time(b, f.take(TAG.GeneralizedTime, 'thisUpdate'));
  const next = f.maybe(ctx(0));
  const extT = f.maybe(ctx(1));
  f.end();
  for (const e of extT ? extensionsIn(b, extT) : []) {
    if (e.critical) throw new StaplerError('OCSP_CRITICAL_EXTENSION', `singleExtensions ${e.id}`);
  }
  const nextUpdate = next ? time(b, explicit(b, next, TAG.GeneralizedTime, 'nextUpdate')) : undefined;
  return { certId, status, thisUpdate, nextUpdate };
}

/** SHA-1 of a public key BIT STRING value: the RFC 6960 §4.2.1 ResponderID byKey form. */
export function keyIdOf(publicKeyBits: Uint8Array): Uint8Array {
  return hash('sha1', publicKeyBits);
}
