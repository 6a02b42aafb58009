import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { isStaplerError } from '../errors.js';
import { certIdKey, type CertId } from '../pki/certid.js';
import { parseOcspRequest } from '../pki/request.js';

/** What a request asks for, once its bytes are understood. */
export type RequestTarget = { kind: 'certId'; keys: string[]; ids: CertId[] } | { kind: 'malformed' } | { kind: 'unsupported' };

export interface RequestCacheOptions {
  maxEntries: number;
  /** Bound on the cache's own estimate of the heap its keys and values take (see `sizeOf`). */
  maxBytes: number;
}

/**
 * Memo keys longer than this are replaced by a SHA-256 of the request. A real request without a nonce is
 * ~75-110 bytes of DER (SHA-1 or SHA-256 CertID), ~100-150 characters of base64 or URL, so real traffic
 * never pays for the hash; a client sending 16 KiB bodies or 8 KiB URLs stores 45 characters, not 16 KiB.
 */
export const MAX_INLINE_KEY_CHARS = 512;

/**
 * The memo key of a GET, by its raw URL (what node hands us; repeats skip even the percent-decoding). An
 * origin-form URL is its own key: it starts with '/', which no other kind of key does (`u:`, `U:`, `p:`,
 * `P:`), and a hit then hashes node's string as it is instead of a concatenated copy of it.
 */
export function urlMemoKey(url: string): string {
  if (url.length > MAX_INLINE_KEY_CHARS) return `U:${createHash('sha256').update(url).digest('base64')}`;
  return url.charCodeAt(0) === 47 /* '/' */ ? url : `u:${url}`;
}

/** The memo key of a POST body. */
export function bodyMemoKey(body: Buffer): string {
  return body.length <= MAX_INLINE_KEY_CHARS ? `p:${body.toString('latin1')}` : `P:${createHash('sha256').update(body).digest('base64')}`;
}

/**
 * nginx and HAProxy repeat byte-identical requests (no nonce), so the parse result is memoised by the
 * request: a hit costs a map lookup instead of a DER parse. Bounded in entries and in bytes (a client
 * choosing its request bytes chooses the key: 20,000 unique 16 KiB bodies once cost 361 MB of RSS).
 * Only requests that parsed are kept: a malformed one is cheap to reject again and would only let a
 * client fill the cache with garbage; a nonce-bearing request is unique and so not worth caching.
 */
export class RequestCache {
  readonly #lru: LRUCache<string, RequestTarget>;
  #parseAttempts = 0;
  /**
   * The last request that did not parse: a GET the fast path gave up on reaches the Fastify route next,
   * which would otherwise decode and parse it a second time. One key, so it bounds nothing away.
   */
  #lastMalformed: string | undefined;

  constructor(o: RequestCacheOptions) {
    if (!(Number.isInteger(o.maxEntries) && o.maxEntries > 0)) throw new RangeError('RequestCache: maxEntries must be an integer > 0');
    if (!(Number.isInteger(o.maxBytes) && o.maxBytes > 0)) throw new RangeError('RequestCache: maxBytes must be an integer > 0');
    this.#lru = new LRUCache({ max: o.maxEntries, maxSize: o.maxBytes, sizeCalculation: sizeOf });
  }

  /** The cache's own accounting: entries held, estimated bytes, and DER parses tried since it was made. */
  get stats(): { entries: number; bytes: number; parseAttempts: number } {
    return { entries: this.#lru.size, bytes: this.#lru.calculatedSize, parseAttempts: this.#parseAttempts };
  }

  /**
   * `memoKey` comes from urlMemoKey or bodyMemoKey; `candidates` yields the DER readings to try on a miss,
   * in order (the first that parses wins). The caller bounds how many it yields (getCandidates).
   */
  target(memoKey: string, candidates: () => Iterable<Uint8Array | undefined>): RequestTarget {
    const hit = this.#lru.get(memoKey);
    if (hit) return hit;
    if (memoKey === this.#lastMalformed) return MALFORMED.target;
    let result: { target: RequestTarget; cacheable: boolean } = MALFORMED;
    for (const der of candidates()) {
      if (der && der.byteLength > 0) this.#parseAttempts++;
      result = parse(der);
      if (result.target.kind !== 'malformed') break;
    }
    if (result.cacheable) this.#lru.set(memoKey, result.target);
    this.#lastMalformed = result.target.kind === 'malformed' ? memoKey : undefined;
    return result.target;
  }
}

const MALFORMED = { target: { kind: 'malformed' }, cacheable: false } as const;

function parse(der: Uint8Array | undefined): { target: RequestTarget; cacheable: boolean } {
  if (!der || der.byteLength === 0) return MALFORMED;
  try {
    const req = parseOcspRequest(der);
    // RFC 9919 §2.1.1: one Request per OCSPRequest. A cached staple covers exactly one certificate.
    if (req.requestCount !== 1) return MALFORMED;
    if (req.certIds.length === 0) return { target: { kind: 'unsupported' }, cacheable: true };
    return { target: { kind: 'certId', keys: req.certIds.map(certIdKey), ids: req.certIds }, cacheable: req.nonce === undefined };
  } catch (e) {
    if (isStaplerError(e)) return MALFORMED;
    throw e;
  }
}

/**
 * Estimated heap bytes of one entry: the key (one byte per character: URLs and latin1 bodies are one-byte
 * strings in V8), the LRU's slots and the target object, and per CertID its key string and three copied
 * Uint8Arrays. The constants are set so the estimate is at or above what was measured (heapUsed after a
 * GC, Node 20, 20,000 entries): ~1,060 bytes per digest-keyed entry, ~780 per URL-keyed one.
 */
function sizeOf(t: RequestTarget, key: string): number {
  let n = 480 + key.length;
  if (t.kind === 'certId') {
    for (const k of t.keys) n += 40 + k.length;
    for (const id of t.ids) n += 80 + 3 * 120 + id.issuerNameHash.byteLength + id.issuerKeyHash.byteLength + id.serialNumber.byteLength;
  }
  return n;
}
