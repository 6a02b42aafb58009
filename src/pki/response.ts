import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { StaplerError, type ErrorCode } from '../errors.js';
import { hash, own, toArrayBuffer } from './bytes.js';
import type { CertId } from './certid.js';
import { OID } from './oids.js';
import { certIdFromPkijs, nonceValue } from './request.js';
import type { SignatureAlgorithm } from './signature.js';

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
 * Parses an OCSPResponse and its BasicOCSPResponse. Throws OCSP_STATUS_* for error statuses (they
 * carry no responseBytes), OCSP_NOT_BASIC for other response types, OCSP_MALFORMED for anything else.
 * Nothing here is trusted yet: see verify.ts.
 */
export function parseOcspResponse(der: Uint8Array): BasicResponse {
  const resp = decode(der, 'OCSPResponse', (schema) => new pkijs.OCSPResponse({ schema }));
  const status = resp.responseStatus.valueBlock.valueDec;
  if (status !== 0) {
    throw new StaplerError(STATUS_CODES[status] ?? 'OCSP_MALFORMED', `responseStatus ${status}`);
  }
  if (!resp.responseBytes) throw new StaplerError('OCSP_MALFORMED', 'successful response without responseBytes');
  if (resp.responseBytes.responseType !== OID.ocspBasic) {
    throw new StaplerError('OCSP_NOT_BASIC', resp.responseBytes.responseType);
  }
  const inner = resp.responseBytes.response.valueBlock.valueHexView;
  const basic = decode(inner, 'BasicOCSPResponse', (schema) => new pkijs.BasicOCSPResponse({ schema }));
  const data = basic.tbsResponseData;
  const nonceExt = data.responseExtensions?.find((e) => e.extnID === OID.ocspNonce);
  try {
    return {
      tbs: own(data.tbsView),
      signatureAlgorithm: { oid: basic.signatureAlgorithm.algorithmId, params: basic.signatureAlgorithm.algorithmParams },
      signature: own(basic.signature.valueBlock.valueHexView),
      responderId: responderIdOf(data.responderID),
      producedAt: data.producedAt,
      responses: data.responses.map(singleOf),
      certs: (basic.certs ?? []).map((c) => new Uint8Array(c.toSchema().toBER())),
      nonce: nonceExt ? nonceValue(nonceExt.extnValue.valueBlock.valueHexView) : undefined,
    };
  } catch (cause) {
    if (cause instanceof StaplerError) throw cause;
    throw new StaplerError('OCSP_MALFORMED', 'BasicOCSPResponse content', { cause });
  }
}

function decode<T>(der: Uint8Array, what: string, make: (schema: asn1js.AsnType) => T): T {
  try {
    const asn = asn1js.fromBER(toArrayBuffer(der));
    if (asn.offset === -1) throw new Error(asn.result.error);
    if (asn.offset !== der.byteLength) throw new Error('trailing data');
    return make(asn.result);
  } catch (cause) {
    throw new StaplerError('OCSP_MALFORMED', what, { cause });
  }
}

function responderIdOf(r: unknown): ResponderId {
  if (r instanceof pkijs.RelativeDistinguishedNames) return { kind: 'name', der: own(r.valueBeforeDecode) };
  if (r instanceof asn1js.OctetString) return { kind: 'key', keyHash: own(r.valueBlock.valueHexView) };
  throw new StaplerError('OCSP_MALFORMED', 'responderID');
}

/** RFC 6960 §4.2.1: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT UnknownInfo. */
function singleOf(s: pkijs.SingleResponse): SingleResult {
  return {
    certId: certIdFromPkijs(s.certID),
    status: statusOf(s.certStatus as asn1js.BaseBlock),
    thisUpdate: s.thisUpdate,
    nextUpdate: s.nextUpdate,
  };
}

function statusOf(cs: asn1js.BaseBlock): CertStatus {
  if (cs.idBlock.tagClass !== 3) throw new StaplerError('OCSP_MALFORMED', 'certStatus');
  switch (cs.idBlock.tagNumber) {
    case 0:
      return { kind: 'good' };
    case 2:
      return { kind: 'unknown' };
    case 1: {
      const parts = (cs as asn1js.Constructed).valueBlock.value ?? [];
      const time = parts[0];
      if (!(time instanceof asn1js.GeneralizedTime)) throw new StaplerError('OCSP_MALFORMED', 'revocationTime');
      const out: CertStatus = { kind: 'revoked', at: time.toDate() };
      const reasonTag = parts[1] as asn1js.Constructed | undefined;
      const reason = reasonTag?.valueBlock.value?.[0];
      if (reason instanceof asn1js.Enumerated) out.reason = reason.valueBlock.valueDec;
      return out;
    }
    default:
      throw new StaplerError('OCSP_MALFORMED', `certStatus tag ${cs.idBlock.tagNumber}`);
  }
}

/** SHA-1 of a public key BIT STRING value: the RFC 6960 §4.2.1 ResponderID byKey form. */
export function keyIdOf(publicKeyBits: Uint8Array): Uint8Array {
  return hash('sha1', publicKeyBits);
}
