import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import { createRequire } from 'node:module';
import type * as undici from 'undici';
import type { buildConnector as BuildConnector, Dispatcher } from 'undici';
import { StaplerError } from '../errors.js';

/**
 * The undici dispatcher every upstream fetch goes through: a pool per responder origin, directly or
 * through an HTTP proxy (issue 13 item 5), with the bounds staplerd needs on hostile responders that
 * undici does not have by itself (issue 12 item 11).
 */

export type ProxyOptions =
  /** `fetch.proxy`: absolute-form requests for http: responders, CONNECT tunnels for https: ones. */
  | { kind: 'url'; url: string; /** `user:password`, e.g. read from fetch.proxyAuthFile; else the URL's userinfo. */ auth?: string | undefined }
  /** fetch.proxy unset: http_proxy / https_proxy / no_proxy (and upper-case forms) from this environment. */
  | { kind: 'env'; env: NodeJS.ProcessEnv }
  | { kind: 'none' };

export interface DispatcherOptions {
  /** Connections (and idle kept-alive connections) per origin. */
  connectionsPerOrigin: number;
  /** Connect (TCP and TLS) timeout; the whole exchange has its own deadline on top. */
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxHeaderBytes: number;
  maxResponseBytes: number;
  proxy: ProxyOptions;
}

/**
 * undici's index also loads fetch, WebSocket, caches, mocks and more: three times the start-up cost of the
 * dispatchers alone (measured: ~1.0 s against ~0.3 s on the loaded 2-core test host). Only these are loaded;
 * the paths are undici 7's (package-lock pins the version; every fetch test fails if one moves).
 */
const load = createRequire(import.meta.url);
const Agent = load('undici/lib/dispatcher/agent.js') as typeof undici.Agent;
const Pool = load('undici/lib/dispatcher/pool.js') as typeof undici.Pool;
const ProxyAgent = load('undici/lib/dispatcher/proxy-agent.js') as typeof undici.ProxyAgent;
const EnvHttpProxyAgent = load('undici/lib/dispatcher/env-http-proxy-agent.js') as typeof undici.EnvHttpProxyAgent;
const buildConnector = load('undici/lib/core/connect.js') as typeof BuildConnector;
export const undiciErrors = load('undici/lib/core/errors.js') as typeof undici.errors;
// What undici's index.js does on load: the request/connect methods live on Dispatcher.prototype, and
// ProxyAgent opens its CONNECT tunnels with them.
Object.assign((load('undici/lib/dispatcher/dispatcher.js') as { prototype: object }).prototype, load('undici/lib/api/index.js'));

/**
 * Bytes a connection may read for one response, framing included: the body cap four times over (chunked
 * framing of a real OCSP body is far below that) plus room for heads. undici bounds the body and each head,
 * not what lies between: chunk extensions (any length), an endless chunk-size line. Without this a hostile
 * responder kept a core busy until the fetch timeout.
 */
export function wireBudgetOf(o: Pick<DispatcherOptions, 'maxHeaderBytes' | 'maxResponseBytes'>): number {
  return o.maxResponseBytes * 4 + o.maxHeaderBytes * 4;
}

type Connector = BuildConnector.connector;

/**
 * Wraps a connector so that each socket is destroyed (FETCH_TOO_LARGE) once it has read more than `budget`
 * bytes since the last request written on it. The 'readable' listener only looks at bytesRead: undici reads
 * the socket itself, and a second 'readable' listener does not take bytes from it.
 */
export function budgeted(connect: Connector, budget: number): Connector {
  return (opts, callback) =>
    connect(opts, (err, socket) => {
      if (err || !socket) return callback(err, null);
      const s = socket as net.Socket;
      let mark = s.bytesRead;
      const write = s.write;
      s.write = function (this: net.Socket, ...args: unknown[]) {
        mark = s.bytesRead;
        return (write as (...a: unknown[]) => boolean).apply(this, args);
      } as typeof s.write;
      s.on('readable', () => {
        if (s.bytesRead - mark > budget) s.destroy(new StaplerError('FETCH_TOO_LARGE', `response over ${budget} bytes on the wire`));
      });
      callback(null, socket);
    });
}

/** `http://user:secret@proxy:3128/` as `http://proxy:3128`: what logs and messages may show of a proxy URL. */
export function redactProxyUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '<unparsable proxy URL>';
  }
}

/** A Proxy-Authorization value for `user:password` (RFC 9110 §11.7.1, Basic per RFC 7617). */
function basicToken(auth: string): string {
  return `Basic ${Buffer.from(auth, 'utf8').toString('base64')}`;
}

/** The userinfo of a proxy URL as `user:password`, percent-decoding undone, or undefined. */
function userinfoOf(u: URL): string | undefined {
  if (!u.username && !u.password) return undefined;
  return `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
}

export function createDispatcher(o: DispatcherOptions): Dispatcher {
  const budget = wireBudgetOf(o);
  const tls = { timeout: o.connectTimeoutMs, ALPNProtocols: ['http/1.1'] };
  const connect = buildConnector(tls);
  // Proxy agents hand their own connectors (the proxy connection, the CONNECT tunnel) to the pools they
  // create: wrap those too, so the budget holds on every path.
  const factory = (origin: string | URL, opts: object): Dispatcher => {
    const c = (opts as { connect?: unknown }).connect;
    return new Pool(origin, { ...opts, ...(typeof c === 'function' && { connect: budgeted(c as Connector, budget) }) });
  };
  const common = {
    connections: o.connectionsPerOrigin,
    pipelining: 1,
    keepAliveTimeout: o.idleTimeoutMs,
    keepAliveMaxTimeout: o.idleTimeoutMs,
    maxHeaderSize: o.maxHeaderBytes,
    maxResponseSize: o.maxResponseBytes,
    // The caller's deadline covers the whole exchange; these only keep undici's own 300 s defaults out of the way.
    headersTimeout: 0,
    bodyTimeout: 0,
    connectTimeout: o.connectTimeoutMs,
  };
  const p = o.proxy;
  if (p.kind === 'none') return new Agent({ ...common, connect: budgeted(connect, budget) });
  // http: responders get absolute-form requests through the proxy, https: ones a CONNECT tunnel. The
  // factory wraps every connector (`connect` here serves the no_proxy hosts of the env form).
  const proxied = { ...common, factory, connect, proxyTunnel: false, proxyTls: tls, requestTls: tls };
  if (p.kind === 'url') {
    const u = new URL(p.url);
    const auth = p.auth ?? userinfoOf(u);
    return new ProxyAgent({ ...proxied, uri: redactProxyUrl(p.url), ...(auth !== undefined && { token: basicToken(auth) }) });
  }
  const e = envProxies(p.env);
  if (!e.httpProxy && !e.httpsProxy) return new Agent({ ...common, connect: budgeted(connect, budget) });
  return new EnvHttpProxyAgent({ ...proxied, ...e });
}

/** The proxy variables as curl and undici read them: the lower-case form first. */
export function envProxies(env: NodeJS.ProcessEnv): { httpProxy: string; httpsProxy: string; noProxy: string } {
  return {
    httpProxy: env.http_proxy ?? env.HTTP_PROXY ?? '',
    httpsProxy: env.https_proxy ?? env.HTTPS_PROXY ?? '',
    noProxy: env.no_proxy ?? env.NO_PROXY ?? '',
  };
}

/**
 * The proxy from config (fetch.proxy, with the credentials of fetch.proxyAuthFile) or, when unset, from
 * the environment; and a line fit for the log saying which, credentials removed.
 */
export async function proxyOptionsOf(
  f: { proxy?: string | undefined; proxyAuthFile?: string | undefined },
  env: NodeJS.ProcessEnv,
  source: string,
): Promise<{ proxy: ProxyOptions; describe: string | undefined }> {
  if (f.proxy === undefined) {
    const e = envProxies(env);
    if (!e.httpProxy && !e.httpsProxy) return { proxy: { kind: 'none' }, describe: undefined };
    const shown = [e.httpProxy && `http: ${redactProxyUrl(e.httpProxy)}`, e.httpsProxy && `https: ${redactProxyUrl(e.httpsProxy)}`, e.noProxy && `no_proxy: ${e.noProxy}`];
    return { proxy: { kind: 'env', env }, describe: `from the environment (${shown.filter(Boolean).join(', ')})` };
  }
  let auth: string | undefined;
  if (f.proxyAuthFile) {
    let text: string;
    try {
      text = await readFile(f.proxyAuthFile, 'utf8');
    } catch (e) {
      throw new StaplerError('CONFIG_FILE', `${source}: fetch.proxyAuthFile: ${(e as Error).message}`, { cause: e });
    }
    auth = text.replace(/\r?\n$/, '');
    // The content is never quoted back: it is a password.
    if (!/^[^:\u0000-\u001f\u007f]+:[^\u0000-\u001f\u007f]*$/.test(auth)) {
      throw new StaplerError('CONFIG_INVALID', `${source}: fetch.proxyAuthFile: ${f.proxyAuthFile} must hold one line user:password`);
    }
  }
  return { proxy: { kind: 'url', url: f.proxy, auth }, describe: redactProxyUrl(f.proxy) };
}
