import type { CertificateView, EntryState } from '../service/staple.js';

const COLOURS: Record<EntryState, string> = {
  good: '#1a7f37',
  revoked: '#8250df',
  failing: '#cf222e',
  pending: '#9a6700',
  unknown: '#bc4c00',
  expired: '#6e7781',
  not_applicable: '#6e7781',
};

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

/**
 * The status page: one server-rendered table of every certificate, state in colour, time to nextUpdate
 * and the last error. No scripts; it reloads itself every 30 s.
 */
export function renderStatusPage(views: CertificateView[], now: Date, o: { ready: boolean; version: string }): string {
  const t = now.getTime();
  const counts = new Map<string, number>();
  for (const v of views) counts.set(v.state, (counts.get(v.state) ?? 0) + 1);
  const summary = [...counts].map(([s, n]) => `<span class="state" style="background:${COLOURS[s as EntryState]}">${n} ${escapeHtml(s)}</span>`).join(' ');
  const rows = views
    .map((v) => {
      const status = v.status?.kind === 'revoked' ? `revoked at ${v.status.at}` : '';
      return `<tr data-cert="${escapeHtml(v.name)}" data-state="${v.state}">
${cell(v.name, v.source)}<td><span class="state" style="background:${COLOURS[v.state]}">${escapeHtml(v.state)}</span>${v.mustStaple ? ' <span class="ms" title="RFC 7633 must-staple">must-staple</span>' : ''}</td>
${cell(v.subject)}${cell(v.serial)}${cell(relative(v.nextUpdate, t), v.nextUpdate ?? '')}${cell(relative(v.thisUpdate, t), v.thisUpdate ?? '')}${cell(relative(v.nextRefresh, t), v.nextRefresh ?? '')}
<td class="err">${v.lastError ? `<code>${escapeHtml(v.lastError.code)}</code> ${escapeHtml(v.lastError.message)}` : escapeHtml(status)}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>staplerd — ${views.length} certificates</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1f2328}
h1{font-size:1.3rem;margin:0 0 .3rem}
table{border-collapse:collapse;width:100%;margin-top:1rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa}
.state{color:#fff;border-radius:.8rem;padding:.05rem .55rem;font-size:.85em;white-space:nowrap}
.ms{font-size:.8em;border:1px solid #cf222e;color:#cf222e;border-radius:.3rem;padding:0 .3rem}
.err code{color:#cf222e}
.meta{color:#656d76}
</style></head>
<body>
<h1>staplerd</h1>
<div class="meta">version ${escapeHtml(o.version)} · ${o.ready ? 'ready' : '<b style="color:#cf222e">not ready</b>'} · ${escapeHtml(now.toISOString())} · ${summary || 'no certificates'}</div>
<table>
<thead><tr><th>certificate</th><th>state</th><th>subject</th><th>serial</th><th>next update</th><th>this update</th><th>next refresh</th><th>last error</th></tr></thead>
<tbody>
${rows}
</tbody></table>
<p class="meta">JSON: <a href="/v1/certificates">/v1/certificates</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a></p>
</body></html>
`;
}
