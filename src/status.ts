import type { CertificateView } from './service/staple.js';
import { relative } from './http/status-page.js';

/** Fixed-width text table (the status page's columns), for a terminal. */
export function statusTable(views: CertificateView[], now: Date): string {
  const t = now.getTime();
  const head = ['CERTIFICATE', 'STATE', 'MUST-STAPLE', 'NEXT UPDATE', 'NEXT REFRESH', 'LAST ERROR'];
  const rows = views.map((v) => [v.name, v.state, v.mustStaple ? 'yes' : '', relative(v.nextUpdate, t), relative(v.nextRefresh, t), v.lastError?.code ?? '']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/**
 * `staplerd status`: reads a running daemon's JSON API and prints the table.
 * Exit 0 all well, 1 some certificate failing, revoked or without its first staple, 2 daemon unreachable.
 */
export async function runStatus(url: string, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let views: CertificateView[];
  try {
    const res = await fetch(new URL('/v1/certificates', url), { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    views = ((await res.json()) as { certificates: CertificateView[] }).certificates;
  } catch (e) {
    err(`staplerd status: cannot read ${url}/v1/certificates: ${(e as Error).message}`);
    return 2;
  }
  out(views.length ? statusTable(views, new Date()) : 'no certificates');
  return views.some((v) => v.state === 'failing' || v.state === 'revoked' || v.state === 'pending') ? 1 : 0;
}
