/**
 * The configuration file's shape: a JSON Schema (validated once by ajv at load, defaults filled in there)
 * and the typed, resolved Config that components receive slices of. Every key is documented in
 * config/staplerd.yaml; keep the two in step.
 */
const duration = { type: ['string', 'number'], pattern: '^\\d+(\\.\\d+)?(ms|s|m|h|d)?$', minimum: 0 } as const;
const posInt = { type: 'integer', minimum: 1 } as const;

const certificate = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'chain'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' },
    chain: { type: 'string', minLength: 1 },
    issuer: { type: 'string', minLength: 1 },
    responder: { type: 'string', pattern: '^https?://' },
  },
} as const;

const directory = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    path: { type: 'string', minLength: 1 },
    pattern: { type: 'string', minLength: 1, default: '*.pem' },
    issuer: { type: 'string', minLength: 1 },
    responder: { type: 'string', pattern: '^https?://' },
  },
} as const;

const certFilter = { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 } as const;
const command = { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 } as const;
/** Names of environment variables a child process may inherit (issue 12 item 9: nothing else is passed). */
const envAllow = { type: 'array', items: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' }, maxItems: 64, default: [] } as const;

const fileSink = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    path: { type: 'string', minLength: 1 },
    certificates: certFilter,
    createEmpty: { type: 'boolean', default: false },
    reload: {
      type: 'object',
      additionalProperties: false,
      required: ['command'],
      properties: { command, debounce: { ...duration, default: '2s' }, timeout: { ...duration, default: '30s' }, env: envAllow },
    },
  },
} as const;

const haproxySink = {
  type: 'object',
  additionalProperties: false,
  required: ['socket'],
  properties: {
    socket: { type: 'string', minLength: 1 },
    certificates: certFilter,
    timeout: { ...duration, default: '5s' },
    checkInterval: { ...duration, default: '30s' },
  },
} as const;

const hook = {
  type: 'object',
  additionalProperties: false,
  properties: {
    command,
    url: { type: 'string', pattern: '^https?://' },
    timeout: { ...duration, default: '10s' },
    maxPerMinute: { ...posInt, default: 10 },
    burst: { ...posInt, default: 10 },
    concurrency: { type: 'integer', minimum: 1, maximum: 64, default: 2 },
    env: envAllow,
  },
} as const;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    listen: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        host: { type: 'string', minLength: 1, default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
      },
    },
    dataDir: { type: 'string', minLength: 1, default: './var' },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    adminToken: { type: 'string', default: '' },
    ocsp: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { pathPrefix: { type: 'string', pattern: '^/', default: '/ocsp' } },
    },
    http: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // Host names (no port, no scheme) the status page, JSON API and metrics answer for, besides IP
        // literals and localhost; "*" turns the check off.
        allowedHosts: {
          type: 'array',
          default: [],
          items: { type: 'string', maxLength: 253, pattern: '^(\\*|[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\\.?)$' },
        },
      },
    },
    certificates: { type: 'array', items: certificate, default: [] },
    directories: { type: 'array', items: directory, default: [] },
    refresh: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        fraction: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1, default: 0.5 },
        jitter: { type: 'number', minimum: 0, maximum: 0.5, default: 0.1 },
        minInterval: { ...duration, default: '1m' },
        backoffInitial: { ...duration, default: '30s' },
        backoffMax: { ...duration, default: '1h' },
        margin: { ...duration, default: '5m' },
        skew: { ...duration, default: '5m' },
        assumeValidity: duration,
      },
    },
    fetch: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        timeout: { ...duration, default: '10s' },
        maxResponseBytes: { ...posInt, default: 65536 },
        perHostConcurrency: { ...posInt, default: 8 },
        concurrency: { ...posInt, default: 64 },
        nonce: { type: 'boolean', default: false },
        userAgent: { type: 'string', default: 'staplerd' },
        // Egress proxy (http://[user:password@]host:port); unset: http_proxy/https_proxy/no_proxy from the environment.
        proxy: { type: 'string', pattern: '^http://' },
        /** A file holding `user:password` for the proxy, so the secret need not sit in this file. */
        proxyAuthFile: { type: 'string', minLength: 1 },
      },
    },
    sinks: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        files: { type: 'array', items: fileSink, default: [] },
        haproxy: { type: 'array', items: haproxySink, default: [] },
        retryInitial: { ...duration, default: '1s' },
        retryMax: { ...duration, default: '1m' },
      },
    },
    hooks: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        revoked: hook,
        mustStapleExpiring: { ...hook, properties: { ...hook.properties, within: { ...duration, default: '1h' } } },
      },
    },
    learning: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        issuers: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['responder'],
            properties: { certificate: { type: 'string', minLength: 1 }, directory: { type: 'string', minLength: 1 }, pattern: { type: 'string', minLength: 1, default: '*.pem' }, responder: { type: 'string', pattern: '^https?://' } },
          },
        },
        idleTimeout: { ...duration, default: '1h' },
        maxEntries: { ...posInt, default: 10000 },
        maxNewPerMinute: { ...posInt, default: 600 },
        newBurst: { ...posInt, default: 100 },
        failureTtl: { ...duration, default: '5m' },
        hooks: { type: 'boolean', default: false },
        sinks: { type: 'boolean', default: false },
      },
    },
    store: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        kind: { enum: ['local', 'redis'], default: 'local' },
        redis: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            url: { type: 'string', pattern: '^rediss?://', default: 'redis://127.0.0.1:6379/0' },
            keyPrefix: { type: 'string', default: 'staplerd:' },
            username: { type: 'string' },
            passwordFile: { type: 'string', minLength: 1 },
            tls: {
              type: 'object',
              additionalProperties: false,
              properties: { ca: { type: 'string', minLength: 1 }, rejectUnauthorized: { type: 'boolean', default: true }, serverName: { type: 'string' } },
            },
            lease: { ...duration, default: '30s' },
            commandTimeout: { ...duration, default: '2s' },
          },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxCertificates: { ...posInt, default: 200000 },
        requestBodyBytes: { ...posInt, default: 16384 },
        maxUrlBytes: { ...posInt, default: 8192 },
        requestCacheEntries: { ...posInt, default: 100000 },
        requestCacheBytes: { ...posInt, default: 67108864 },
        connectionTimeout: { ...duration, default: '30s' },
        keepAliveTimeout: { ...duration, default: '5s' },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        certificateSeriesLimit: { type: 'integer', minimum: 0, default: 1000 },
        attentionHorizon: { ...duration, default: '2h' },
      },
    },
  },
} as const;

export interface CertificateConfig {
  name: string;
  chain: string;
  issuer?: string;
  responder?: string;
}

export interface DirectoryConfig {
  path: string;
  pattern: string;
  issuer?: string;
  responder?: string;
}

export interface RefreshConfig {
  fraction: number;
  jitter: number;
  minIntervalSeconds: number;
  backoffInitialSeconds: number;
  backoffMaxSeconds: number;
  marginSeconds: number;
  skewSeconds: number;
  /** Responses without nextUpdate are valid this long after thisUpdate; undefined: refused (the default). */
  assumeValiditySeconds?: number | undefined;
}

export interface FetchConfig {
  timeoutMs: number;
  maxResponseBytes: number;
  perHostConcurrency: number;
  concurrency: number;
  nonce: boolean;
  userAgent: string;
  /** fetch.proxy as written (it may hold userinfo: never log it, see redactProxyUrl). */
  proxy?: string;
  /** Absolute path of a file holding `user:password` for the proxy; read at start. */
  proxyAuthFile?: string;
}

export interface LimitsConfig {
  maxCertificates: number;
  requestBodyBytes: number;
  maxUrlBytes: number;
  requestCacheEntries: number;
  requestCacheBytes: number;
  connectionTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export interface MetricsConfig {
  /** Certificates that get /metrics series of their own (failing, revoked, unknown, running out, must-staple), at most. */
  certificateSeriesLimit: number;
  /** A staple servable for less than this gets its certificate series of its own. */
  attentionHorizonSeconds: number;
}

export interface ReloadConfig {
  command: string[];
  debounceMs: number;
  timeoutMs: number;
  /** Environment variables passed through besides PATH, HOME, LANG, LC_*, TZ (see sinks/child-env.ts). */
  env?: string[];
}

export interface FileSinkConfig {
  /** Template: {name}, {chain} (the bundle's path), {fingerprint}. */
  path: string;
  certificates?: string[];
  createEmpty: boolean;
  reload?: ReloadConfig;
}

export interface HaproxySinkConfig {
  /** A unix socket path, or host:port. */
  socket: string;
  certificates?: string[];
  timeoutMs: number;
  checkIntervalMs: number;
}

export interface SinksConfig {
  files: FileSinkConfig[];
  haproxy: HaproxySinkConfig[];
  retryInitialMs: number;
  retryMaxMs: number;
}

export interface HookConfig {
  command?: string[];
  url?: string;
  timeoutMs: number;
  /** Token bucket: runs refill at this rate, up to `burst` at once; runs beyond it are dropped and counted. */
  maxPerMinute: number;
  burst: number;
  /** Runs (command and webhook together) at once; more wait, up to `burst`, beyond that dropped. */
  concurrency: number;
  /** Environment variables passed through to the command besides the base set (see sinks/child-env.ts). */
  env: string[];
}

export interface HooksConfig {
  revoked?: HookConfig;
  mustStapleExpiring?: HookConfig & { withinSeconds: number };
}

export interface LearningIssuerConfig {
  certificate?: string;
  directory?: string;
  pattern: string;
  responder: string;
}

export interface LearningConfig {
  issuers: LearningIssuerConfig[];
  idleTimeoutSeconds: number;
  maxEntries: number;
  /** New certificates learned: a token bucket of this rate and burst; beyond it requests get tryLater. */
  maxNewPerMinute: number;
  newBurst: number;
  /** A learned certificate whose first fetch failed is answered tryLater for this long, not refetched. */
  failureTtlSeconds: number;
  /** Run hooks for learned certificates (off: anyone could fire them by asking). */
  hooks: boolean;
  /** Push learned certificates' staples to the sinks (off: one file per certificate anyone asks about). */
  sinks: boolean;
}

export interface RedisStoreConfig {
  url: string;
  keyPrefix: string;
  username?: string;
  /** Read at start; or put the password in the URL, or in STAPLERD_REDIS_PASSWORD. */
  passwordFile?: string;
  tls?: { ca?: string; rejectUnauthorized: boolean; serverName?: string };
  leaseMs: number;
  commandTimeoutMs: number;
}

export interface StoreConfig {
  kind: 'local' | 'redis';
  redis: RedisStoreConfig;
}

export interface Config {
  /** Absolute path of the file this came from (for messages), or '<inline>'. */
  source: string;
  listen: { host: string; port: number };
  dataDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  adminToken: string;
  ocsp: { pathPrefix: string };
  /** Host names the non-OCSP routes answer for (lower case, no trailing dot); '*' = any. */
  http: { allowedHosts: string[] };
  certificates: CertificateConfig[];
  directories: DirectoryConfig[];
  refresh: RefreshConfig;
  fetch: FetchConfig;
  limits: LimitsConfig;
  metrics: MetricsConfig;
  sinks: SinksConfig;
  hooks: HooksConfig;
  learning: LearningConfig;
  store: StoreConfig;
}
