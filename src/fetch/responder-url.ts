import { StaplerError } from '../errors.js';

/**
 * Responder URLs come from certificates (AIA, RFC 5280 §4.2.2.1) and from config: both may be written by
 * someone else (a tenant's certificate file), so a URL is checked before anything reaches a socket.
 */

/** RFC 6960 Appendix A.1: GET only while the whole URL stays within 255 bytes, else POST. */
export const MAX_GET_URL = 255;
/** Longer than any real responder URL; a bound for the parse cache and for error messages. */
const MAX_URL_CHARS = 2048;

/**
 * C0 controls, DEL, and whitespace anywhere in the string. The WHATWG parser silently drops tab, CR and LF
 * (so `new URL` alone hides them) and a request target sliced from the raw string would carry them onto
 * the wire: `http://127.0.0.1:6379/\r\nSET k v\r\n` once wrote a Redis command (issue 12 item 2).
 * RFC 3986 §2 has no unencoded space or control character in a URI.
 */
const UNSAFE = /[\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;

/** Parsed responder URLs: a handful in practice, bounded for learning mode, which meets many. */
const parsedUrls = new Map<string, URL>();
const MAX_PARSED_URLS = 1024;

/** The URL quoted for a message: JSON-escaped (no control character reaches a log line) and cut short. */
export function quoteUrl(url: string): string {
  return JSON.stringify(url.length > 100 ? `${url.slice(0, 100)}...` : url);
}

/** Why `url` cannot be a responder URL, or undefined when it can. Also used for config keys. */
export function responderUrlProblem(url: string): string | undefined {
  if (url.length > MAX_URL_CHARS) return `longer than ${MAX_URL_CHARS} characters`;
  if (UNSAFE.test(url)) return 'contains whitespace or a control character';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'not an http: or https: URL';
  if (!parsed.hostname) return 'has no host';
  return undefined;
}

/** A responder URL parsed once (every fetch and every fetch metric needs it); FETCH_URL unless it is safe http(s). */
export function parseResponderUrl(url: string): URL {
  let parsed = parsedUrls.get(url);
  if (parsed) return parsed;
  const problem = responderUrlProblem(url);
  if (problem) throw new StaplerError('FETCH_URL', `${quoteUrl(url)}: ${problem}`);
  parsed = new URL(url);
  if (parsedUrls.size >= MAX_PARSED_URLS) parsedUrls.clear();
  parsedUrls.set(url, parsed);
  return parsed;
}

/**
 * The origin-form GET target (RFC 9112 §3.2.1) for `request` under the responder URL: its path, a slash,
 * the URL-encoded base64 DER (RFC 6960 A.1), then the URL's query if it has one. Built from the parsed URL,
 * never from the raw string.
 */
export function getTargetFor(base: URL, request: Uint8Array): string {
  const b64 = encodeURIComponent(Buffer.from(request).toString('base64'));
  const path = base.pathname || '/';
  return `${path.endsWith('/') ? path : `${path}/`}${b64}${base.search}`;
}

/** The whole GET URL (origin and target): what RFC 6960 A.1's 255 bytes are counted on. */
export function getUrlFor(base: string, request: Uint8Array): string {
  const parsed = parseResponderUrl(base);
  return parsed.origin + getTargetFor(parsed, request);
}
