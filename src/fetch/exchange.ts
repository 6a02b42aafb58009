import type { Dispatcher } from 'undici';
import { StaplerError } from '../errors.js';
import { undiciErrors } from './dispatcher.js';

/**
 * One OCSP exchange over an undici dispatcher (RFC 6960 Appendix A; RFC 9112 message syntax), with the
 * guarantees staplerd's own HTTP/1.1 client gave before undici replaced it: one deadline over connect, head
 * and body; the status and Content-Type checked before the body is read; the body capped while it arrives;
 * abort through a signal; a kept-alive connection that died while idle retried once on a new one.
 */

export interface ExchangeRequest {
  /** `http://host:port`, no userinfo, no path. */
  origin: string;
  /** Origin-form request target (RFC 9112 §3.2.1), built from a parsed URL. */
  path: string;
  method: 'GET' | 'POST';
  /** Flat name/value list; undici adds Host (and Content-Length for a body). */
  headers: string[];
  body?: Uint8Array | undefined;
  /** The exchange fails with FETCH_TIMEOUT after this many ms: connect, head and body together. */
  timeoutMs: number;
  maxBodyBytes: number;
  signal?: AbortSignal | undefined;
  /** Called once the head of the final response is in: an error ends the exchange before its body is read. */
  checkHead?: (status: number, headers: Map<string, string>) => Error | undefined;
}

export interface ExchangeResponse {
  status: number;
  /** Lower-case names; repeated fields joined with ", " (RFC 9110 §5.3). */
  headers: Map<string, string>;
  body: Buffer;
}

/**
 * Interim (1xx) responses accepted before the final one (RFC 9110 §15.2 allows any number; a responder
 * has no reason to send more than one). undici refreshes its head timer on each, so a flood of them
 * would run until the deadline; past this the connection is closed.
 */
export const MAX_INTERIM_RESPONSES = 8;

export async function exchange(d: Dispatcher, r: ExchangeRequest): Promise<ExchangeResponse> {
  const deadline = performance.now() + r.timeoutMs;
  try {
    return await attempt(d, r, deadline, false);
  } catch (e) {
    // A kept-alive connection the server closed while idle fails before any byte of the response: the
    // request is repeated once on a new connection (OCSP requests are safe to repeat, RFC 9110 §9.2.2).
    if (!(e instanceof StaleConnection)) throw e;
    return attempt(d, r, deadline, true);
  }
}

/** Thrown inside this module only: a reused connection died before answering; the request is repeated. */
class StaleConnection extends Error {}

function attempt(d: Dispatcher, r: ExchangeRequest, deadline: number, last: boolean): Promise<ExchangeResponse> {
  return new Promise<ExchangeResponse>((resolve, reject) => {
    if (r.signal?.aborted) return reject(new StaplerError('FETCH_ABORTED'));
    const h = new OcspHandler(r, last, resolve, reject);
    const remaining = Math.max(0, deadline - performance.now());
    h.timer = setTimeout(() => h.fail(new StaplerError('FETCH_TIMEOUT', `${r.timeoutMs} ms`)), remaining);
    if (r.signal) {
      const onAbort = () => h.fail(new StaplerError('FETCH_ABORTED'));
      r.signal.addEventListener('abort', onAbort, { once: true });
      h.unwatch = () => r.signal!.removeEventListener('abort', onAbort);
    }
    try {
      d.dispatch({ origin: r.origin, path: r.path, method: r.method, headers: r.headers, body: r.body && r.body.byteLength > 0 ? r.body : null }, h);
    } catch (e) {
      h.fail(toStaplerError(e, false));
    }
  });
}

class OcspHandler implements Dispatcher.DispatchHandler {
  timer: NodeJS.Timeout | undefined;
  unwatch: (() => void) | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  /** Set once the exchange has ended (either way); later callbacks from undici are ignored. */
  #settled = false;
  #failure: Error | undefined;
  #interim = 0;
  #responded = false;
  #status = 0;
  #headers = new Map<string, string>();
  #body: Buffer[] = [];
  #size = 0;

  constructor(
    readonly r: ExchangeRequest,
    readonly last: boolean,
    readonly resolve: (res: ExchangeResponse) => void,
    readonly reject: (err: Error) => void,
  ) {}

  /** Ends the exchange with `err` and closes its connection (undici does not reuse an aborted one). */
  fail(err: Error): void {
    if (this.#settled) return;
    this.#settle();
    this.#failure = err;
    if (this.#controller && !this.#controller.aborted) this.#controller.abort(err);
    this.reject(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // The deadline or the signal fired while the request waited for a connection.
    if (this.#failure) controller.abort(this.#failure);
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.#settled) return;
    if (status < 200) {
      if (++this.#interim > MAX_INTERIM_RESPONSES) this.fail(protocolError(`more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`));
      return;
    }
    this.#responded = true;
    this.#status = status;
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined) this.#headers.set(name.toLowerCase(), Array.isArray(value) ? value.join(', ') : value);
    }
    const refused = this.r.checkHead?.(status, this.#headers);
    if (refused) return this.fail(refused);
    const cl = this.#headers.get('content-length');
    if (cl === undefined) return;
    // RFC 9112 §6.3: a list of identical values may be read as one; any other list or value is framing no one can trust.
    const parts = cl.split(',').map((p) => p.trim());
    if (!parts.every((p) => /^\d{1,15}$/.test(p) && p === parts[0])) return this.fail(protocolError(`bad Content-Length ${JSON.stringify(cl.slice(0, 40))}`));
    if (Number(parts[0]) > this.r.maxBodyBytes) this.fail(new StaplerError('FETCH_TOO_LARGE', `Content-Length ${parts[0]}`));
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    this.#size += chunk.length;
    if (this.#size > this.r.maxBodyBytes) return this.fail(new StaplerError('FETCH_TOO_LARGE', `over ${this.r.maxBodyBytes} bytes`));
    this.#body.push(chunk);
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    this.#settle();
    const body = this.#body.length === 1 ? this.#body[0]! : Buffer.concat(this.#body, this.#size);
    this.resolve({ status: this.#status, headers: this.#headers, body });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.#settled) return;
    if (!this.last && !this.#responded && isStale(err)) {
      this.#settle();
      return this.reject(new StaleConnection());
    }
    this.fail(toStaplerError(err, this.#responded));
  }

  #settle(): void {
    this.#settled = true;
    clearTimeout(this.timer);
    this.unwatch?.();
  }
}

function protocolError(what: string): StaplerError {
  return new StaplerError('FETCH_PROTOCOL', what);
}

function codeOf(e: unknown): string {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : '';
}

/**
 * A reused connection closed under a request before any byte of its response: undici reports the socket's
 * bytesRead, which is above zero only when this connection carried an earlier response. On a fresh
 * connection the same close is the responder's answer, not retried.
 */
function isStale(e: Error): boolean {
  if (codeOf(e) !== 'UND_ERR_SOCKET' || BAD_FRAMING.test(e.message)) return false;
  return ((e as { socket?: { bytesRead?: number } }).socket?.bytesRead ?? 0) > 0;
}

/** undici's SocketError messages for a response no request asked for (100 Continue, 101 without Upgrade). */
const BAD_FRAMING = /^bad (response|upgrade)$/;

/** undici's and Node's errors onto staplerd's codes; messages carry no proxy credentials (none reach undici's). */
export function toStaplerError(e: unknown, responded: boolean): StaplerError {
  if (e instanceof StaplerError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const code = codeOf(err);
  const opts = { cause: err };
  if (err instanceof undiciErrors.HTTPParserError || code.startsWith('HPE_')) return new StaplerError('FETCH_PROTOCOL', err.message, opts);
  switch (code) {
    case 'UND_ERR_HEADERS_OVERFLOW':
      return new StaplerError('FETCH_PROTOCOL', 'response head (or trailer section) too long', opts);
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return new StaplerError('FETCH_TOO_LARGE', err.message, opts);
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new StaplerError('FETCH_TIMEOUT', err.message, opts);
    case 'UND_ERR_DESTROYED':
    case 'UND_ERR_CLOSED':
      return new StaplerError('FETCH_ABORTED', 'client closed', opts);
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      // undici reports any parse error of a response carrying Content-Length this way.
      return new StaplerError('FETCH_PROTOCOL', 'bad framing (Content-Length does not match the body)', opts);
    case 'ERR_ASSERTION':
      // An undici invariant broken by the response, e.g. a 101 without Upgrade: the connection is already gone.
      return new StaplerError('FETCH_PROTOCOL', `response the HTTP parser could not handle: ${err.message.split('\n')[0]}`, opts);
    case 'UND_ERR_SOCKET':
      if (BAD_FRAMING.test(err.message)) return new StaplerError('FETCH_PROTOCOL', `unexpected interim response (${err.message})`, opts);
      return new StaplerError('FETCH_CONNECT', responded ? 'connection closed mid-response' : 'connection closed before a response', opts);
    default:
      return new StaplerError('FETCH_CONNECT', err.message, opts);
  }
}
