/**
 * The configuration file's shape: a JSON Schema (validated once by ajv at load, defaults filled in there)
 * and the typed, resolved Config that components receive slices of. Every key is documented in
 * config/staplerd.yaml; keep the two in step.
 */
const duration = { type: ['string', 'number'], pattern: '^\\d+(\\.\\d+)?(ms|s|m|h|d)?$' } as const;
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
        connectionTimeout: { ...duration, default: '30s' },
        keepAliveTimeout: { ...duration, default: '5s' },
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
}

export interface FetchConfig {
  timeoutMs: number;
  maxResponseBytes: number;
  perHostConcurrency: number;
  concurrency: number;
  nonce: boolean;
  userAgent: string;
}

export interface LimitsConfig {
  maxCertificates: number;
  requestBodyBytes: number;
  maxUrlBytes: number;
  requestCacheEntries: number;
  connectionTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export interface Config {
  /** Absolute path of the file this came from (for messages), or '<inline>'. */
  source: string;
  listen: { host: string; port: number };
  dataDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  adminToken: string;
  ocsp: { pathPrefix: string };
  certificates: CertificateConfig[];
  directories: DirectoryConfig[];
  refresh: RefreshConfig;
  fetch: FetchConfig;
  limits: LimitsConfig;
}
