import { LRUCache } from 'lru-cache';
import { isStaplerError } from '../errors.js';
import { certIdKey, type CertId } from '../pki/certid.js';
import { parseOcspRequest } from '../pki/request.js';

/** What a request asks for, once its bytes are understood. */
export type RequestTarget = { kind: 'certId'; keys: string[]; ids: CertId[] } | { kind: 'malformed' } | { kind: 'unsupported' };

/**
 * nginx and HAProxy repeat byte-identical requests (no nonce), so the parse result is memoised by the
 * request bytes: a hit costs a map lookup instead of a DER parse. Bounded by entries; a nonce-bearing
 * request is unique and so not worth caching.
 */
export class RequestCache {
  readonly #lru: LRUCache<string, RequestTarget>;

  constructor(maxEntries: number) {
    if (!(maxEntries > 0)) throw new RangeError('RequestCache: maxEntries must be > 0');
    this.#lru = new LRUCache({ max: maxEntries });
  }

  /**
   * `memoKey` is the request as received (base64 text or body as latin1); `candidates` yields the DER
   * readings to try on a miss, in order (the first that parses wins).
   */
  target(memoKey: string, candidates: () => Iterable<Uint8Array | undefined>): RequestTarget {
    const hit = this.#lru.get(memoKey);
    if (hit) return hit;
    let result: { target: RequestTarget; cacheable: boolean } = { target: { kind: 'malformed' }, cacheable: true };
    for (const der of candidates()) {
      result = parse(der);
      if (result.target.kind !== 'malformed') break;
    }
    if (result.cacheable) this.#lru.set(memoKey, result.target);
    return result.target;
  }
}

function parse(der: Uint8Array | undefined): { target: RequestTarget; cacheable: boolean } {
  if (!der || der.byteLength === 0) return { target: { kind: 'malformed' }, cacheable: true };
  try {
    const req = parseOcspRequest(der);
    // RFC 9919 §2.1.1: one Request per OCSPRequest. A cached staple covers exactly one certificate.
    if (req.requestCount !== 1) return { target: { kind: 'malformed' }, cacheable: true };
    if (req.certIds.length === 0) return { target: { kind: 'unsupported' }, cacheable: true };
    return { target: { kind: 'certId', keys: req.certIds.map(certIdKey), ids: req.certIds }, cacheable: req.nonce === undefined };
  } catch (e) {
    if (isStaplerError(e)) return { target: { kind: 'malformed' }, cacheable: true };
    throw e;
  }
}
