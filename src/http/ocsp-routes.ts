import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CertId } from '../pki/certid.js';
import type { Answer } from '../service/stapler.js';
import type { ServeOutcome } from './metrics.js';
import { OCSP_CONTENT_TYPE, OCSP_ERROR_BODY, type OcspErrorStatus } from './ocsp-wire.js';
import { bodyMemoKey, urlMemoKey, type RequestCache, type RequestTarget } from './request-cache.js';

export interface OcspRoutesOptions {
  /** Path prefix, '/' or '/something' without a trailing slash. */
  pathPrefix: string;
  requestBodyBytes: number;
  /** Shared with the fast path (fast-path.ts), so a request is parsed once whichever path answers it. */
  cache: RequestCache;
  answer: (certIdKey: string) => Answer;
  /** Told the outcome of every OCSP request (metrics); must be cheap, it is on the hot path. */
  onOutcome?: ((o: ServeOutcome) => void) | undefined;
  /** Learning mode: make an unknown certificate known (fetch it), true when it now is. */
  learn?: ((ids: CertId[]) => Promise<boolean>) | undefined;
}

const B64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
/**
 * A GET path that may be an OCSP request: base64 (standard or url-safe), slashes, and percent-escapes
 * (nginx sends `+ / =` as %2B %2F %3D). At the root URL such a path is answered as OCSP, never as JSON;
 * anything else there (favicon.ico, robots.txt) may 404.
 */
const OCSP_SHAPED_PATH = /^\/[A-Za-z0-9+/=_%-]+$/; // one leading '/' only: `\/+` before a class with '/' backtracks
const OUTCOME_OF: Record<OcspErrorStatus, ServeOutcome> = { malformedRequest: 'malformed', tryLater: 'try_later', unauthorized: 'unknown', internalError: 'internal_error' };

/** Base64 of a GET request (RFC 6960 A.1.1) from the raw URL: percent-decoded, leading slashes dropped. */
export function requestTextFromUrl(rawUrl: string, prefix: string): string | undefined {
  const q = rawUrl.indexOf('?');
  let path = q === -1 ? rawUrl : rawUrl.slice(0, q);
  // The prefix is a whole path segment: `/ocsp/MFMw...` drops it, the root URL form `/MFMw...` has none.
  if (prefix !== '/' && path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47)) path = path.slice(prefix.length);
  try {
    // nginx sends `+ / =` as %2B %2F %3D; other clients send them bare. Either way this is the base64.
    path = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  // An OCSPRequest's DER starts with 0x30, so its base64 starts with 'M': leading slashes are never data.
  return path.replace(/^\/+/, '');
}

function derOfBase64(text: string | undefined): Uint8Array | undefined {
  if (text === undefined || text.length === 0 || !B64.test(text)) return undefined;
  return new Uint8Array(Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64'));
}

/**
 * At most this many base64 readings of one GET are decoded and parsed. The whole text serves every
 * origin-form client (nginx, including its `//` and %2F forms, whose leading slashes are dropped before;
 * curl; HAProxy without a proxy). The splits exist only for absolute-form requests that carry the CA's own
 * path before the request (`http://ocsp.ca.example/some/path/MFMw...`): the request is the first '/M'
 * split after that path, and only the CA's path segments that themselves start with 'M' come before it.
 * Real responder URLs have at most two path segments, so three splits cover every CA we know of, while an
 * 8 KB path of `/M` segments, which cost ~100 ms of CPU when every split was tried, now costs four parses.
 */
export const MAX_GET_CANDIDATES = 4;

/**
 * The whole text first; then, for a responder URL with a path of its own (absolute-form requests carry
 * the CA's path, e.g. /ocsp/MFMw...), what follows each '/' that is followed by 'M' (DER SEQUENCE), left
 * to right, up to MAX_GET_CANDIDATES readings in all.
 */
export function* getCandidates(text: string | undefined): Generator<Uint8Array | undefined> {
  yield derOfBase64(text);
  if (!text) return;
  let tried = 1;
  for (let i = text.indexOf('/M'); i !== -1 && tried < MAX_GET_CANDIDATES; i = text.indexOf('/M', i + 1), tried++) yield derOfBase64(text.slice(i + 1));
}

/**
 * What a GET asks for, memoised by the raw URL: the fast path and the Fastify route share this, so a request
 * is parsed once and cached once whichever path answers it, and repeats skip the percent-decoding too.
 */
export function getTarget(cache: RequestCache, url: string, prefix: string): RequestTarget {
  return cache.target(urlMemoKey(url), () => getCandidates(requestTextFromUrl(url, prefix)));
}

/** Whether a GET at the root URL may be an OCSP request (and so must get an OCSP answer). */
export function isOcspShapedPath(url: string): boolean {
  const q = url.indexOf('?');
  return OCSP_SHAPED_PATH.test(q === -1 ? url : url.slice(0, q));
}

/**
 * Absolute-form requests (RFC 9112 §3.2.2), as HAProxy 3.x sends through `ocsp-update.httpproxy`:
 * `GET http://ocsp.ca.example/<b64>` and `POST http://ocsp.ca.example/`. They are answered from the cache
 * like origin-form requests, so they are rewritten onto the OCSP prefix; the host is never contacted.
 */
export function rewriteAbsoluteForm(url: string, pathPrefix: string): string {
  if (url.charCodeAt(0) === 47 /* '/' */ || !/^https?:\/\//i.test(url)) return url;
  const slash = url.indexOf('/', url.indexOf('//') + 2);
  const path = slash === -1 ? '/' : url.slice(slash);
  return pathPrefix === '/' ? path : `${pathPrefix}${path}`;
}

/**
 * The OCSP responder protocol, for nginx `ssl_stapling_responder`, Apache `SSLStaplingForceURL` and
 * anything else that speaks RFC 6960 Appendix A: GET <prefix>/<base64> and POST <prefix>.
 * Request logging stays off here: this is the hot path.
 */
export async function ocspRoutes(app: FastifyInstance, o: OcspRoutesOptions): Promise<void> {
  const cache = o.cache;
  const outcome = o.onOutcome ?? (() => undefined);
  const sendError = (reply: FastifyReply, status: OcspErrorStatus): FastifyReply => {
    outcome(OUTCOME_OF[status]);
    return sendOcspError(reply, status);
  };
  const base = o.pathPrefix === '/' ? '' : o.pathPrefix;

  // Any Content-Type is read as raw bytes: Apache and older clients do not all send application/ocsp-request.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: o.requestBodyBytes }, (_req, body, done) => done(null, body));

  const lookup = (keys: string[]): Answer => {
    let answer: Answer = { kind: 'unknown' };
    for (const k of keys) {
      answer = o.answer(k);
      if (answer.kind !== 'unknown') break;
    }
    return answer;
  };

  const send = (reply: FastifyReply, req: FastifyRequest, target: RequestTarget): FastifyReply | Promise<FastifyReply> => {
    if (target.kind === 'malformed') return sendError(reply, 'malformedRequest');
    if (target.kind === 'unsupported') return sendError(reply, 'unauthorized');
    const answer = lookup(target.keys);
    if (answer.kind === 'unknown' && o.learn) return learnThenSend(reply, req, target);
    if (answer.kind === 'wait') return answer.until.then(() => sendAnswer(reply, req, lookup(target.keys)));
    return sendAnswer(reply, req, answer);
  };

  const learnThenSend = async (reply: FastifyReply, req: FastifyRequest, target: RequestTarget & { kind: 'certId' }): Promise<FastifyReply> => {
    const known = await o.learn!(target.ids);
    return sendAnswer(reply, req, known ? lookup(target.keys) : { kind: 'unknown' });
  };

  const sendAnswer = (reply: FastifyReply, req: FastifyRequest, answer: Answer): FastifyReply => {
    if (answer.kind === 'unknown') return sendError(reply, 'unauthorized');
    // After one wait there is no second: what is still missing now is tryLater.
    if (answer.kind === 'tryLater' || answer.kind === 'wait') return sendError(reply, 'tryLater');
    const s = answer.staple;
    reply.header('content-type', OCSP_CONTENT_TYPE);
    reply.header('etag', s.etag);
    reply.header('last-modified', s.lastModified);
    reply.header('expires', s.expires);
    reply.header('cache-control', `max-age=${answer.maxAgeSeconds}, public, no-transform, must-revalidate`);
    if (req.method === 'GET' && req.headers['if-none-match'] === s.etag) {
      outcome('not_modified');
      return reply.code(304).send();
    }
    outcome('hit');
    return reply.code(200).send(s.body);
  };

  // `config.ocsp` exempts these routes from the Host check (app.ts): nginx sends its upstream's name as
  // Host, HAProxy's httpproxy the CA's, and none of them is an address we could list.
  const opts = { logLevel: 'silent', config: { ocsp: true } } as const;
  const get = (req: FastifyRequest, reply: FastifyReply) => send(reply, req, getTarget(cache, req.raw.url ?? '', o.pathPrefix));
  app.get(`${base}/*`, opts, get);

  const post = (req: FastifyRequest, reply: FastifyReply) => {
    const body = Buffer.isBuffer(req.body) ? req.body : undefined;
    if (!body) return sendError(reply, 'malformedRequest');
    return send(reply, req, cache.target(bodyMemoKey(body), () => [new Uint8Array(body)]));
  };
  // POST <prefix>, and POST <prefix>/<path> for responder URLs with a path (absolute-form, rewritten).
  app.post(base || '/', opts, post);
  app.post(`${base}/*`, opts, post);
  if (base) {
    // The root URL too: every OCSP client assumes a responder answers there (`openssl ocsp -url
    // http://host:port` POSTs to /, nginx pointed at http://host:port/ GETs /<base64>). GET / itself stays
    // the status page and the named routes stay theirs (the router prefers them to a wildcard); every
    // other POST, and every GET whose path could be base64, is OCSP and gets an OCSP answer.
    app.get('/*', opts, (req, reply) => (isOcspShapedPath(req.raw.url ?? '') ? get(req, reply) : reply.callNotFound()));
    app.post('/', opts, post);
    app.post('/*', opts, post);
  }

  app.setErrorHandler((err: { statusCode?: number; code?: string }, req, reply) => {
    // Body limit and similar client errors keep their HTTP status (413, 400); anything unexpected is an
    // OCSP internalError, never a 500 with a stack.
    if (err.statusCode === 413) {
      outcome('too_large');
      return reply.code(413).header('connection', 'close').send();
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return sendError(reply, 'malformedRequest');
    req.log.error({ err }, 'OCSP route failed');
    return sendError(reply, 'internalError');
  });
}

/**
 * Fastify's `frameworkErrors`: a URL the router cannot even decode (bad percent-encoding, a parameter
 * over the length limit) never reaches a route. Under the OCSP prefix it is still an OCSP request, and
 * gets malformedRequest like any other unparsable one, and so does one at the root URL that is OCSP-shaped
 * (a POST, or a base64-ish path); elsewhere it stays a plain 400.
 */
export function ocspFrameworkErrors(pathPrefix: string) {
  return (err: Error & { statusCode?: number }, req: FastifyRequest, reply: FastifyReply): void => {
    const url = req.raw.url ?? '';
    if (pathPrefix === '/' || req.method === 'POST' || url === pathPrefix || url.startsWith(`${pathPrefix}/`) || isOcspShapedPath(url)) {
      sendOcspError(reply, 'malformedRequest');
      return;
    }
    void reply.code(err.statusCode ?? 400).send({ error: { code: 'BAD_URL', message: 'malformed URL' } });
  };
}

function sendOcspError(reply: FastifyReply, status: OcspErrorStatus): FastifyReply {
  return reply.code(200).header('content-type', OCSP_CONTENT_TYPE).header('cache-control', 'no-cache').send(OCSP_ERROR_BODY[status]);
}
