import { StaplerError } from '../errors.js';
import { Http1Client } from './http1.js';
import { KeyedSemaphore } from './limiter.js';

export interface FetchResult {
  body: Uint8Array;
  method: 'GET' | 'POST';
  /** Upstream Cache-Control max-age, seconds, when given (RFC 9919 §6.2). */
  maxAgeSeconds: number | undefined;
  durationMs: number;
}

/** The seam to the CA: one OCSP request in, the raw response bytes out (nothing verified yet). */
export interface ResponderClient {
  /** `signal` aborts the fetch (at shutdown); it then fails with FETCH_ABORTED. */
  fetch(url: string, request: Uint8Array, signal?: AbortSignal): Promise<FetchResult>;
  close(): void;
}

export interface HttpClientOptions {
  timeoutMs: number;
  maxResponseBytes: number;
  perHostConcurrency: number;
  userAgent: string;
}

/** RFC 6960 Appendix A.1: GET only while the whole URL stays within 255 bytes, else POST. */
const MAX_GET_URL = 255;

export function getUrlFor(base: string, request: Uint8Array): string {
  const b64 = encodeURIComponent(Buffer.from(request).toString('base64'));
  return base.endsWith('/') ? base + b64 : `${base}/${b64}`;
}

export class HttpResponderClient implements ResponderClient {
  readonly #o: HttpClientOptions;
  readonly #hosts: KeyedSemaphore;
  readonly #http: Http1Client;
  readonly #headerLines: string;

  constructor(o: HttpClientOptions) {
    for (const k of ['timeoutMs', 'maxResponseBytes', 'perHostConcurrency'] as const) {
      if (!(o[k] > 0)) throw new RangeError(`HttpResponderClient: ${k} must be > 0`);
    }
    if (/[\r\n]/.test(o.userAgent)) throw new RangeError('HttpResponderClient: userAgent must be one line');
    this.#o = o;
    this.#hosts = new KeyedSemaphore(o.perHostConcurrency);
    this.#http = new Http1Client({ maxIdlePerOrigin: o.perHostConcurrency, idleTimeoutMs: IDLE_TIMEOUT_MS });
    // Host is sent from the URL; some CAs answer `unauthorized` without it (RFC 9919 §5).
    this.#headerLines = `User-Agent: ${o.userAgent}\r\nAccept: application/ocsp-response\r\n`;
  }

  async fetch(url: string, request: Uint8Array, signal?: AbortSignal): Promise<FetchResult> {
    if (signal?.aborted) throw new StaplerError('FETCH_ABORTED');
    const parsed = parseResponderUrl(url);
    const release = await this.#hosts.acquire(parsed.host);
    try {
      if (signal?.aborted) throw new StaplerError('FETCH_ABORTED');
      const getUrl = getUrlFor(url, request);
      const started = performance.now();
      const get = getUrl.length <= MAX_GET_URL;
      const res = await this.#http.request({
        url: parsed,
        path: get ? pathOf(getUrl, parsed) : undefined,
        method: get ? 'GET' : 'POST',
        headerLines: get ? this.#headerLines : `${this.#headerLines}Content-Type: application/ocsp-request\r\n`,
        body: get ? undefined : request,
        timeoutMs: this.#o.timeoutMs,
        maxBodyBytes: this.#o.maxResponseBytes,
        signal,
        checkHead,
      });
      // A copy of exactly the body: the socket's read buffer behind it is not kept alive with the staple.
      return { body: new Uint8Array(res.body), method: get ? 'GET' : 'POST', maxAgeSeconds: maxAgeOf(res.headers.get('cache-control')), durationMs: performance.now() - started };
    } finally {
      release();
    }
  }

  close(): void {
    this.#http.close();
  }

}

/** Parsed responder URLs: a handful in practice, bounded for learning mode, which meets many. */
const parsedUrls = new Map<string, URL>();
const MAX_PARSED_URLS = 1024;

/** A responder URL parsed once (every fetch and every fetch metric needs it); FETCH_URL unless http(s). */
export function parseResponderUrl(url: string): URL {
  let parsed = parsedUrls.get(url);
  if (parsed) return parsed;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new StaplerError('FETCH_URL', url, { cause });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new StaplerError('FETCH_URL', url);
  if (parsedUrls.size >= MAX_PARSED_URLS) parsedUrls.clear();
  parsedUrls.set(url, parsed);
  return parsed;
}

/** The origin-form target of a GET URL built on `base`, without parsing it again when it starts with base's origin. */
function pathOf(getUrl: string, base: URL): string {
  const origin = base.origin;
  if (getUrl.startsWith(origin) && getUrl[origin.length] === '/') return getUrl.slice(origin.length);
  const u = new URL(getUrl);
  return u.pathname + u.search;
}

/** Idle kept-alive connections to a responder are closed after this long. */
const IDLE_TIMEOUT_MS = 30_000;

function checkHead(status: number, headers: Map<string, string>): StaplerError | undefined {
  if (status !== 200) {
    return new StaplerError('FETCH_HTTP_STATUS', `HTTP ${status}`, { retryAfter: retryAfterOf(headers.get('retry-after')) });
  }
  const type = headers.get('content-type');
  // RFC 6960 A.1: the answer is application/ocsp-response. An HTML error page behind a 200 is common.
  if (type !== undefined && type.split(';')[0]!.trim().toLowerCase() !== 'application/ocsp-response') {
    return new StaplerError('FETCH_CONTENT_TYPE', type);
  }
  return undefined;
}

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date. */
export function retryAfterOf(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.round((at - now) / 1000));
}

export function maxAgeOf(cc: string | undefined): number | undefined {
  const m = cc ? /(?:^|,)\s*max-age\s*=\s*(\d+)/i.exec(cc) : null;
  return m ? Number(m[1]) : undefined;
}
