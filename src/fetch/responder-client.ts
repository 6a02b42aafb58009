import http from 'node:http';
import https from 'node:https';
import { StaplerError } from '../errors.js';
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
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;

  constructor(o: HttpClientOptions) {
    for (const k of ['timeoutMs', 'maxResponseBytes', 'perHostConcurrency'] as const) {
      if (!(o[k] > 0)) throw new RangeError(`HttpResponderClient: ${k} must be > 0`);
    }
    this.#o = o;
    this.#hosts = new KeyedSemaphore(o.perHostConcurrency);
    this.#httpAgent = new http.Agent({ keepAlive: true, maxSockets: o.perHostConcurrency });
    this.#httpsAgent = new https.Agent({ keepAlive: true, maxSockets: o.perHostConcurrency });
  }

  async fetch(url: string, request: Uint8Array, signal?: AbortSignal): Promise<FetchResult> {
    if (signal?.aborted) throw new StaplerError('FETCH_ABORTED');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (cause) {
      throw new StaplerError('FETCH_URL', url, { cause });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new StaplerError('FETCH_URL', url);
    const release = await this.#hosts.acquire(parsed.host);
    try {
      if (signal?.aborted) throw new StaplerError('FETCH_ABORTED');
      const getUrl = getUrlFor(url, request);
      const started = performance.now();
      const res = getUrl.length <= MAX_GET_URL ? await this.#send(new URL(getUrl), 'GET', undefined, signal) : await this.#send(parsed, 'POST', request, signal);
      return { ...res, durationMs: performance.now() - started };
    } finally {
      release();
    }
  }

  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  #send(url: URL, method: 'GET' | 'POST', body: Uint8Array | undefined, signal: AbortSignal | undefined): Promise<Omit<FetchResult, 'durationMs'>> {
    const o = this.#o;
    const isHttps = url.protocol === 'https:';
    // Host is set by node from the URL; some CAs answer `unauthorized` without it (RFC 9919 §5).
    const headers: Record<string, string> = { 'user-agent': o.userAgent, accept: 'application/ocsp-response' };
    if (body) {
      headers['content-type'] = 'application/ocsp-request';
      headers['content-length'] = String(body.byteLength);
    }
    return new Promise((resolve, reject) => {
      const req = (isHttps ? https : http).request(url, { method, headers, agent: isHttps ? this.#httpsAgent : this.#httpAgent });
      // One deadline for connect, headers and the whole body: a responder dripping bytes cannot hold us.
      const deadline = setTimeout(() => req.destroy(new StaplerError('FETCH_TIMEOUT', `${o.timeoutMs} ms`)), o.timeoutMs);
      const onAbort = () => req.destroy(new StaplerError('FETCH_ABORTED'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const fail = (e: unknown) => {
        clearTimeout(deadline);
        signal?.removeEventListener('abort', onAbort);
        reject(e instanceof StaplerError ? e : new StaplerError('FETCH_CONNECT', (e as Error).message, { cause: e }));
      };
      req.on('error', fail);
      req.on('response', (res) => {
        res.on('error', fail);
        const err = checkHead(res, o.maxResponseBytes);
        if (err) {
          res.resume();
          req.destroy(err);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > o.maxResponseBytes) req.destroy(new StaplerError('FETCH_TOO_LARGE', `over ${o.maxResponseBytes} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(deadline);
          signal?.removeEventListener('abort', onAbort);
          if (!res.complete) return fail(new StaplerError('FETCH_CONNECT', 'connection closed mid-body'));
          resolve({ body: new Uint8Array(Buffer.concat(chunks, size)), method, maxAgeSeconds: maxAgeOf(res.headers['cache-control']) });
        });
      });
      req.end(body);
    });
  }
}

function checkHead(res: http.IncomingMessage, cap: number): StaplerError | undefined {
  if (res.statusCode !== 200) {
    return new StaplerError('FETCH_HTTP_STATUS', `HTTP ${res.statusCode}`, { retryAfter: retryAfterOf(res.headers['retry-after']) });
  }
  const type = res.headers['content-type'];
  // RFC 6960 A.1: the answer is application/ocsp-response. An HTML error page behind a 200 is common.
  if (type !== undefined && type.split(';')[0]!.trim().toLowerCase() !== 'application/ocsp-response') {
    return new StaplerError('FETCH_CONTENT_TYPE', type);
  }
  const len = Number(res.headers['content-length'] ?? 0);
  if (len > cap) return new StaplerError('FETCH_TOO_LARGE', `Content-Length ${len}`);
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
