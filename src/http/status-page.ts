import type { FastifyInstance } from 'fastify';
import { isStaplerError } from '../errors.js';
import type { CertificateView, EntryState } from '../service/staple.js';
import type { Stapler } from '../service/stapler.js';
import { listQuerySchema, pageHref, pageQuery, selectPage, selectProblems, type ListQueryString, type Page, type PageQuery } from './catalog.js';
import { NO_OCSP_URL_ADVICE, NO_OCSP_URL_ROWS, STATE_INFO, STATES } from './states.js';

/**
 * Rows per page by default and at most, and problems listed above the table: a row is ~0.8 KB of HTML, so
 * a page stays under 512 KB whatever the number of certificates.
 */
export const PAGE_ROWS = 100;
export const MAX_PAGE_ROWS = 300;
export const PROBLEM_ROWS = 50;

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]!);
}

/** "in 52m", "3h 10m ago": coarse and readable; the exact time is in the title attribute. */
export function relative(iso: string | null, now: number): string {
  if (!iso) return '–';
  const d = Date.parse(iso) - now;
  const a = Math.abs(d) / 1000;
  const text = a < 90 ? `${Math.round(a)}s` : a < 5400 ? `${Math.round(a / 60)}m` : a < 172800 ? `${Math.floor(a / 3600)}h ${Math.round((a % 3600) / 60)}m` : `${Math.round(a / 86400)}d`;
  return d >= 0 ? `in ${text}` : `${text} ago`;
}

function cell(text: string, title?: string): string {
  return `<td${title ? ` title="${escapeHtml(title)}"` : ''}>${escapeHtml(text)}</td>`;
}

const badge = (s: EntryState, text: string = s): string => `<span class="state" style="background:${STATE_INFO[s].colour}">${escapeHtml(text)}</span>`;

function row(v: CertificateView, t: number): string {
  const status = v.status?.kind === 'revoked' ? `revoked at ${v.status.at}` : '';
  return `<tr data-cert="${escapeHtml(v.name)}" data-state="${v.state}">
${cell(v.name, v.source)}<td>${badge(v.state)}${v.mustStaple ? ' <span class="ms" title="RFC 7633 must-staple">must-staple</span>' : ''}</td>
${cell(v.subject)}${cell(v.serial)}${cell(relative(v.nextUpdate, t), v.nextUpdate ?? '')}${cell(relative(v.thisUpdate, t), v.thisUpdate ?? '')}${cell(relative(v.nextRefresh, t), v.nextRefresh ?? '')}
<td class="err">${v.lastError ? `<code>${escapeHtml(v.lastError.code)}</code> ${escapeHtml(v.lastError.message)}` : escapeHtml(status)}</td></tr>`;
}

function table(views: CertificateView[], t: number, id: string): string {
  return `<table id="${id}">
<thead><tr><th>certificate</th><th>state</th><th>subject</th><th>serial</th><th>next update</th><th>this update</th><th>next refresh</th><th>last error</th></tr></thead>
<tbody>
${views.map((v) => row(v, t)).join('\n')}
</tbody></table>`;
}

/** The filter as a plain GET form (no scripts): state, must-staple only, name prefix. */
function filterForm(q: PageQuery): string {
  const only = q.states?.size === 1 ? [...q.states][0] : undefined;
  const options = STATES.map((s) => `<option value="${s}"${s === only ? ' selected' : ''}>${s}</option>`).join('');
  return `<form method="get" action="/" class="filter">
<label>state <select name="state"><option value="">any</option>${options}</select></label>
<label><input type="checkbox" name="mustStaple" value="true"${q.mustStaple ? ' checked' : ''}> must-staple only</label>
<label>name starts with <input name="prefix" maxlength="256" value="${escapeHtml(q.prefix ?? '')}"></label>
<button>show</button> <a href="/">all</a></form>`;
}

export interface StatusPageModel {
  /** This page's rows, in name order. */
  views: CertificateView[];
  page: Omit<Page, 'names'>;
  query: PageQuery;
  /** Problems first: shown above the table on the first page without a filter. */
  problems?: { views: CertificateView[]; count: number } | undefined;
  /** Certificates without an OCSP URL, with the advice to turn stapling off for them: first page, no filter. */
  noOcspUrl?: { views: CertificateView[]; count: number } | undefined;
  /** Links to the next and the first page with the same filter. */
  nextHref?: string | undefined;
  firstHref?: string | undefined;
  now: Date;
  ready: boolean;
  version: string;
}

/**
 * The status page: counts by state (each a link to that state's list), problems first, then one page of
 * the table in name order with a link to the next. Server-rendered, no scripts; reloads itself every 30 s.
 */
export function renderStatusPage(m: StatusPageModel): string {
  const t = m.now.getTime();
  const { page } = m;
  const summary = STATES.filter((s) => page.counts[s] > 0)
    .map((s) => `<a href="/?state=${s}">${badge(s, `${page.counts[s]} ${s}`)}</a>`)
    .join(' ');
  const problems = m.problems && m.problems.count > 0
    ? `<h2>Needs attention: ${m.problems.count}${m.problems.count > m.problems.views.length ? ` (the first ${m.problems.views.length}; <a href="/?state=${STATES.filter((s) => STATE_INFO[s].problem !== null).join(',')}">all of them</a>)` : ''}</h2>\n${table(m.problems.views, t, 'problems')}`
    : '';
  const noUrl = m.noOcspUrl && m.noOcspUrl.count > 0 ? noOcspUrlSection(m.noOcspUrl) : '';
  const first = m.views.length ? m.views[0]!.name : '';
  const shown = m.views.length ? `${escapeHtml(first)} … ${escapeHtml(m.views[m.views.length - 1]!.name)}` : 'none';
  const nav = [m.firstHref ? `<a href="${escapeHtml(m.firstHref)}" rel="first">first page</a>` : '', m.nextHref ? `<a href="${escapeHtml(m.nextHref)}" rel="next">next ${m.query.limit} →</a>` : ''].filter(Boolean).join(' · ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>staplerd — ${page.total} certificates</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1f2328}
h1{font-size:1.3rem;margin:0 0 .3rem}
h2{font-size:1.05rem;margin:1.2rem 0 0}
table{border-collapse:collapse;width:100%;margin-top:.6rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa}
a .state{text-decoration:none}
.state{color:#fff;border-radius:.8rem;padding:.05rem .55rem;font-size:.85em;white-space:nowrap}
.ms{font-size:.8em;border:1px solid #cf222e;color:#cf222e;border-radius:.3rem;padding:0 .3rem}
.err code{color:#cf222e}
.meta{color:#656d76}
.filter{margin-top:.8rem}
.filter label{margin-right:.8rem}
</style></head>
<body>
<h1>staplerd</h1>
<div class="meta">version ${escapeHtml(m.version)} · ${m.ready ? 'ready' : '<b style="color:#cf222e">not ready</b>'} · ${escapeHtml(m.now.toISOString())} · ${page.total} certificates${summary ? ` · ${summary}` : ' · no certificates'}</div>
${filterForm(m.query)}
${problems}
${noUrl}
<h2>Certificates${page.matched !== page.total ? ` matching: ${page.matched}` : ''} (by name; ${m.views.length} shown: ${shown})</h2>
${table(m.views, t, 'certificates')}
<p class="meta">${nav ? `${nav} · ` : ''}JSON: <a href="/v1/certificates">/v1/certificates</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a></p>
</body></html>
`;
}

/** Which certificate files the server blocks that should turn stapling off use (name and file). */
function noOcspUrlSection(n: { views: CertificateView[]; count: number }): string {
  const more = n.count > n.views.length ? ` (the first ${n.views.length}; <a href="/?state=not_applicable">all of them</a>)` : '';
  const items = n.views.map((v) => `<li><code>${escapeHtml(v.name)}</code>: <code>${escapeHtml(v.source)}</code></li>`).join('\n');
  return `<h2 id="no-ocsp-url">No OCSP URL: ${n.count}${more}</h2>
<p>${escapeHtml(NO_OCSP_URL_ADVICE)}</p>
<ul>
${items}
</ul>`;
}

/** `GET /`: the status page over the Stapler's briefs; views are built for the rows shown only. */
export function statusPageRoute(app: FastifyInstance, o: { stapler: Stapler; version: string }): void {
  const { stapler } = o;
  app.get<{ Querystring: ListQueryString }>('/', { logLevel: 'warn', schema: { querystring: listQuerySchema(MAX_PAGE_ROWS) } }, async (req, reply) => {
    void reply.header('cache-control', 'no-store');
    let q: PageQuery;
    try {
      q = pageQuery(req.query, PAGE_ROWS);
    } catch (e) {
      if (!isStaplerError(e)) throw e;
      return reply.code(400).header('content-type', 'text/html; charset=utf-8').send(`<!doctype html><title>staplerd</title><p>${escapeHtml(e.message)}. <a href="/">First page</a></p>\n`);
    }
    const { names, ...page } = selectPage(stapler.briefs(), q);
    const views = (ns: string[]) => ns.map((n) => stapler.get(n)).filter((v) => v !== undefined);
    const unfiltered = !q.after && !q.states && q.mustStaple === undefined && !q.prefix;
    let problems: StatusPageModel['problems'];
    if (unfiltered) {
      const p = selectProblems(stapler.briefs(), PROBLEM_ROWS);
      problems = { views: views(p.names), count: p.count };
    }
    let noOcspUrl: StatusPageModel['noOcspUrl'];
    if (unfiltered && page.counts.not_applicable > 0) {
      const n = selectPage(stapler.briefs(), { limit: NO_OCSP_URL_ROWS, states: new Set(['not_applicable']) });
      noOcspUrl = { views: views(n.names), count: n.matched };
    }
    const explicit = req.query.limit !== undefined;
    const html = renderStatusPage({
      views: views(names),
      page,
      query: q,
      problems,
      noOcspUrl,
      nextHref: page.next ? pageHref('/', q, page.next, explicit) : undefined,
      firstHref: q.after ? pageHref('/', q, null, explicit) : undefined,
      now: new Date(),
      ready: stapler.readiness().ready,
      version: o.version,
    });
    return reply.header('content-type', 'text/html; charset=utf-8').send(html);
  });
}
