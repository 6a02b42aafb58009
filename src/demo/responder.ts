/**
 * A small, real OCSP responder on node:http for tests, benchmarks and the demo, with switchable faults
 * that imitate what CAs' responders actually do wrong (hangs, slow bodies, HTTP errors, wrong content
 * types, truncation, bad or misattributed signatures, stale or future times). Without a fault it answers
 * like a well-behaved CA: RFC 6960 §4.2 responses over the RFC 6960 Appendix A HTTP binding.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { CertId } from '../pki/certid.js';
import { parseOcspRequest, type ParsedRequest } from '../pki/request.js';
import { generateKey, issueCertificate, type IssuedCert, type KeyPair } from './ca.js';
import { buildErrorResponse, buildSuccessfulResponse, type CertStatus, type OcspErrorStatus, type SignOptions } from './ocsp-sign.js';

export type Fault =
  | { kind: 'hang' }
  | { kind: 'drip'; bytesPerSecond: number }
  | { kind: 'http-status'; status: number; retryAfter?: string }
  | { kind: 'content-type'; contentType: string }
  | { kind: 'truncate'; bytes: number }
  | { kind: 'oversize'; bytes: number }
  | { kind: 'bad-signature' }
  | { kind: 'signer-no-eku' }
  | { kind: 'signer-other-ca' }
  | { kind: 'signer-expired' }
  | { kind: 'wrong-serial' }
  | { kind: 'this-update-future'; seconds: number }
  | { kind: 'next-update-past' }
  | { kind: 'no-next-update' }
  | { kind: 'ocsp-status'; status: OcspErrorStatus }
  /** Shift thisUpdate (and nextUpdate with it) from the default now - 60 s; negative = older. */
  | { kind: 'this-update-offset'; seconds: number };

export interface ResponderOptions {
  issuer: IssuedCert;
  /** A delegate issued by `issuer` (RFC 6960 §4.2.2.2) or the issuer itself. */
  signer: IssuedCert;
  /** Keyed by lowercase serial hex; serials not listed are answered `unknown` (still signed), like real CAs. */
  statuses: Map<string, CertStatus>;
  /** nextUpdate - thisUpdate; default 3600. */
  validitySeconds?: number;
  host?: string;
  port?: number;
  now?: () => Date;
  /** Send Cache-Control max-age, Last-Modified and Expires as RFC 5019 §6.2 / RFC 9919 responders do. */
  maxAgeHeader?: boolean;
}

export interface ResponderStats {
  requests: number;
  get: number;
  post: number;
  bySerial: Map<string, number>;
}

export interface DemoResponder {
  readonly url: string;
  readonly port: number;
  readonly stats: ResponderStats;
  setFault(f: Fault | null): void;
  setStatus(serialHex: string, s: CertStatus): void;
  /** Closes the server and destroys open sockets, so clients held by `hang` or `drip` do not keep it alive. */
  close(): Promise<void>;
}

/** Requests are a few hundred bytes; 64 KiB is generous and bounds what a client can make us buffer. */
const MAX_BODY = 64 * 1024;
/** thisUpdate lags now so clients with a slightly slow clock do not see a future thisUpdate. */
const SKEW_MS = 60_000;
const OCSP_RESPONSE = 'application/ocsp-response';
const PARSE_MEMO_ENTRIES = 4096;

/** Serial map key: lowercase hex without leading zero octets, so 00-padded serials match too. */
function serialKey(hex: string): string {
  let h = hex.toLowerCase();
  while (h.length > 2 && h.startsWith('00')) h = h.slice(2);
  return h;
}

function serialHexOf(id: CertId): string {
  return serialKey(Buffer.from(id.serialNumber).toString('hex'));
}

/**
 * RFC 6960 Appendix A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}. The URL may
 * carry any prefix and the base64 may contain raw '/' (nginx encodes it, others do not), so try every
 * suffix after a '/' from the longest; a DER SEQUENCE always starts with 'M' in base64, so prefixes fail fast.
 */
function parseFromPath(url: string, parse: (der: Uint8Array) => ParsedRequest): ParsedRequest | undefined {
  for (let i = url.indexOf('/'); i !== -1; i = url.indexOf('/', i + 1)) {
    const rest = url.slice(i + 1);
    if (!rest.startsWith('M') && !rest.startsWith('%')) continue;
    let b64: string;
    try {
      b64 = decodeURIComponent(rest).replace(/ /g, '+');
    } catch {
      continue; // not valid percent-encoding from this position: try a shorter suffix
    }
    try {
      return parse(new Uint8Array(Buffer.from(b64, 'base64')));
    } catch {
      // not a request from this position; try a shorter suffix
    }
  }
  return undefined;
}

/** Collect a POST body up to MAX_BODY; undefined when the client sent more. */
async function readBody(req: IncomingMessage): Promise<Uint8Array | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

interface Reply {
  body: Uint8Array;
  thisUpdate?: Date;
  nextUpdate?: Date;
}

class Responder implements DemoResponder {
  readonly stats: ResponderStats = { requests: 0, get: 0, post: 0, bySerial: new Map() };
  readonly #o: Required<Omit<ResponderOptions, 'host' | 'port'>>;
  readonly #statuses = new Map<string, CertStatus>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Parsed requests by DER: nonce-less requests repeat byte for byte, and parsing costs ~5x signing. */
  readonly #parsed = new Map<string, ParsedRequest>();
  #fault: Fault | null = null;
  #url = '';
  #port = 0;
  /** Certificates for signer faults, created on first use and reused (RFC 6960 §4.2.2.2 violations). */
  #altKey: KeyPair | undefined;
  readonly #altSigners = new Map<string, { signer: IssuedCert; includeCerts: IssuedCert[] }>();

  constructor(o: ResponderOptions) {
    const validitySeconds = o.validitySeconds ?? 3600;
    if (!(validitySeconds > 0)) throw new Error('startResponder: validitySeconds must be > 0');
    this.#o = { ...o, validitySeconds, now: o.now ?? (() => new Date()), maxAgeHeader: o.maxAgeHeader ?? false };
    for (const [k, v] of o.statuses) this.#statuses.set(serialKey(k), v);
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  get url(): string {
    return this.#url;
  }
  get port(): number {
    return this.#port;
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const addr = this.#server.address();
    if (addr === null || typeof addr === 'string') throw new Error('startResponder: no TCP address');
    this.#port = addr.port;
    this.#url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}/`;
  }

  setFault(f: Fault | null): void {
    this.#fault = f;
  }

  setStatus(serialHex: string, s: CertStatus): void {
    this.#statuses.set(serialKey(serialHex), s);
  }

  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    return closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    try {
      let parsed: ParsedRequest | undefined;
      if (req.method === 'GET') {
        this.stats.get++;
        parsed = parseFromPath(req.url ?? '/', (der) => this.#parse(der));
      } else if (req.method === 'POST') {
        this.stats.post++;
        const body = await readBody(req);
        if (!body) return this.#send(res, 413, 'text/plain', Buffer.from('request too large\n'), { Connection: 'close' });
        parsed = this.#tryParse(body);
      } else {
        return this.#send(res, 405, 'text/plain', Buffer.from('method not allowed\n'), { Allow: 'GET, POST' });
      }
      for (const id of parsed?.certIds ?? []) {
        const k = serialHexOf(id);
        this.stats.bySerial.set(k, (this.stats.bySerial.get(k) ?? 0) + 1);
      }
      await this.#answer(res, parsed);
    } catch (err) {
      // Our own bug, not the client's: RFC 6960 §4.2.1 internalError, still as a 200 OCSP body.
      if (res.headersSent) return void res.destroy();
      const detail = String(err).replace(/[^\x20-\x7e]/g, ' ').slice(0, 200); // header-safe
      this.#send(res, 200, OCSP_RESPONSE, buildErrorResponse(2), { 'X-Demo-Error': detail });
    }
  }

  /** parseOcspRequest with a bounded memo (oldest entry evicted); throws on garbage like it. */
  #parse(der: Uint8Array): ParsedRequest {
    const key = Buffer.from(der).toString('base64');
    const hit = this.#parsed.get(key);
    if (hit) return hit;
    const parsed = parseOcspRequest(der);
    if (this.#parsed.size >= PARSE_MEMO_ENTRIES) this.#parsed.delete(this.#parsed.keys().next().value as string);
    this.#parsed.set(key, parsed);
    return parsed;
  }

  #tryParse(der: Uint8Array): ParsedRequest | undefined {
    try {
      return this.#parse(der);
    } catch {
      return undefined; // answered as malformedRequest by the caller
    }
  }

  async #answer(res: ServerResponse, parsed: ParsedRequest | undefined): Promise<void> {
    const fault = this.#fault;
    switch (fault?.kind) {
      case 'hang':
        return; // accept and never answer; close() destroys the socket
      case 'http-status': {
        const extra: Record<string, string> = fault.retryAfter === undefined ? {} : { 'Retry-After': fault.retryAfter };
        return this.#send(res, fault.status, 'text/plain', Buffer.from(`demo fault: HTTP ${fault.status}\n`), extra);
      }
      case 'ocsp-status':
        return this.#send(res, 200, OCSP_RESPONSE, buildErrorResponse(fault.status));
      case 'oversize':
        return this.#sendJunk(res, fault.bytes);
    }
    // RFC 6960 §4.2.1 malformedRequest: unparsable, or no CertID with a hash algorithm we know.
    if (!parsed || parsed.certIds.length === 0) return this.#send(res, 200, OCSP_RESPONSE, buildErrorResponse(1));
    const reply = this.#sign(parsed, fault);
    const headers = this.#cacheHeaders(reply);
    switch (fault?.kind) {
      case 'content-type':
        return this.#send(res, 200, fault.contentType, reply.body, headers);
      case 'truncate':
        return this.#send(res, 200, OCSP_RESPONSE, reply.body.subarray(0, Math.max(0, fault.bytes)), headers);
      case 'drip':
        return this.#drip(res, reply.body, fault.bytesPerSecond, headers);
      default:
        return this.#send(res, 200, OCSP_RESPONSE, reply.body, headers);
    }
  }

  /** A signed answer for every CertID in the request, with time and signer faults applied. */
  #sign(parsed: ParsedRequest, fault: Fault | null): Reply {
    const now = this.#o.now();
    const validityMs = this.#o.validitySeconds * 1000;
    let thisUpdate = new Date(now.getTime() - SKEW_MS);
    if (fault?.kind === 'this-update-future') thisUpdate = new Date(now.getTime() + fault.seconds * 1000);
    if (fault?.kind === 'this-update-offset') thisUpdate = new Date(thisUpdate.getTime() + fault.seconds * 1000);
    // Well past any client's leeway (openssl allows 5 min, HAProxy wants nextUpdate > now + 300 s).
    if (fault?.kind === 'next-update-past') thisUpdate = new Date(now.getTime() - 10 * SKEW_MS - validityMs);
    const nextUpdate = fault?.kind === 'no-next-update' ? undefined : new Date(thisUpdate.getTime() + validityMs);
    const responses = parsed.certIds.map((id) => ({
      certId: fault?.kind === 'wrong-serial' ? withOtherSerial(id) : id,
      status: this.#statuses.get(serialHexOf(id)) ?? ({ kind: 'unknown' } as const),
      thisUpdate,
      nextUpdate,
    }));
    const opts: SignOptions = { responses, signer: this.#o.signer, producedAt: now, corruptSignature: fault?.kind === 'bad-signature' };
    if (parsed.nonce) opts.nonce = parsed.nonce; // RFC 8954 §2.1: echo the client's nonce
    if (fault?.kind === 'signer-no-eku' || fault?.kind === 'signer-other-ca' || fault?.kind === 'signer-expired') {
      Object.assign(opts, this.#altSigner(fault.kind, now));
    }
    const reply: Reply = { body: buildSuccessfulResponse(opts), thisUpdate };
    if (nextUpdate) reply.nextUpdate = nextUpdate;
    return reply;
  }

  /** Signers a client must reject (RFC 6960 §4.2.2.2), issued on first use with one shared key. */
  #altSigner(kind: 'signer-no-eku' | 'signer-other-ca' | 'signer-expired', now: Date): { signer: IssuedCert; includeCerts: IssuedCert[] } {
    const cached = this.#altSigners.get(kind);
    if (cached) return cached;
    const key = (this.#altKey ??= generateKey());
    const t = now.getTime();
    const day = 86_400_000;
    const current = { notBefore: new Date(t - day), notAfter: new Date(t + 90 * day), key };
    let signer: IssuedCert;
    if (kind === 'signer-no-eku') {
      signer = issueCertificate({ subjectCN: 'staplerd demo OCSP signer without EKU', ...current, ocspNoCheck: true }, this.#o.issuer);
    } else if (kind === 'signer-expired') {
      const dates = { notBefore: new Date(t - 30 * day), notAfter: new Date(t - day) };
      signer = issueCertificate({ subjectCN: 'staplerd demo expired OCSP signer', ...current, ...dates, ekuOcspSigning: true, ocspNoCheck: true }, this.#o.issuer);
    } else {
      const otherCa = issueCertificate({ subjectCN: 'staplerd demo unrelated CA', ...current, notAfter: new Date(t + 3650 * day), isCA: true }, 'self');
      signer = issueCertificate({ subjectCN: 'staplerd demo OCSP signer of another CA', ...current, ekuOcspSigning: true, ocspNoCheck: true }, otherCa);
    }
    const entry = { signer, includeCerts: [signer] };
    this.#altSigners.set(kind, entry);
    return entry;
  }

  /** RFC 9919 §6.2-style caching headers, only when asked (many CAs send none). */
  #cacheHeaders(r: Reply): Record<string, string> {
    if (!this.#o.maxAgeHeader || !r.thisUpdate) return {};
    const now = this.#o.now().getTime();
    const h: Record<string, string> = { 'Last-Modified': r.thisUpdate.toUTCString() };
    if (r.nextUpdate) {
      const maxAge = Math.max(0, Math.floor((r.nextUpdate.getTime() - now) / 1000));
      h['Expires'] = r.nextUpdate.toUTCString();
      h['Cache-Control'] = `max-age=${maxAge}, public, no-transform, must-revalidate`;
    }
    return h;
  }

  #send(res: ServerResponse, status: number, type: string, body: Uint8Array, extra: Record<string, string> = {}): void {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(body.byteLength), ...extra });
    res.end(body);
  }

  /** A valid response at `bytesPerSecond`, in ~10 chunks a second, stopped when the client goes away. */
  #drip(res: ServerResponse, body: Uint8Array, bytesPerSecond: number, extra: Record<string, string>): void {
    res.writeHead(200, { 'Content-Type': OCSP_RESPONSE, 'Content-Length': String(body.byteLength), ...extra });
    const rate = Math.max(1, bytesPerSecond);
    const chunk = Math.max(1, Math.round(rate / 10));
    let offset = 0;
    const timer = setInterval(() => {
      res.write(body.subarray(offset, offset + chunk));
      offset += chunk;
      if (offset >= body.byteLength) {
        clearInterval(timer);
        res.end();
      }
    }, (chunk / rate) * 1000);
    res.on('close', () => clearInterval(timer));
  }

  /** A 200 "OCSP" body of `bytes` junk octets, written with backpressure so huge sizes stay cheap. */
  async #sendJunk(res: ServerResponse, bytes: number): Promise<void> {
    res.writeHead(200, { 'Content-Type': OCSP_RESPONSE, 'Content-Length': String(bytes) });
    const block = Buffer.alloc(64 * 1024, 0x5a);
    for (let left = bytes; left > 0 && !res.destroyed; left -= block.byteLength) {
      if (!res.write(block.subarray(0, Math.min(left, block.byteLength)))) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
    }
    if (!res.destroyed) res.end();
  }
}


/** The same CertID for a neighbouring serial: a response a client must not accept for its certificate. */
function withOtherSerial(id: CertId): CertId {
  const serialNumber = id.serialNumber.slice();
  serialNumber[serialNumber.length - 1]! ^= 0x01;
  return { ...id, serialNumber };
}

export async function startResponder(o: ResponderOptions): Promise<DemoResponder> {
  const r = new Responder(o);
  await r.listen(o.host ?? '127.0.0.1', o.port ?? 0);
  return r;
}
