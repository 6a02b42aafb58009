import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Stapler } from '../service/stapler.js';
import { apiRoutes } from './api-routes.js';
import { ocspFrameworkErrors, ocspRoutes } from './ocsp-routes.js';

export interface AppDeps {
  stapler: Stapler;
  log: Logger;
  config: Pick<Config, 'ocsp' | 'limits' | 'adminToken'>;
}

/** The HTTP surface, not listening: main.ts listens, tests use inject() or listen on port 0. */
export function buildApp(d: AppDeps): FastifyInstance {
  const { limits } = d.config;
  const app = Fastify({
    loggerInstance: d.log as FastifyBaseLogger,
    // Request logging is off: the OCSP routes are the hot path; state changes are logged by the Stapler.
    logController: new LogController({ disableRequestLogging: true }),
    // The wildcard OCSP route carries the whole base64 request; nginx's can exceed find-my-way's default 100.
    routerOptions: { maxParamLength: limits.maxUrlBytes },
    bodyLimit: limits.requestBodyBytes,
    connectionTimeout: limits.connectionTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.connectionTimeoutMs,
    frameworkErrors: ocspFrameworkErrors(d.config.ocsp.pathPrefix),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    http: { maxHeaderSize: Math.max(limits.maxUrlBytes + 2048, 8192) },
  });
  void app.register(apiRoutes, { stapler: d.stapler, adminToken: d.config.adminToken });
  void app.register(ocspRoutes, {
    pathPrefix: d.config.ocsp.pathPrefix,
    requestBodyBytes: limits.requestBodyBytes,
    requestCacheEntries: limits.requestCacheEntries,
    answer: (k) => d.stapler.answer(k),
  });
  return app;
}
