import type { CertificateView, EntryState } from './service/staple.js';
import { relative } from './http/status-page.js';
import { NO_OCSP_URL_ADVICE, NO_OCSP_URL_ROWS } from './http/states.js';

/** Fixed-width text table (the status page's columns), for a terminal. */
export function statusTable(views: CertificateView[], now: Date): string {
  const t = now.getTime();
  const head = ['CERTIFICATE', 'STATE', 'MUST-STAPLE', 'NEXT UPDATE', 'NEXT REFRESH', 'LAST ERROR'];
  const rows = views.map((v) => [v.name, v.state, v.mustStaple ? 'yes' : '', relative(v.nextUpdate, t), relative(v.nextRefresh, t), v.lastError?.code ?? '']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

export interface StatusOptions {
  /** Every page, not only the first. */
  all?: boolean | undefined;
  /** Filters, as the JSON API takes them: comma-separated states, name prefix. */
  state?: string | undefined;
  prefix?: string | undefined;
}

interface ListPage {
  certificates: CertificateView[];
  next?: string | null;
  matched?: number;
  counts?: Partial<Record<EntryState, number>>;
}

/** Rows per request: the first page alone stays readable; --all asks for the API's largest pages. */
const FIRST_PAGE = 100;
const ALL_PAGE = 500;
/** States that make the exit status 1. */
const UNWELL: EntryState[] = ['failing', 'revoked', 'pending'];

async function getPage(base: string, o: StatusOptions, cursor: string | undefined, limit = o.all ? ALL_PAGE : FIRST_PAGE): Promise<ListPage> {
  const u = new URL('/v1/certificates', base);
  u.searchParams.set('limit', String(limit));
  if (o.state) u.searchParams.set('state', o.state);
  if (o.prefix) u.searchParams.set('prefix', o.prefix);
  if (cursor) u.searchParams.set('cursor', cursor);
  const res = await fetch(u, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`HTTP ${res.status}${res.status === 400 ? `: ${await res.text()}` : ''}`);
  return (await res.json()) as ListPage;
}

/**
 * `staplerd status`: reads a running daemon's JSON API and prints the table, the first page (in name order)
 * or every page with `all`. Exit 0 all well, 1 some certificate failing, revoked or without its first
 * staple (counted over every certificate, whatever is printed), 2 daemon unreachable.
 */
export async function runStatus(url: string, out: (s: string) => void, err: (s: string) => void, o: StatusOptions = {}): Promise<number> {
  const views: CertificateView[] = [];
  let last: ListPage;
  try {
    last = await getPage(url, o, undefined);
    views.push(...last.certificates);
    // A cursor that does not move would loop for ever: every page must end after the one before.
    for (let prev = ''; o.all && last.next && last.next !== prev; ) {
      prev = last.next;
      last = await getPage(url, o, last.next);
      views.push(...last.certificates);
    }
  } catch (e) {
    err(`staplerd status: cannot read ${url}/v1/certificates: ${(e as Error).message}`);
    return 2;
  }
  out(views.length ? statusTable(views, new Date()) : 'no certificates');
  const matched = last.matched ?? views.length;
  if (!o.all && matched > views.length) {
    out(`… ${matched - views.length} more (${matched} in all, by name): staplerd status --all, or narrow with --state failing,revoked or --prefix NAME`);
  }
  const noUrl = last.counts?.not_applicable ?? 0;
  if (noUrl > 0 && !o.state) await adviseNoOcspUrl(url, noUrl, out);
  const unwell = last.counts ? UNWELL.some((s) => (last.counts![s] ?? 0) > 0) : views.some((v) => UNWELL.includes(v.state));
  return unwell ? 1 : 0;
}

/** The certificates without an OCSP URL, with what to do about them (a quiet state, but nginx logs it). */
async function adviseNoOcspUrl(url: string, count: number, out: (s: string) => void): Promise<void> {
  let page: ListPage;
  try {
    page = await getPage(url, { state: 'not_applicable' }, undefined, NO_OCSP_URL_ROWS);
  } catch {
    return; // the table is printed already; the advice is a courtesy
  }
  out('');
  out(`${count} without an OCSP URL. ${NO_OCSP_URL_ADVICE} Their files:`);
  for (const v of page.certificates) out(`  ${v.name}  ${v.source}`);
  if (count > page.certificates.length) out(`  … ${count - page.certificates.length} more: staplerd status --all --state not_applicable`);
}
