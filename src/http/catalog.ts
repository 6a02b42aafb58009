/**
 * Paging and filtering the certificate list (JSON API, status page, `staplerd status`). Pages are in name
 * order (UTF-16 code units, like Array.prototype.sort) and the cursor is the last name shown, base64url:
 * a certificate added or removed between two pages moves nothing, and nothing is held between requests.
 * One pass over the briefs per page picks the page with a bounded insertion list (O(n log limit)), so a
 * page costs the same whatever its position, and no sorted copy of 200,000 names is kept or rebuilt.
 */
import { StaplerError } from '../errors.js';
import type { CertBrief, EntryState } from '../service/staple.js';
import { isState, STATE_INFO, STATES, zeroCounts } from './states.js';

/** Longest cursor accepted: a 1,000-byte name in base64url. */
export const MAX_CURSOR_CHARS = 1336;
/** Longest name prefix accepted as a filter. */
export const MAX_PREFIX_CHARS = 256;

export interface CertificateFilter {
  states?: ReadonlySet<EntryState> | undefined;
  mustStaple?: boolean | undefined;
  prefix?: string | undefined;
}

export interface PageQuery extends CertificateFilter {
  limit: number;
  /** Names after this one (decoded cursor). */
  after?: string | undefined;
}

export interface Page {
  /** In name order, at most `limit`. */
  names: string[];
  /** Cursor of the next page, or null on the last one. */
  next: string | null;
  /** Certificates that match the filter (all pages). */
  matched: number;
  /** All certificates, and their counts by state, whatever the filter. */
  total: number;
  counts: Record<EntryState, number>;
}

export function matches(b: CertBrief, f: CertificateFilter): boolean {
  if (f.states && !f.states.has(b.state)) return false;
  if (f.mustStaple !== undefined && b.mustStaple !== f.mustStaple) return false;
  return f.prefix === undefined || b.name.startsWith(f.prefix);
}

/**
 * The `k` smallest items offered, kept sorted. Offering n items costs O(n log k) comparisons, plus a short
 * array move for the few that get in (names arrive in no set order).
 */
export class Smallest<T> {
  readonly #k: number;
  readonly #cmp: (a: T, b: T) => number;
  readonly items: T[] = [];

  constructor(k: number, cmp: (a: T, b: T) => number) {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`Smallest: k must be a positive integer, got ${k}`);
    this.#k = k;
    this.#cmp = cmp;
  }

  offer(x: T): void {
    const a = this.items;
    if (a.length === this.#k && this.#cmp(x, a[a.length - 1]!) >= 0) return;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#cmp(a[mid]!, x) <= 0) lo = mid + 1;
      else hi = mid;
    }
    a.splice(lo, 0, x);
    if (a.length > this.#k) a.pop();
  }
}

export const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** One page of names in name order, with the whole counts; one pass over the briefs. */
export function selectPage(briefs: Iterable<CertBrief>, q: PageQuery): Page {
  const counts = zeroCounts();
  // One more than the page: whether it exists says if there is a next page.
  const best = new Smallest<string>(q.limit + 1, byName);
  let total = 0;
  let matched = 0;
  for (const b of briefs) {
    total++;
    counts[b.state]++;
    if (!matches(b, q)) continue;
    matched++;
    if (q.after === undefined || b.name > q.after) best.offer(b.name);
  }
  const names = best.items.slice(0, q.limit);
  const next = best.items.length > q.limit ? encodeCursor(names[names.length - 1]!) : null;
  return { names, next, matched, total, counts };
}

/** Certificates whose state is a problem, worst first (then by name), at most `k`; and how many there are. */
export function selectProblems(briefs: Iterable<CertBrief>, k: number): { names: string[]; count: number } {
  const rank = (b: CertBrief): number => STATE_INFO[b.state].problem ?? Infinity;
  const best = new Smallest<CertBrief>(k, (a, b) => rank(a) - rank(b) || byName(a.name, b.name));
  let count = 0;
  for (const b of briefs) {
    if (STATE_INFO[b.state].problem === null) continue;
    count++;
    best.offer(b);
  }
  return { names: best.items.map((b) => b.name), count };
}

export function encodeCursor(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64url');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The name a cursor carries. Strict: canonical base64url of valid UTF-8, or BAD_CURSOR (HTTP 400). */
export function decodeCursor(cursor: string): string {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw new StaplerError('BAD_CURSOR');
  const bytes = Buffer.from(cursor, 'base64url');
  if (bytes.toString('base64url') !== cursor) throw new StaplerError('BAD_CURSOR');
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new StaplerError('BAD_CURSOR');
  }
}

/** The query string both list routes accept (Fastify validates it before the handler runs). */
export function listQuerySchema(maxLimit: number) {
  const one = `(${STATES.join('|')})`;
  return {
    type: 'object',
    properties: {
      limit: { type: 'integer', minimum: 1, maximum: maxLimit },
      cursor: { type: 'string', maxLength: MAX_CURSOR_CHARS },
      state: { type: 'string', maxLength: 256, pattern: `^(${one}(,${one})*)?$` },
      mustStaple: { type: 'boolean' },
      prefix: { type: 'string', maxLength: MAX_PREFIX_CHARS },
    },
  } as const;
}

export interface ListQueryString {
  limit?: number;
  cursor?: string;
  state?: string;
  mustStaple?: boolean;
  prefix?: string;
}

/** A validated query string as a PageQuery (an empty state or prefix means no filter, as a form sends it). */
export function pageQuery(qs: ListQueryString, defaultLimit: number): PageQuery {
  const states = qs.state ? new Set(qs.state.split(',').filter(isState)) : undefined;
  return {
    limit: qs.limit ?? defaultLimit,
    after: qs.cursor ? decodeCursor(qs.cursor) : undefined,
    states,
    mustStaple: qs.mustStaple,
    prefix: qs.prefix || undefined,
  };
}

/** The query string of another page with the same filter (for links). */
export function pageHref(path: string, q: PageQuery, cursor: string | null, explicitLimit: boolean): string {
  const p = new URLSearchParams();
  if (q.states) p.set('state', [...q.states].join(','));
  if (q.mustStaple !== undefined) p.set('mustStaple', String(q.mustStaple));
  if (q.prefix !== undefined) p.set('prefix', q.prefix);
  if (explicitLimit) p.set('limit', String(q.limit));
  if (cursor) p.set('cursor', cursor);
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}
