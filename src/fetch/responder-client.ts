import type { Dispatcher } from 'undici';
import { StaplerError } from '../errors.js';
import { createDispatcher, type ProxyOptions } from './dispatcher.js';
import { exchange } from './exchange.js';
import { KeyedSemaphore } from './limiter.js';
import { getTargetFor, MAX_GET_URL, parseResponderUrl } from './responder-url.js';

export { getUrlFor, parseResponderUrl } from './responder-url.js';
export type { ProxyOptions } from './dispatcher.js';

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
  /** Egress proxy; none unless given (the daemon passes fetch.proxy, or the environment's proxy variables). */
  proxy?: ProxyOptions | undefined;
}

/** Status line and header fields together (and the trailer section), bytes: the old client's head cap. */
const MAX_HEADER_BYTES = 16 * 1024;

/**
 * OCSP over HTTP (RFC 6960 Appendix A) through undici: one pool per responder origin, at most
 * perHostConcurrency exchanges per host at a time, https verified against the system CAs.
 */
export class HttpResponderClient implements ResponderClient {
  readonly #o: HttpClientOptions;
  readonly #hosts: KeyedSemaphore;
  readonly #dispatcher: Dispatcher;
  readonly #getHeaders: string[];
  readonly #postHeaders: string[];
  #closed = false;

  constructor(o: HttpClientOptions) {
    for (const k of ['timeoutMs', 'maxResponseBytes', 'perHostConcurrency'] as const) {
      if (!(o[k] > 0)) throw new RangeError(`HttpResponderClient: ${k} must be > 0`);
    }
    if (/[\u0000-\u001f\u007f]/.test(o.userAgent)) throw new RangeError('HttpResponderClient: userAgent must be one line without control characters');
    this.#o = o;
    this.#hosts = new KeyedSemaphore(o.perHostConcurrency);
    this.#dispatcher = createDispatcher({
      connectionsPerOrigin: o.perHostConcurrency,
      connectTimeoutMs: o.timeoutMs,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      maxHeaderBytes: MAX_HEADER_BYTES,
      maxResponseBytes: o.maxResponseBytes,
      proxy: o.proxy ?? { kind: 'none' },
    });
    // Host is sent from the URL by undici; some CAs answer `unauthorized` without it (RFC 9919 §5).
    this.#getHeaders = ['user-agent', o.userAgent, 'accept', 'application/ocsp-response'];
    this.#postHeaders = [...this.#getHeaders, 'content-type', 'application/ocsp-request'];
  }

  async fetch(url: string, request: Uint8Array, signal?: AbortSignal): Promise<FetchResult> {
    if (signal?.aborted || this.#closed) throw new StaplerError('FETCH_ABORTED');
    const parsed = parseResponderUrl(url);
    const release = await this.#hosts.acquire(parsed.host);
    try {
      if (signal?.aborted || this.#closed) throw new StaplerError('FETCH_ABORTED');
      const started = performance.now();
      const target = getTargetFor(parsed, request);
      const get = parsed.origin.length + target.length <= MAX_GET_URL;
      const res = await exchange(this.#dispatcher, {
        origin: parsed.origin,
        path: get ? target : (parsed.pathname || '/') + parsed.search,
        method: get ? 'GET' : 'POST',
        headers: get ? this.#getHeaders : this.#postHeaders,
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

  /** Ends exchanges in flight (FETCH_ABORTED) and closes every connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dispatcher.destroy().catch(() => undefined);
  }
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
