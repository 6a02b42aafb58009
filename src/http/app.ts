import { createServer } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { createFastPath } from './fast-path.js';
import { RequestCache } from './request-cache.js';
import { hostAllowed, hostPolicy } from './host-check.js';
import { ERRORS } from '../errors.js';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Stapler } from '../service/stapler.js';
import { apiRoutes } from './api-routes.js';
import type { Metrics } from './metrics.js';
import { statusPageRoute } from './status-page.js';
import { ocspFrameworkErrors, ocspRoutes, rewriteAbsoluteForm } from './ocsp-routes.js';
import type { CertId } from '../pki/certid.js';
import type { Answer } from '../service/stapler.js';

export interface AppDeps {
  stapler: Stapler;
  metrics?: Metrics | undefined;
  version?: string;
  /** Learning mode: answers through the learner, and learns unknown certificates of trusted issuers. */
  learner?: { answer(key: string): Answer; learn(ids: CertId[]): Promise<boolean> } | undefined;
  log: Logger;
  /** `http` left out: the Host check with no extra names (IP literals and localhost only). */
  config: Pick<Config, 'ocsp' | 'limits' | 'adminToken'> & Partial<Pick<Config, 'http'>>;
  /** The memo of parsed OCSP requests; made from `limits` when left out (tests pass one to read its accounting). */
  requestCache?: RequestCache | undefined;
}

/** The HTTP surface, not listening: main.ts listens, tests use inject() or listen on port 0. */
export function buildApp(d: AppDeps): FastifyInstance {
  const { limits } = d.config;
  const metrics = d.metrics;
  const cache = d.requestCache ?? new RequestCache({ maxEntries: limits.requestCacheEntries, maxBytes: limits.requestCacheBytes });
  const hosts = hostPolicy(d.config.http?.allowedHosts ?? []);
  const answer = d.learner ? (k: string) => d.learner!.answer(k) : (k: string) => d.stapler.answer(k);
  const onOutcome = metrics ? (o: Parameters<typeof metrics.served>[0]) => metrics.served(o) : undefined;
  const fast = createFastPath({ pathPrefix: d.config.ocsp.pathPrefix, maxUrlBytes: limits.maxUrlBytes, cache, answer, onOutcome });
  const app = Fastify({
    loggerInstance: d.log as FastifyBaseLogger,
    // Request logging is off: the OCSP routes are the hot path; state changes are logged by the Stapler.
    logController: new LogController({ disableRequestLogging: true }),
    // The wildcard OCSP route carries the whole base64 request; nginx's can exceed find-my-way's default 100.
    routerOptions: { maxParamLength: limits.maxUrlBytes },
    bodyLimit: limits.requestBodyBytes,
    frameworkErrors: ocspFrameworkErrors(d.config.ocsp.pathPrefix),
    rewriteUrl: (req) => rewriteAbsoluteForm(req.url ?? '/', d.config.ocsp.pathPrefix),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Our own server, so that staple hits skip Fastify entirely (fast-path.ts); Fastify leaves the
    // timeouts to whoever builds the server, so they are all set here.
    serverFactory: (handler) => {
      const server = createServer(
        {
          // Room for 16 KiB of headers beyond the longest URL we accept, so an overlong URL gets its 414.
          maxHeaderSize: limits.maxUrlBytes + 16384,
          // Node checks request and header deadlines only this often (30 s by default): a client dripping
          // its headers a byte at a time would otherwise hold a connection far longer than connectionTimeout.
          headersTimeout: limits.connectionTimeoutMs,
          requestTimeout: limits.connectionTimeoutMs,
          connectionsCheckingInterval: Math.max(250, Math.min(1000, limits.connectionTimeoutMs / 2)),
          keepAliveTimeout: limits.keepAliveTimeoutMs,
        },
        (req, res) => {
          if (!fast(req, res)) handler(req, res);
        },
      );
      server.setTimeout(limits.connectionTimeoutMs);
      return server;
    },
  });
  app.addHook('preClose', (done) => {
    fast.closing = true;
    done();
  });
  // One onRequest hook, for every request Fastify sees (the fast path's hits never get here):
  // - RFC 9110 §15.5.15: a URL longer than we accept is 414, before any parsing.
  // - DNS rebinding (host-check.ts): every route but the OCSP ones answers only for expected Host names.
  //   The OCSP routes carry `config.ocsp`: nginx sends its upstream's name, HAProxy's httpproxy the CA's.
  const hostRefused = `HOST_NOT_ALLOWED: ${ERRORS.HOST_NOT_ALLOWED.message}\n`;
  app.addHook('onRequest', (req, reply, done) => {
    if ((req.raw.url?.length ?? 0) > limits.maxUrlBytes) return void reply.code(414).header('connection', 'close').send();
    if (hosts.any || (req.routeOptions.config as { ocsp?: boolean } | undefined)?.ocsp || hostAllowed(req.headers.host, hosts)) return done();
    void reply.code(ERRORS.HOST_NOT_ALLOWED.http).header('content-type', 'text/plain; charset=utf-8').header('cache-control', 'no-store').send(hostRefused);
  });
  void app.register(apiRoutes, { stapler: d.stapler, adminToken: d.config.adminToken });
  statusPageRoute(app, { stapler: d.stapler, version: d.version ?? '' });
  if (metrics) {
    app.get('/metrics', { logLevel: 'warn' }, async (_req, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.render()));
  }
  void app.register(ocspRoutes, {
    pathPrefix: d.config.ocsp.pathPrefix,
    requestBodyBytes: limits.requestBodyBytes,
    cache,
    answer,
    learn: d.learner ? (ids) => d.learner!.learn(ids) : undefined,
    onOutcome,
  });
  return app;
}
