import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { StaplerError } from '../errors.js';
import { responderUrlProblem } from '../fetch/responder-url.js';
import { configSchema, type Config } from './schema.js';

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(configSchema);

/** Reads, validates and resolves a YAML config file. Throws CONFIG_FILE / CONFIG_INVALID naming file and key. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  const abs = resolve(path);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (cause) {
    throw new StaplerError('CONFIG_FILE', `${abs}: ${(cause as Error).message}`, { cause });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (cause) {
    const where = cause instanceof YAMLParseError ? ` line ${cause.linePos?.[0]?.line ?? '?'}` : '';
    throw new StaplerError('CONFIG_INVALID', `${abs}${where}: not valid YAML: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
  return parseConfig(raw ?? {}, abs, env);
}

/** Validates an already-parsed document. Relative paths resolve against the config file's directory. */
export function parseConfig(raw: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const doc = structuredClone(raw) as Record<string, any>;
  if (!validate(doc)) {
    const msgs = (validate.errors ?? []).map(describe);
    throw new StaplerError('CONFIG_INVALID', `${source}: ${[...new Set(msgs)].join('; ')}`);
  }
  const base = source === '<inline>' ? process.cwd() : dirname(source);
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const names = new Set<string>();
  doc.certificates.forEach((c: { name: string }, i: number) => {
    if (names.has(c.name)) throw new StaplerError('CONFIG_INVALID', `${source}: certificates[${i}].name: duplicate name "${c.name}"`);
    names.add(c.name);
  });
  const r = doc.refresh;
  const f = doc.fetch;
  const l = doc.limits;
  const cfg: Config = {
    source,
    listen: doc.listen,
    dataDir: path(doc.dataDir),
    logLevel: doc.logLevel,
    // The token may come from the environment so it need not sit in a file others can read.
    adminToken: env.STAPLERD_ADMIN_TOKEN || doc.adminToken,
    ocsp: { pathPrefix: doc.ocsp.pathPrefix.replace(/\/+$/, '') || '/' },
    http: { allowedHosts: doc.http.allowedHosts.map((h: string) => h.toLowerCase().replace(/\.$/, '')) },
    certificates: doc.certificates.map((c: any) => ({ ...c, chain: path(c.chain), ...(c.issuer && { issuer: path(c.issuer) }) })),
    directories: doc.directories.map((d: any) => ({ ...d, path: path(d.path), ...(d.issuer && { issuer: path(d.issuer) }) })),
    refresh: {
      fraction: r.fraction,
      jitter: r.jitter,
      minIntervalSeconds: seconds(r.minInterval),
      backoffInitialSeconds: seconds(r.backoffInitial),
      backoffMaxSeconds: seconds(r.backoffMax),
      marginSeconds: seconds(r.margin),
      skewSeconds: seconds(r.skew),
      ...(r.assumeValidity !== undefined && { assumeValiditySeconds: seconds(r.assumeValidity) }),
    },
    fetch: {
      timeoutMs: seconds(f.timeout) * 1000,
      maxResponseBytes: f.maxResponseBytes,
      perHostConcurrency: f.perHostConcurrency,
      concurrency: f.concurrency,
      nonce: f.nonce,
      userAgent: f.userAgent,
      ...(f.proxy !== undefined && { proxy: f.proxy }),
      ...(f.proxyAuthFile && { proxyAuthFile: path(f.proxyAuthFile) }),
    },
    limits: {
      maxCertificates: l.maxCertificates,
      requestBodyBytes: l.requestBodyBytes,
      maxUrlBytes: l.maxUrlBytes,
      requestCacheEntries: l.requestCacheEntries,
      requestCacheBytes: l.requestCacheBytes,
      connectionTimeoutMs: seconds(l.connectionTimeout) * 1000,
      keepAliveTimeoutMs: seconds(l.keepAliveTimeout) * 1000,
    },
    metrics: { certificateSeriesLimit: doc.metrics.certificateSeriesLimit, attentionHorizonSeconds: seconds(doc.metrics.attentionHorizon) },
    sinks: {
      files: doc.sinks.files.map((fs: any) => ({
        path: fs.path.startsWith('{') ? fs.path : path(fs.path),
        ...(fs.certificates && { certificates: fs.certificates }),
        createEmpty: fs.createEmpty,
        ...(fs.reload && { reload: { command: fs.reload.command, debounceMs: seconds(fs.reload.debounce) * 1000, timeoutMs: seconds(fs.reload.timeout) * 1000, env: fs.reload.env } }),
      })),
      haproxy: doc.sinks.haproxy.map((h: any) => ({
        socket: h.socket,
        ...(h.certificates && { certificates: h.certificates }),
        timeoutMs: seconds(h.timeout) * 1000,
        checkIntervalMs: seconds(h.checkInterval) * 1000,
      })),
      retryInitialMs: seconds(doc.sinks.retryInitial) * 1000,
      retryMaxMs: seconds(doc.sinks.retryMax) * 1000,
    },
    hooks: Object.fromEntries(
      Object.entries(doc.hooks).map(([k, h]: [string, any]) => [
        k,
        {
          ...(h.command && { command: h.command }),
          ...(h.url && { url: h.url }),
          timeoutMs: seconds(h.timeout) * 1000,
          ...(h.within !== undefined && { withinSeconds: seconds(h.within) }),
          maxPerMinute: h.maxPerMinute,
          burst: h.burst,
          concurrency: h.concurrency,
          env: h.env,
        },
      ]),
    ),
    learning: {
      issuers: doc.learning.issuers.map((l: any) => ({
        ...(l.certificate && { certificate: path(l.certificate) }),
        ...(l.directory && { directory: path(l.directory) }),
        pattern: l.pattern,
        responder: l.responder,
      })),
      idleTimeoutSeconds: seconds(doc.learning.idleTimeout),
      maxEntries: doc.learning.maxEntries,
      maxNewPerMinute: doc.learning.maxNewPerMinute,
      newBurst: doc.learning.newBurst,
      failureTtlSeconds: seconds(doc.learning.failureTtl),
      hooks: doc.learning.hooks,
      sinks: doc.learning.sinks,
    },
    store: {
      kind: doc.store.kind,
      redis: {
        url: doc.store.redis.url,
        keyPrefix: doc.store.redis.keyPrefix,
        ...(doc.store.redis.username !== undefined && { username: doc.store.redis.username }),
        ...(doc.store.redis.passwordFile && { passwordFile: path(doc.store.redis.passwordFile) }),
        ...(doc.store.redis.tls && { tls: { ...doc.store.redis.tls, ...(doc.store.redis.tls.ca && { ca: path(doc.store.redis.tls.ca) }) } }),
        leaseMs: seconds(doc.store.redis.lease) * 1000,
        commandTimeoutMs: seconds(doc.store.redis.commandTimeout) * 1000,
      },
    },
  };
  for (const [i, l] of cfg.learning.issuers.entries()) {
    if (!l.certificate === !l.directory) throw new StaplerError('CONFIG_INVALID', `${source}: learning.issuers[${i}]: set exactly one of certificate or directory`);
  }
  for (const [name, h] of Object.entries(cfg.hooks)) {
    if (h && !h.command && !h.url) throw new StaplerError('CONFIG_INVALID', `${source}: hooks.${name}: set command or url`);
  }
  checkUrls(cfg, source);
  if (cfg.refresh.backoffInitialSeconds > cfg.refresh.backoffMaxSeconds) {
    throw new StaplerError('CONFIG_INVALID', `${source}: refresh.backoffInitial: must not exceed refresh.backoffMax`);
  }
  const assume = cfg.refresh.assumeValiditySeconds;
  if (assume !== undefined && !(assume >= 60 && assume <= 7 * 86400)) {
    throw new StaplerError('CONFIG_INVALID', `${source}: refresh.assumeValidity: must be between 1m and 7d (or left out)`);
  }
  return deepFreeze(cfg);
}

/**
 * URLs staplerd connects to: http(s) only, no whitespace or control characters (the WHATWG parser drops
 * CR and LF silently; issue 12 item 2). The proxy's message never repeats the URL, which may hold a password.
 */
function checkUrls(cfg: Config, source: string): void {
  const urls: Array<[string, string | undefined]> = [
    ...cfg.certificates.map((c, i): [string, string | undefined] => [`certificates[${i}].responder`, c.responder]),
    ...cfg.directories.map((d, i): [string, string | undefined] => [`directories[${i}].responder`, d.responder]),
    ...cfg.learning.issuers.map((l, i): [string, string | undefined] => [`learning.issuers[${i}].responder`, l.responder]),
    ['fetch.proxy', cfg.fetch.proxy],
  ];
  for (const [key, url] of urls) {
    const problem = url === undefined ? undefined : responderUrlProblem(url);
    if (problem) throw new StaplerError('CONFIG_INVALID', `${source}: ${key}: ${problem}`);
  }
  if (cfg.fetch.proxy !== undefined && /^http:\/\/[^/]*@/.test(cfg.fetch.proxy) && cfg.fetch.proxyAuthFile) {
    throw new StaplerError('CONFIG_INVALID', `${source}: fetch.proxyAuthFile: the proxy URL holds credentials already; use one or the other`);
  }
  if (cfg.fetch.proxyAuthFile && cfg.fetch.proxy === undefined) throw new StaplerError('CONFIG_INVALID', `${source}: fetch.proxyAuthFile: set fetch.proxy too`);
}

const UNIT: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "10s", "5m", "1h", "250ms" or a bare number of seconds. */
export function seconds(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v);
  if (!m) throw new RangeError(`bad duration ${v}`);
  return Number(m[1]) * UNIT[m[2] ?? 's']!;
}

/** `certificates[0].chain: must be string` style, the path an operator can find in the file. */
function describe(e: ErrorObject): string {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '');
  if (e.keyword === 'additionalProperties') {
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    return `${path ? `${path}.` : ''}${key}: unknown key`;
  }
  const msg = e.keyword === 'pattern' && /duration|timeout|Interval|backoff|margin|skew/i.test(path) ? 'must be a duration like 30s, 5m, 1h' : e.message;
  return `${path || '(top level)'}: ${msg}`;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
