import { StaplerError } from '../errors.js';
import type { CertId } from './certid.js';
import { OID } from './oids.js';
import { children, ctx, encodeOid, expect, NULL_DER, octets, readRoot, seq, TAG, tlv } from './der.js';
import { certIdAt, extensionValue, nonceValue } from './ocsp-der.js';


export interface ParsedRequest {
  /** CertIDs with a hash algorithm we index (SHA-1, SHA-256); others are dropped. */
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
const HASH_ALG = { sha1: seq(encodeOid(OID.sha1), NULL_DER), sha256: seq(encodeOid(OID.sha256), NULL_DER) } as const;

export function encodeCertId(id: CertId): Uint8Array {
  const alg = HASH_ALG[id.hashAlgorithm];
  return seq(alg, octets(id.issuerNameHash), octets(id.issuerKeyHash), tlv(TAG.INTEGER, id.serialNumber));
}

export function parseOcspRequest(der: Uint8Array): ParsedRequest {
  try {
    const [tbsT] = children(der, expect(readRoot(der), TAG.SEQUENCE, 'OCSPRequest'));
    const parts = children(der, expect(tbsT, TAG.SEQUENCE, 'TBSRequest'));
    let i = 0;
    if (parts[i]?.tag === ctx(0)) i++; // version
    if (parts[i]?.tag === ctx(1)) i++; // requestorName
    const list = children(der, expect(parts[i++], TAG.SEQUENCE, 'requestList'));
    if (list.length === 0) throw new StaplerError('REQUEST_MALFORMED', 'empty requestList');
    const certIds = list.map((r) => certIdAt(der, children(der, expect(r, TAG.SEQUENCE, 'Request'))[0])).filter((c): c is CertId => c !== undefined);
    const ext = parts[i]?.tag === ctx(2) ? extensionValue(der, parts[i]!, OID.ocspNonce) : undefined;
    const out: ParsedRequest = { certIds: certIds.map(ownCertId), requestCount: list.length };
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
