import { StaplerError, type ErrorCode } from '../errors.js';
import { hash } from './bytes.js';
import type { CertId } from './certid.js';
import { bitString, children, content, ctx, DerError, expect, oid, readRoot, readTlv, smallInt, TAG, time, whole, type Tlv } from './der.js';
import { OID } from './oids.js';
import { certIdAt, extensionValue, nonceValue } from './ocsp-der.js';
import { algorithm, type SignatureAlgorithm } from './signature.js';

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


/**
 * Parses an OCSPResponse and its BasicOCSPResponse (RFC 6960 §4.2.1). Throws OCSP_STATUS_* for error
 * statuses (they carry no responseBytes), OCSP_NOT_BASIC for other response types, OCSP_MALFORMED for
 * anything else. Nothing here is trusted yet: see verify.ts. The returned byte arrays are views into `der`.
 */
export function parseOcspResponse(der: Uint8Array): BasicResponse {
  try {
    const [status, bytes] = children(der, expect(readRoot(der), TAG.SEQUENCE, 'OCSPResponse'));
    const code = smallInt(der, expect(status, TAG.ENUMERATED, 'responseStatus'));
    if (code !== 0) throw new StaplerError(STATUS_CODES[code] ?? 'OCSP_MALFORMED', `responseStatus ${code}`);
    if (!bytes) throw new StaplerError('OCSP_MALFORMED', 'successful response without responseBytes');
    const [type, octets] = children(der, expect(children(der, expect(bytes, ctx(0), 'responseBytes'))[0], TAG.SEQUENCE, 'ResponseBytes'));
    const responseType = oid(der, type!);
    if (responseType !== OID.ocspBasic) throw new StaplerError('OCSP_NOT_BASIC', responseType);
    const inner = content(der, expect(octets, TAG.OCTET_STRING, 'response'));
    return parseBasic(inner);
  } catch (e) {
    if (e instanceof StaplerError) throw e;
    throw new StaplerError('OCSP_MALFORMED', (e as Error).message, { cause: e });
  }
}

function parseBasic(b: Uint8Array): BasicResponse {
  const [tbsT, algT, sigT, certsT] = children(b, expect(readRoot(b), TAG.SEQUENCE, 'BasicOCSPResponse'));
  const tbs = expect(tbsT, TAG.SEQUENCE, 'tbsResponseData');
  const parts = children(b, tbs);
  let i = 0;
  if (parts[0]?.tag === ctx(0)) i++; // version [0] EXPLICIT, v1 only
  const ridT = parts[i++];
  const producedAt = time(b, expect(parts[i++], TAG.GeneralizedTime, 'producedAt'));
  const responses = children(b, expect(parts[i++], TAG.SEQUENCE, 'responses')).map((r) => singleOf(b, r));
  const extT = parts[i];
  const nonceExt = extT?.tag === ctx(1) ? extensionValue(b, extT, OID.ocspNonce) : undefined;
  const certs = certsT ? children(b, expect(children(b, expect(certsT, ctx(0), 'certs'))[0], TAG.SEQUENCE, 'certs')).map((c) => whole(b, c)) : [];
  return {
    tbs: whole(b, tbs),
    signatureAlgorithm: algorithm(b, algT),
    signature: bitString(b, expect(sigT, TAG.BIT_STRING, 'signature')),
    responderId: responderIdOf(b, ridT),
    producedAt,
    responses,
    certs,
    nonce: nonceExt ? nonceValue(nonceExt) : undefined,
  };
}


/** RFC 6960 §4.2.1: byName [1] EXPLICIT Name, byKey [2] EXPLICIT OCTET STRING. */
function responderIdOf(b: Uint8Array, t: Tlv | undefined): ResponderId {
  if (t?.tag === ctx(1)) return { kind: 'name', der: whole(b, expect(readTlv(b, t.body, t.end), TAG.SEQUENCE, 'Name')) };
  if (t?.tag === ctx(2)) return { kind: 'key', keyHash: content(b, expect(readTlv(b, t.body, t.end), TAG.OCTET_STRING, 'KeyHash')) };
  throw new DerError('responderID');
}



/** RFC 6960 §4.2.1: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT UnknownInfo. */
function singleOf(b: Uint8Array, t: Tlv): SingleResult {
  const f = children(b, expect(t, TAG.SEQUENCE, 'SingleResponse'));
  const st = f[1];
  let status: CertStatus;
  if (st?.tag === ctx(0, false)) status = { kind: 'good' };
  else if (st?.tag === ctx(2, false)) status = { kind: 'unknown' };
  else if (st?.tag === ctx(1)) {
    const [at, reason] = children(b, st);
    status = { kind: 'revoked', at: time(b, expect(at, TAG.GeneralizedTime, 'revocationTime')) };
    if (reason?.tag === ctx(0)) status.reason = smallInt(b, expect(readTlv(b, reason.body, reason.end), TAG.ENUMERATED, 'revocationReason'));
  } else throw new DerError('certStatus');
  const next = f[3]?.tag === ctx(0) ? time(b, expect(readTlv(b, f[3].body, f[3].end), TAG.GeneralizedTime, 'nextUpdate')) : undefined;
  return { certId: certIdAt(b, f[0]), status, thisUpdate: time(b, expect(f[2], TAG.GeneralizedTime, 'thisUpdate')), nextUpdate: next };
}

/** SHA-1 of a public key BIT STRING value: the RFC 6960 §4.2.1 ResponderID byKey form. */
export function keyIdOf(publicKeyBits: Uint8Array): Uint8Array {
  return hash('sha1', publicKeyBits);
}
