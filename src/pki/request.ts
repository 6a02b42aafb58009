import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { StaplerError } from '../errors.js';
import { own, toArrayBuffer, type HashName } from './bytes.js';
import type { CertId } from './certid.js';
import { OID } from './oids.js';

const HASH_OIDS: Record<string, HashName> = { [OID.sha1]: 'sha1', [OID.sha256]: 'sha256' };

export interface ParsedRequest {
  /** CertIDs with a hash algorithm we index (SHA-1, SHA-256); others are dropped. */
  certIds: CertId[];
  /** How many Request entries the requestList had (including dropped ones). */
  requestCount: number;
  nonce?: Uint8Array;
}

export function certIdToPkijs(id: CertId): pkijs.CertID {
  return new pkijs.CertID({
    hashAlgorithm: new pkijs.AlgorithmIdentifier({
      algorithmId: id.hashAlgorithm === 'sha1' ? OID.sha1 : OID.sha256,
      algorithmParams: new asn1js.Null(),
    }),
    issuerNameHash: new asn1js.OctetString({ valueHex: toArrayBuffer(id.issuerNameHash) }),
    issuerKeyHash: new asn1js.OctetString({ valueHex: toArrayBuffer(id.issuerKeyHash) }),
    serialNumber: new asn1js.Integer({ valueHex: toArrayBuffer(id.serialNumber) }),
  });
}

/** CertID from pkijs, or undefined when its hash algorithm is one we do not index. */
export function certIdFromPkijs(c: pkijs.CertID): CertId | undefined {
  const alg = HASH_OIDS[c.hashAlgorithm.algorithmId];
  if (!alg) return undefined;
  return {
    hashAlgorithm: alg,
    issuerNameHash: own(c.issuerNameHash.valueBlock.valueHexView),
    issuerKeyHash: own(c.issuerKeyHash.valueBlock.valueHexView),
    serialNumber: own(c.serialNumber.valueBlock.valueHexView),
  };
}

/**
 * An unsigned OCSPRequest (RFC 6960 §4.1.1). No nonce by default: RFC 9919 §2.1 says clients SHOULD NOT
 * send one, and many CDN-fronted responders ignore or reject it. With a nonce it is the RFC 8954 form
 * (extnValue is an OCTET STRING wrapping the nonce OCTET STRING).
 */
export function buildOcspRequest(ids: CertId[], opts: { nonce?: Uint8Array } = {}): Uint8Array {
  const req = new pkijs.OCSPRequest();
  req.tbsRequest.requestList = ids.map((id) => new pkijs.Request({ reqCert: certIdToPkijs(id) }));
  if (opts.nonce) {
    const inner = new asn1js.OctetString({ valueHex: toArrayBuffer(opts.nonce) });
    req.tbsRequest.requestExtensions = [
      new pkijs.Extension({ extnID: OID.ocspNonce, critical: false, extnValue: inner.toBER() }),
    ];
  }
  return new Uint8Array(req.toSchema(true).toBER());
}

export function parseOcspRequest(der: Uint8Array): ParsedRequest {
  let req: pkijs.OCSPRequest;
  try {
    const asn = asn1js.fromBER(der);
    if (asn.offset === -1 || asn.offset !== der.byteLength) throw new Error(asn.result.error || 'trailing data');
    req = new pkijs.OCSPRequest({ schema: asn.result });
  } catch (cause) {
    throw new StaplerError('REQUEST_MALFORMED', 'not an OCSPRequest', { cause });
  }
  const list = req.tbsRequest.requestList;
  if (list.length === 0) throw new StaplerError('REQUEST_MALFORMED', 'empty requestList');
  const certIds = list.map((r) => certIdFromPkijs(r.reqCert)).filter((c): c is CertId => c !== undefined);
  const nonceExt = req.tbsRequest.requestExtensions?.find((e) => e.extnID === OID.ocspNonce);
  const out: ParsedRequest = { certIds, requestCount: list.length };
  if (nonceExt) out.nonce = nonceValue(nonceExt.extnValue.valueBlock.valueHexView);
  return out;
}

/** RFC 8954 wraps the nonce in an inner OCTET STRING; older clients put raw bytes. Accept both. */
export function nonceValue(extnValue: Uint8Array): Uint8Array {
  const inner = asn1js.fromBER(extnValue);
  if (inner.offset === extnValue.byteLength && inner.result instanceof asn1js.OctetString) {
    return own(inner.result.valueBlock.valueHexView);
  }
  return own(extnValue);
}
