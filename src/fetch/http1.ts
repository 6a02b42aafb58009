import net from 'node:net';
import tls from 'node:tls';
import { StaplerError } from '../errors.js';

/**
 * A small HTTP/1.1 client for OCSP exchanges (RFC 6960 Appendix A; RFC 9112 message syntax): one request
 * per connection at a time, kept-alive connections pooled per origin, the whole exchange under one deadline.
 *
 * Why not node:http: prefetching 10,000 certificates spent more CPU in http.ClientRequest, the agent and
 * the incoming-message streams than in verifying the responses, and on a small host that CPU is shared
 * with everything else. An OCSP exchange needs little of HTTP: a GET or a small POST, a status, three
 * headers and a body of a few KB, framed by Content-Length, chunked coding or the end of the connection.
 */

export interface Http1Request {
  /** The origin (scheme, host, port) and, unless `path` is given, the request target. */
  url: URL;
  /** The request target (origin-form, RFC 9112 §3.2.1) when it is not the URL's own path and query. */
  path?: string | undefined;
  method: 'GET' | 'POST';
  /** Extra header lines, each `Name: value\r\n` (Host, Content-Length and Connection are added here). */
  headerLines: string;
  body?: Uint8Array | undefined;
  /** The exchange fails with FETCH_TIMEOUT after this many ms: connect, head and body together. */
  timeoutMs: number;
  maxBodyBytes: number;
  signal?: AbortSignal | undefined;
  /** Called once the head of the final response is in: an error ends the exchange before its body is read. */
  checkHead?: (status: number, headers: Map<string, string>) => Error | undefined;
}

export interface Http1Response {
  status: number;
  /** Lower-case names; repeated fields joined with ", " (RFC 9110 §5.3). */
  headers: Map<string, string>;
  body: Buffer;
}

export interface Http1Options {
  /** Idle kept-alive connections kept per origin. */
  maxIdlePerOrigin: number;
  /** An idle connection is closed after this long. */
  idleTimeoutMs: number;
  /** Status line and header fields together, bytes. */
  maxHeadBytes?: number;
}

const DEFAULT_MAX_HEAD = 16 * 1024;
/** A chunk-size line (with extensions) longer than this is not an OCSP responder talking (RFC 9112 §7.1). */
const MAX_CHUNK_LINE = 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

function protocolError(what: string): StaplerError {
  return new StaplerError('FETCH_PROTOCOL', what);
}

/** Per-origin pool of idle connections; the caller bounds how many exchanges run per host. */
export class Http1Client {
  readonly #o: Required<Http1Options>;
  readonly #idle = new Map<string, Conn[]>();
  /** One listener per AbortSignal (the daemon passes the same one to every fetch), not one per request. */
  readonly #bySignal = new WeakMap<AbortSignal, Set<Exchange>>();
  #closed = false;

  constructor(o: Http1Options) {
    if (!(o.maxIdlePerOrigin >= 0) || !(o.idleTimeoutMs > 0)) throw new RangeError('Http1Client: maxIdlePerOrigin >= 0 and idleTimeoutMs > 0');
    this.#o = { maxHeadBytes: DEFAULT_MAX_HEAD, ...o };
  }

  async request(r: Http1Request): Promise<Http1Response> {
    if (this.#closed) throw new StaplerError('FETCH_ABORTED', 'client closed');
    const head = requestHead(r);
    const payload = r.body && r.body.byteLength > 0 ? Buffer.concat([head, r.body]) : head;
    const deadline = performance.now() + r.timeoutMs;
    // A kept-alive connection the server closed while idle fails before any byte comes back: the
    // request is retried once on a new connection (OCSP requests are safe to repeat, RFC 9110 §9.2.2).
    const reused = this.#take(r.url.origin);
    if (reused) {
      try {
        return await this.#exchange(reused, r, payload, deadline);
      } catch (e) {
        if (!(e instanceof StaleConnection)) throw e;
      }
    }
    return this.#exchange(this.#connect(r.url), r, payload, deadline);
  }

  /** Closes idle connections; exchanges in flight end on their own (or through their AbortSignal). */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) for (const c of list) c.socket.destroy();
    this.#idle.clear();
  }

  #exchange(conn: Conn, r: Http1Request, payload: Buffer, deadline: number): Promise<Http1Response> {
    return new Promise<Http1Response>((resolve, reject) => {
      const ex = new Exchange(conn, r.maxBodyBytes, this.#o.maxHeadBytes, r.checkHead);
      const remaining = Math.max(0, deadline - performance.now());
      const timer = setTimeout(() => ex.fail(new StaplerError('FETCH_TIMEOUT', `${r.timeoutMs} ms`)), remaining);
      const signal = r.signal;
      let set: Set<Exchange> | undefined;
      if (signal) {
        if (signal.aborted) {
          clearTimeout(timer);
          conn.socket.destroy();
          reject(new StaplerError('FETCH_ABORTED'));
          return;
        }
        set = this.#watch(signal);
        set.add(ex);
      }
      ex.done = (err, res) => {
        clearTimeout(timer);
        set?.delete(ex);
        conn.exchange = undefined;
        if (err || !res) {
          conn.socket.destroy();
          reject(err ?? protocolError('no response'));
          return;
        }
        if (ex.keepAlive && !this.#closed) this.#park(conn);
        else conn.socket.end();
        resolve(res);
      };
      conn.exchange = ex;
      conn.socket.write(payload);
    });
  }

  #watch(signal: AbortSignal): Set<Exchange> {
    let set = this.#bySignal.get(signal);
    if (!set) {
      const s = new Set<Exchange>();
      this.#bySignal.set(signal, (set = s));
      signal.addEventListener('abort', () => {
        for (const ex of [...s]) ex.fail(new StaplerError('FETCH_ABORTED'));
      }, { once: true });
    }
    return set;
  }

  #connect(url: URL): Conn {
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const https = url.protocol === 'https:';
    const port = Number(url.port) || (https ? 443 : 80);
    const socket = https
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    const conn = new Conn(socket, url.origin);
    socket.on('data', (chunk: Buffer) => {
      if (conn.exchange) conn.exchange.onData(chunk);
      else socket.destroy(); // bytes nobody asked for: the connection cannot be trusted for the next request
    });
    socket.on('error', (e: Error) => {
      conn.error = e;
    });
    socket.on('close', () => {
      this.#unpark(conn);
      conn.exchange?.onClose();
    });
    // Idle connections are closed after a while; a busy one is bounded by its exchange's deadline instead.
    socket.setTimeout(this.#o.idleTimeoutMs, () => {
      if (!conn.exchange) socket.destroy();
    });
    return conn;
  }

  #take(origin: string): Conn | undefined {
    const list = this.#idle.get(origin);
    while (list && list.length > 0) {
      const c = list.pop()!;
      if (!c.socket.destroyed && c.socket.writable) {
        c.reused = true;
        return c;
      }
    }
    return undefined;
  }

  #park(conn: Conn): void {
    let list = this.#idle.get(conn.origin);
    if (!list) this.#idle.set(conn.origin, (list = []));
    if (list.length >= this.#o.maxIdlePerOrigin) {
      conn.socket.end();
      return;
    }
    list.push(conn);
  }

  #unpark(conn: Conn): void {
    const list = this.#idle.get(conn.origin);
    if (!list) return;
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#idle.delete(conn.origin);
  }
}

/** Thrown inside the client only: a reused connection died before answering; the request is repeated. */
class StaleConnection extends Error {}

class Conn {
  exchange: Exchange | undefined;
  error: Error | undefined;
  reused = false;
  constructor(
    readonly socket: net.Socket,
    readonly origin: string,
  ) {}
}

type Phase = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'close' | 'done';

/** One request's response, parsed as its bytes arrive. */
class Exchange {
  done: (err: Error | undefined, res?: Http1Response) => void = () => undefined;
  keepAlive = false;
  #phase: Phase = 'head';
  #pending: Buffer | undefined;
  #gotBytes = false;
  #status = 0;
  #headers = new Map<string, string>();
  #body: Buffer[] = [];
  #size = 0;
  #left = 0;

  constructor(
    readonly conn: Conn,
    readonly maxBody: number,
    readonly maxHead: number,
    readonly checkHead: Http1Request['checkHead'],
  ) {}

  fail(err: Error): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    this.done(err);
  }

  onClose(): void {
    if (this.#phase === 'done') return;
    if (this.#phase === 'close') return this.#finish();
    const err = this.conn.error;
    if (!this.#gotBytes && this.conn.reused) return this.fail(new StaleConnection());
    const what = this.#gotBytes ? 'connection closed mid-response' : err ? err.message : 'connection closed before a response';
    this.fail(new StaplerError('FETCH_CONNECT', what, err ? { cause: err } : undefined));
  }

  onData(chunk: Buffer): void {
    if (this.#phase === 'done') return;
    this.#gotBytes = true;
    try {
      this.#consume(this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk);
    } catch (e) {
      this.fail(e as Error);
    }
  }

  #consume(buf: Buffer): void {
    this.#pending = undefined;
    let at = 0;
    while (at < buf.length && this.#phase !== 'done') {
      switch (this.#phase) {
        case 'head': {
          const end = buf.indexOf(CRLFCRLF, at);
          if (end < 0) {
            if (buf.length - at > this.maxHead) throw protocolError(`response head over ${this.maxHead} bytes`);
            this.#pending = buf.subarray(at);
            return;
          }
          if (end - at > this.maxHead) throw protocolError(`response head over ${this.maxHead} bytes`);
          this.#head(buf.toString('latin1', at, end));
          at = end + 4;
          break;
        }
        case 'length': {
          const n = Math.min(this.#left, buf.length - at);
          this.#take(buf.subarray(at, at + n));
          at += n;
          this.#left -= n;
          if (this.#left === 0) this.#finish();
          break;
        }
        case 'close': {
          this.#take(buf.subarray(at));
          at = buf.length;
          break;
        }
        case 'chunk-size': {
          const eol = buf.indexOf('\r\n', at, 'latin1');
          if (eol < 0) {
            if (buf.length - at > MAX_CHUNK_LINE) throw protocolError('chunk-size line too long');
            this.#pending = buf.subarray(at);
            return;
          }
          const line = buf.toString('latin1', at, eol);
          const m = /^([0-9a-fA-F]{1,8})[ \t]*(?:;.*)?$/.exec(line);
          if (!m) throw protocolError('bad chunk-size line');
          this.#left = parseInt(m[1]!, 16);
          at = eol + 2;
          this.#phase = this.#left === 0 ? 'trailers' : 'chunk-data';
          break;
        }
        case 'chunk-data': {
          const n = Math.min(this.#left, buf.length - at);
          this.#take(buf.subarray(at, at + n));
          at += n;
          this.#left -= n;
          if (this.#left === 0) this.#phase = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf': {
          if (buf.length - at < 2) {
            this.#pending = buf.subarray(at);
            return;
          }
          if (buf[at] !== 0x0d || buf[at + 1] !== 0x0a) throw protocolError('chunk not followed by CRLF');
          at += 2;
          this.#phase = 'chunk-size';
          break;
        }
        case 'trailers': {
          // Trailer fields are ignored; the section ends with an empty line (RFC 9112 §7.1.2).
          const eol = buf.indexOf('\r\n', at, 'latin1');
          if (eol < 0) {
            if (buf.length - at > this.maxHead) throw protocolError('trailer section too long');
            this.#pending = buf.subarray(at);
            return;
          }
          const empty = eol === at;
          at = eol + 2;
          if (empty) this.#finish();
          break;
        }
        default:
          return;
      }
    }
    // Bytes after a complete response on a connection with one request in flight: do not reuse it.
    if (this.#phase === 'done' && at < buf.length) this.keepAlive = false;
  }

  #head(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]!);
    if (!m) throw protocolError(`bad status line ${JSON.stringify(lines[0]!.slice(0, 60))}`);
    const status = Number(m[2]);
    // 1xx interim responses precede the final one (RFC 9110 §15.2); 101 would switch protocols.
    if (status >= 100 && status < 200) {
      if (status === 101) throw protocolError('unexpected 101 Switching Protocols');
      return;
    }
    const headers = this.#headers;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0 || line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) throw protocolError('bad header field');
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      const prior = headers.get(name);
      headers.set(name, prior === undefined ? value : `${prior}, ${value}`);
    }
    this.#status = status;
    const refused = this.checkHead?.(status, headers);
    if (refused) throw refused;
    const minor = m[1];
    const connection = (headers.get('connection') ?? '').toLowerCase();
    this.keepAlive = minor === '1' ? !/(?:^|,)\s*close\s*(?:,|$)/.test(connection) : /(?:^|,)\s*keep-alive\s*(?:,|$)/.test(connection);
    // Message body length, RFC 9112 §6.3.
    if (status === 204 || status === 304) return this.#finish();
    const te = headers.get('transfer-encoding');
    if (te !== undefined) {
      if (/(?:^|,)\s*chunked\s*$/i.test(te)) this.#phase = 'chunk-size';
      else {
        this.#phase = 'close';
        this.keepAlive = false;
      }
      return;
    }
    const cl = headers.get('content-length');
    if (cl !== undefined) {
      const parts = cl.split(',').map((s) => s.trim());
      if (!parts.every((p) => /^\d{1,15}$/.test(p) && p === parts[0])) throw protocolError(`bad Content-Length ${JSON.stringify(cl.slice(0, 40))}`);
      this.#left = Number(parts[0]);
      if (this.#left > this.maxBody) throw new StaplerError('FETCH_TOO_LARGE', `Content-Length ${this.#left}`);
      if (this.#left === 0) return this.#finish();
      this.#phase = 'length';
      return;
    }
    this.#phase = 'close';
    this.keepAlive = false;
  }

  #take(b: Buffer): void {
    if (b.length === 0) return;
    this.#size += b.length;
    if (this.#size > this.maxBody) throw new StaplerError('FETCH_TOO_LARGE', `over ${this.maxBody} bytes`);
    this.#body.push(b);
  }

  #finish(): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    const body = this.#body.length === 1 ? this.#body[0]! : Buffer.concat(this.#body, this.#size);
    this.done(undefined, { status: this.#status, headers: this.#headers, body });
  }
}

function requestHead(r: Http1Request): Buffer {
  const path = r.path ?? (r.url.pathname || '/') + r.url.search;
  let head = `${r.method} ${path} HTTP/1.1\r\nHost: ${r.url.host}\r\n${r.headerLines}`;
  if (r.body) head += `Content-Length: ${r.body.byteLength}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}
