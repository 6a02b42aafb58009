import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, isStaplerError, StaplerError, type ErrorCode } from '../errors.js';
import type { Stapler } from '../service/stapler.js';
import { OCSP_CONTENT_TYPE } from './ocsp-wire.js';
import { listQuerySchema, pageHref, pageQuery, selectPage, type ListQueryString } from './catalog.js';

/**
 * Certificates per JSON page by default, and at most: a view is ~0.6 KB of JSON, so a page stays well
 * under 1 MB even with long names and error messages.
 */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 500;

export interface ApiRoutesOptions {
  stapler: Stapler;
  /** Bearer token for admin actions; empty disables them. */
  adminToken: string;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time comparison: both sides hashed to the same length first, so length leaks nothing either. */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (!expected || given === undefined) return false;
  return timingSafeEqual(digest(given), digest(expected));
}

export function requireAdmin(token: string) {
  return async (req: FastifyRequest): Promise<void> => {
    if (!token) throw new StaplerError('ADMIN_DISABLED');
    const auth = req.headers.authorization;
    const given = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    if (!tokenMatches(given, token)) throw new StaplerError('UNAUTHORIZED');
  };
}

/** JSON API for people and tools, health and readiness. Errors map to HTTP here and only here. */
export async function apiRoutes(app: FastifyInstance, o: ApiRoutesOptions): Promise<void> {
  const { stapler } = o;
  const nameParam = { params: { type: 'object', properties: { name: { type: 'string', maxLength: 256 } }, required: ['name'] } };

  app.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }));

  app.get('/readyz', { logLevel: 'warn' }, async (_req, reply) => {
    const r = stapler.readiness();
    return reply.code(r.ready ? 200 : 503).send({ ready: r.ready, waiting: r.waiting, waitingCount: r.waitingCount, mustStapleMissing: r.mustStapleMissing, mustStapleMissingCount: r.mustStapleMissingCount, store: r.store });
  });

  app.get<{ Querystring: ListQueryString }>('/v1/certificates', { schema: { querystring: listQuerySchema(MAX_PAGE) } }, async (req, reply) => {
    const q = pageQuery(req.query, DEFAULT_PAGE);
    const page = selectPage(stapler.briefs(), q);
    // Views are built for this page only (the walk above builds none): same tick, so the states agree.
    const certificates = page.names.map((n) => stapler.get(n)).filter((v) => v !== undefined);
    // RFC 8288 §3: the next page as a link, beside `next` in the body.
    if (page.next) void reply.header('link', `<${pageHref('/v1/certificates', q, page.next, req.query.limit !== undefined)}>; rel="next"`);
    return { certificates, next: page.next, matched: page.matched, total: page.total, counts: page.counts };
  });

  app.get<{ Params: { name: string } }>('/v1/certificates/:name', { schema: nameParam }, async (req) => {
    const v = stapler.get(req.params.name);
    if (!v) throw new StaplerError('NOT_FOUND', req.params.name);
    return v;
  });

  app.get<{ Params: { name: string } }>('/v1/certificates/:name/ocsp', { schema: nameParam }, async (req, reply) => {
    if (!stapler.get(req.params.name)) throw new StaplerError('NOT_FOUND', req.params.name);
    const s = stapler.staple(req.params.name);
    if (!s) throw new StaplerError('NO_STAPLE', req.params.name);
    return reply.header('content-type', OCSP_CONTENT_TYPE).header('etag', s.etag).send(s.body);
  });

  app.post<{ Params: { name: string } }>(
    '/v1/certificates/:name/refresh',
    { schema: nameParam, onRequest: requireAdmin(o.adminToken) },
    async (req) => stapler.refresh(req.params.name),
  );

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply: FastifyReply) => {
    if (isStaplerError(err)) return sendJsonError(reply, err.code, err.message);
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: { code: err.code ?? 'BAD_REQUEST', message: err.message } });
    req.log.error({ err }, 'API route failed');
    return reply.code(500).send({ error: { code: 'INTERNAL', message: 'internal error' } });
  });
}

export function sendJsonError(reply: FastifyReply, code: ErrorCode, message: string): FastifyReply {
  return reply.code(ERRORS[code].http).send({ error: { code, message } });
}
