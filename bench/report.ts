/**
 * The targets from issue 5, judged on this run's figures, and the printed table. Every decisive figure is
 * a ratio against a reference measured in the same run, except the absolute bounds the issue states
 * (p99, start-up time, RSS, idle CPU).
 */
import type { FleetResult } from './fleet.js';
import type { PrefetchResult, StartupResult } from './prefetch.js';
import type { ScaleResult } from './scale.js';
import type { ServeResults } from './serve.js';

export interface Target {
  name: string;
  figure: string;
  pass: boolean;
}

export interface Results {
  serve?: ServeResults;
  prefetch?: PrefetchResult;
  startup?: StartupResult;
  /** One per size: 20,000 by default, and 100,000 with --scale-large. */
  scale?: ScaleResult[];
  fleet?: FleetResult;
}

const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

export function judge(r: Results): Target[] {
  const t: Target[] = [];
  const row = (name: string) => r.serve?.rows.find((x) => x.name === name);
  const wrk = r.serve && Array.isArray(r.serve.wrk) ? r.serve.wrk : undefined;
  // Issue 14: the serve ratios are judged on wrk (median of alternating pairs); autocannon saturates first.
  for (const w of wrk ?? []) {
    const close = /close/i.test(w.name);
    t.push({ name: `${close ? 'close' : 'keep-alive'} GET hits, wrk, >= 0.9 x bare (median of ${w.pairs.length})`, figure: `${f(w.median, 3)} (${w.ratios.map((x) => f(x, 2)).join(' ')})`, pass: w.median >= 0.9 });
  }
  const kaGet = row('GET hit, keep-alive');
  if (kaGet && !wrk) t.push({ name: 'keep-alive GET hits >= 0.9 x bare rps', figure: `${f(kaGet.ratio, 3)} (${f(kaGet.staplerd.rps)} / ${f(kaGet.bare.rps)})`, pass: kaGet.ratio >= 0.9 });
  if (kaGet) t.push({ name: 'keep-alive GET hits p99 < 5 ms', figure: `${f(kaGet.staplerd.p99, 2)} ms`, pass: kaGet.staplerd.p99 < 5 });
  const closeGet = row('GET hit, close (HTTP/1.0)');
  if (closeGet && !wrk) {
    t.push({ name: 'close GET hits >= 0.9 x bare close rps', figure: `${f(closeGet.ratio, 3)} (${f(closeGet.staplerd.rps)} / ${f(closeGet.bare.rps)})`, pass: closeGet.ratio >= 0.9 });
  }
  const m = r.serve?.mixed;
  if (m) {
    const fails = m.bad + m.probeFailures.length;
    t.push({ name: 'mixed: only 200 OCSP answers as intended', figure: `${m.bad} bad under load, ${m.probeFailures.length} wrong in probe`, pass: fails === 0 });
    t.push({ name: 'mixed >= 0.8 x hits rps', figure: `${f(m.ratio, 3)} (${f(m.mixed.rps)} / ${f(m.hitsOnly.rps)})`, pass: m.ratio >= 0.8 });
  }
  const p = r.prefetch;
  if (p) {
    t.push({ name: `prefetch of ${p.certificates} <= 1.2 x upstream-only`, figure: `${f(p.ratio, 2)} (${f(p.staplerdMs)} / ${f(p.upstreamOnlyMs)} ms)`, pass: p.ratio <= 1.2 && (p.states['good'] ?? 0) === p.certificates });
  }
  const s = r.startup;
  if (s) {
    const allGood = s.runs.every((x) => x.good === s.certificates);
    t.push({ name: `start-up over ${s.certificates}: ready < 3 s`, figure: `${f(s.readyMs)} ms${allGood ? '' : ' (NOT all good)'}`, pass: s.readyMs < 3000 && allGood });
    t.push({ name: `start-up over ${s.certificates}: RSS < 150 MB`, figure: `${f(s.rssMB, 1)} MB`, pass: s.rssMB < 150 });
  }
  for (const sc of r.scale ?? []) t.push(...scaleTargets(sc));
  const fl = r.fleet;
  if (fl?.kind === 'ran') {
    const n = fl.certificates;
    const allGood = fl.fleet.good.every((g) => g === n);
    t.push({
      name: `fleet: upstream fetches <= 1.1 x N with ${fl.fleet.nodes} nodes`,
      figure: `${fl.fleet.upstreamRequests} for N = ${n} (${f(fl.fleet.upstreamRequests / n, 2)} x)${allGood ? '' : ' (NOT all good on every node)'}`,
      pass: fl.fleet.upstreamRequests <= 1.1 * n && allGood,
    });
  }
  return t;
}

const KB = 1024;

function scaleTargets(sc: ScaleResult): Target[] {
  const n = sc.certificates;
  const t: Target[] = [];
  const rssGoal = 60 + (3 * n) / 1000;
  t.push({ name: `${n} certificates: RSS after idle < 60 MB + 3 KB each (${f(rssGoal)} MB)`, figure: `${f(sc.rssIdleMB, 1)} MB (ready ${f(sc.rssReadyMB, 1)}, peak ${f(sc.peakMB, 1)})`, pass: sc.rssIdleMB < rssGoal });
  if (n >= 100_000) {
    const rss = Math.max(sc.rssReadyMB, sc.rssIdleMB);
    t.push({ name: `${n} certificates: RSS < 600 MB`, figure: `${f(rss, 1)} MB (peak ${f(sc.peakMB, 1)})`, pass: rss < 600 });
  }
  t.push({ name: `${n} certificates: idle CPU < 1% of a core`, figure: `${f(sc.idleCpuPct, 3)} % (${f(sc.idleCpuSecPerMin, 3)} s/min)`, pass: sc.idleCpuPct < 1 });
  for (const x of sc.reads.figures) {
    const page = x.path.startsWith('/') && !x.path.startsWith('/v1') && x.path !== '/metrics';
    const maxBytes = page ? 512 * KB : 1024 * KB;
    t.push({
      name: `${n} certificates: ${x.what} < ${page ? '512 KB' : '1 MB'} and < 200 ms`,
      figure: `${f(x.bytes / KB, 1)} KB in ${f(x.ms, 1)} ms${x.status === 200 ? '' : ` (HTTP ${x.status})`}`,
      pass: x.status === 200 && x.bytes < maxBytes && x.ms < 200,
    });
  }
  return t;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n');
}

function serveTable(s: ServeResults): string {
  const head = ['serve (1 cert hit, ' + s.certificates + ' cached)', 'bare rps', 'p50', 'p99', 'cpu%', 'gen%', 'staplerd rps', 'p50', 'p99', 'cpu%', 'gen%', 'ratio'];
  const rows = s.rows.map((r) => [
    r.name, f(r.bare.rps), f(r.bare.p50, 2), f(r.bare.p99, 2), f(r.bare.serverCpuPct), f(r.bare.generatorCpuPct),
    f(r.staplerd.rps), f(r.staplerd.p50, 2), f(r.staplerd.p99, 2), f(r.staplerd.serverCpuPct), f(r.staplerd.generatorCpuPct), f(r.ratio, 2),
  ]);
  const m = s.mixed;
  const parts = [s.rows.length ? `${table([head, ...rows])}\n  (latencies in ms, autocannon rows at its 1 ms resolution; cpu% = server, gen% = load generator CPU over the measured window, % of one core)` : ''];
  if (m) {
    const mixedRows = [
      ['mixed, staplerd, keep-alive (raw generator)', 'rps', 'p50', 'p99', 'cpu%', 'gen%', 'non-200', 'errors', 'ratio'],
      ['hits over 1,000 certs', f(m.hitsOnly.rps), f(m.hitsOnly.p50, 2), f(m.hitsOnly.p99, 2), f(m.hitsOnly.serverCpuPct), f(m.hitsOnly.generatorCpuPct), '', '', ''],
      ['90/5/5 hit/unknown/malformed', f(m.mixed.rps), f(m.mixed.p50, 2), f(m.mixed.p99, 2), f(m.mixed.serverCpuPct), f(m.mixed.generatorCpuPct), String(m.bad - m.mixed.errors), String(m.mixed.errors), f(m.ratio, 2)],
    ];
    const probe = m.probeFailures.length ? `\n  probe failures:\n    ${m.probeFailures.join('\n    ')}` : '';
    parts.push(`${table(mixedRows)}${probe}`);
  }
  parts.push(wrkTable(s.wrk));
  if (s.pinned) parts.push(pinnedTable(s.pinned));
  return parts.filter(Boolean).join('\n\n');
}

function wrkTable(w: ServeResults['wrk']): string {
  if (!Array.isArray(w)) return `wrk rows skipped: ${w.skipped}`;
  const rows = [['wrk, bare vs staplerd per pair', 'bare rps', 'p99', 'cpu%', 'staplerd rps', 'p99', 'cpu%', 'errors', 'ratio']];
  for (const x of w) {
    x.pairs.forEach(([b, st], i) => rows.push([`${x.name} #${i + 1}`, f(b.rps), f(b.p99, 2), f(b.serverCpuPct), f(st.rps), f(st.p99, 2), f(st.serverCpuPct), String(st.errors + st.non2xx), f(st.rps / b.rps, 2)]));
    rows.push([`${x.name}: median ratio`, '', '', '', '', '', '', '', f(x.median, 3)]);
  }
  return `${table(rows)}\n  (${w.map((x) => x.command).join('; ')})`;
}

function pinnedTable(p: NonNullable<ServeResults['pinned']>): string {
  if (!Array.isArray(p)) return `pinned diagnostic skipped: ${p.skipped}`;
  const rows = [['diagnostic: pinned to one core, at the same time', 'reference rps', 'subject rps', 'ratio']];
  for (const x of p) {
    x.runs.forEach(([r, s], i) => rows.push([`${x.name} #${i + 1}`, f(r), f(s), f(s / r, 3)]));
    rows.push([`${x.name}: median`, '', '', f(x.median, 3)]);
  }
  return `${table(rows)}\n  (both servers on the last CPU, one wrk -t1 each on CPU 0; not a target: see bench/README.md)`;
}

export function render(r: Results, targets: Target[], header: string): string {
  const out: string[] = [header, ''];
  if (r.serve) out.push(serveTable(r.serve), '');
  const p = r.prefetch;
  if (p) {
    out.push(
      table([
        [`prefetch of ${p.certificates} (concurrency ${p.concurrency})`, 'value'],
        ['upstream only: plain client, ms', f(p.upstreamOnlyMs)],
        ['staplerd: first upstream request -> /readyz 200, ms', f(p.staplerdMs)],
        ['ratio', f(p.ratio, 2)],
        ['staplerd: spawn -> /readyz 200, ms', f(p.spawnToReadyMs)],
        ['daemon CPU per certificate (spawn..ready), ms', f(p.daemonCpuPerCertMs, 3)],
        ['plain client CPU per request (HTTP only), µs', f(p.plainClientCpuMicros, 1)],
        ['verifyOcspResponse in-process, µs each', f(p.verifyMicros, 1)],
        ['responder signing in-process, µs each', f(p.signMicros, 1)],
        ['states', JSON.stringify(p.states)],
        ['setup: mint / write bundles, ms', `${f(p.setup.mintMs)} / ${f(p.setup.writeMs)}`],
      ]),
      '',
    );
  }
  const s = r.startup;
  if (s) {
    const runs = s.runs.map((x) => `${f(x.readyMs)} ms / ${f(x.rssMB, 1)} MB / ${f(x.cpuSec, 2)} s CPU`).join('; ');
    out.push(table([[`start-up over ${s.certificates} persisted (upstream down)`, 'value'], ['ready (median), ms', f(s.readyMs)], ['RSS at ready, MB', f(s.rssMB, 1)], ['runs', runs]]), '');
  }
  for (const sc of r.scale ?? []) {
    out.push(
      table([
        [`scale: ${sc.certificates} certificates`, 'value'],
        ['setup: mint / write bundles, ms', `${f(sc.setup.mintMs)} / ${f(sc.setup.writeMs)}`],
        ['spawn -> /readyz 200 (load + fetch all), ms', f(sc.spawnToReadyMs)],
        ['states', JSON.stringify(sc.states)],
        ['RSS at ready / after idle / peak, MB', `${f(sc.rssReadyMB, 1)} / ${f(sc.rssIdleMB, 1)} / ${f(sc.peakMB, 1)}`],
        [`idle CPU, first ${f(2 * sc.idleWindowSec, 1)} s (one-off collections): % of a core`, `${f(sc.firstWindowCpuPct, 3)} %`],
        [`idle CPU, the ${f(sc.idleWindowSec, 1)} s after: s/min, % of a core`, `${f(sc.idleCpuSecPerMin, 3)} s/min, ${f(sc.idleCpuPct, 3)} %`],
        ...sc.reads.figures.map((x) => [`${x.what}: KB, ms (median)`, `${f(x.bytes / KB, 1)} KB, ${f(x.ms, 1)} ms`]),
        ['longest /healthz round trip during 5 scrapes / idle, ms', `${f(sc.reads.healthzMaxDuringScrapeMs, 1)} / ${f(sc.reads.healthzMaxIdleMs, 1)}`],
      ]),
      `  memory after idle, MB: ${Object.entries(sc.reads.memory).filter(([k, v]) => v >= 0.05 && (!/total$/.test(k) || /^(heap|new|old) total$/.test(k))).map(([k, v]) => `${k} ${f(v, 1)}`).join(', ')}`,
      '',
    );
  }
  const fl = r.fleet;
  if (fl?.kind === 'skipped') out.push(`fleet case skipped: ${fl.reason}`, '');
  if (fl?.kind === 'ran') {
    const row = (label: string, x: typeof fl.single) => [label, f(x.allReadyMs), String(x.upstreamRequests), f(x.upstreamRequests / fl.certificates, 2), x.good.join(' / ')];
    out.push(
      table([
        [`fleet: ${fl.certificates} certificates (redis ${fl.redis})`, 'spawn -> all ready, ms', 'upstream requests', 'per cert', 'good per node'],
        row('1 node, local store', fl.single),
        row(`${fl.fleet.nodes} nodes, one Redis`, fl.fleet),
      ]),
      `  (${fl.fleet.nodes} nodes without a shared store would ask ${fl.fleet.nodes * fl.certificates}; the nodes start together, each with an empty data dir)`,
      '',
    );
  }
  out.push(table([['target', 'figure', 'result'], ...targets.map((t) => [t.name, t.figure, t.pass ? 'PASS' : 'MISS'])]));
  return out.join('\n');
}
