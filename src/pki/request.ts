import { StaplerError } from '../errors.js';
import type { CertId } from './certid.js';
import { OID } from './oids.js';
import { children, ctx, encodeOid, expect, Fields, NULL_DER, octets, readRoot, seq, TAG, tlv } from './der.js';
import { certIdAt, extensionValue, nonceValue } from './ocsp-der.js';


export interface ParsedRequest {
  /** CertIDs with a hash algorithm we know (SHA-1, SHA-2); others are dropped. */
  certIds: CertId[];
  /** How many Request entries the requestList had (including dropped ones). */
  requestCount: number;
  nonce?: Uint8Array;
}



/**
 * An unsigned OCSPRequest (RFC 6960 §4.1.1). No nonce by default: RFC 9919 §2.1 says clients SHOULD NOT
 * send one, and many CDN-fronted responders ignore or reject it. With a nonce it is the RFC 8954 form
 * (extnValue is an OCTET STRING wrapping the nonce OCTET STRING).
 */
export function buildOcspRequest(ids: CertId[], opts: { nonce?: Uint8Array } = {}): Uint8Array {
  const list = seq(...ids.map((id) => seq(encodeCertId(id))));
  // requestExtensions [2] EXPLICIT Extensions; nonce extnValue = OCTET STRING { OCTET STRING nonce }.
  const ext = opts.nonce ? [tlv(0xa2, seq(seq(encodeOid(OID.ocspNonce), octets(octets(opts.nonce)))))] : [];
  return seq(seq(list, ...ext));
}

/** RFC 6960 §4.1.1 CertID, hash algorithm with NULL parameters as OpenSSL and most clients send it. */
const HASH_ALG = {
  sha1: seq(encodeOid(OID.sha1), NULL_DER),
  sha256: seq(encodeOid(OID.sha256), NULL_DER),
  sha384: seq(encodeOid(OID.sha384), NULL_DER),
  sha512: seq(encodeOid(OID.sha512), NULL_DER),
} as const;

export function encodeCertId(id: CertId): Uint8Array {
  const alg = HASH_ALG[id.hashAlgorithm];
  return seq(alg, octets(id.issuerNameHash), octets(id.issuerKeyHash), tlv(TAG.INTEGER, id.serialNumber));
}

/**
 * A client's OCSPRequest (RFC 6960 §4.1.1), read as strict DER like responses: fields in order, nothing
 * after the last one. A signed request's optionalSignature is skipped (we answer from a cache, RFC 6960
 * §4.1.2 leaves signature checking to the responder's policy).
 */
export function parseOcspRequest(der: Uint8Array): ParsedRequest {
  try {
    const outer = new Fields(der, expect(readRoot(der), TAG.SEQUENCE, 'OCSPRequest'), 'OCSPRequest');
    const tbs = new Fields(der, outer.take(TAG.SEQUENCE, 'tbsRequest'), 'TBSRequest');
    outer.maybe(ctx(0)); // optionalSignature
    outer.end();
    tbs.maybe(ctx(0)); // version, DEFAULT v1
    tbs.maybe(ctx(1)); // requestorName
    const list = children(der, tbs.take(TAG.SEQUENCE, 'requestList'));
    const extT = tbs.maybe(ctx(2));
    tbs.end();
    if (list.length === 0) throw new StaplerError('REQUEST_MALFORMED', 'empty requestList');
    const certIds: CertId[] = [];
    for (const r of list) {
      const req = new Fields(der, expect(r, TAG.SEQUENCE, 'Request'), 'Request');
      const id = certIdAt(der, req.take(TAG.SEQUENCE, 'reqCert'));
      req.maybe(ctx(0)); // singleRequestExtensions
      req.end();
      if (id) certIds.push(ownCertId(id));
    }
    const ext = extT ? extensionValue(der, extT, OID.ocspNonce) : undefined;
    const out: ParsedRequest = { certIds, requestCount: list.length };
    if (ext) out.nonce = nonceValue(ext);
    return out;
  } catch (cause) {
    if (cause instanceof StaplerError) throw cause;
    throw new StaplerError('REQUEST_MALFORMED', 'not an OCSPRequest', { cause });
  }
}

/** Copies out of the request buffer, so a cached CertID does not keep the whole request alive. */
function ownCertId(c: CertId): CertId {
  return { hashAlgorithm: c.hashAlgorithm, issuerNameHash: c.issuerNameHash.slice(), issuerKeyHash: c.issuerKeyHash.slice(), serialNumber: c.serialNumber.slice() };
}
