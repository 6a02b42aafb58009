/**
 * The operator files in config/ that no other test runs: the systemd unit, the Grafana dashboard and the
 * Prometheus alert rules. Each names things that live in the code (CLI commands, signals, metric names,
 * label names and values); these tests fail when the two drift apart. systemd-analyze and promtool check the
 * files for real when they are installed.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { parseCommand } from '../../src/cli.js';
import { ERRORS } from '../../src/errors.js';
import { Metrics, type MetricsSource } from '../../src/http/metrics.js';
import type { CertBrief, EntryState } from '../../src/service/staple.js';
import { findBinary, run, tempDir } from '../helpers/processes.js';

// Compiled to dist/test/packaging/ops-files.test.js: the repository is three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (p: string): Promise<string> => readFile(join(ROOT, p), 'utf8');

const UNIT = 'config/staplerd.service';
const DASHBOARD = 'config/grafana/staplerd-dashboard.json';
const ALERTS = 'config/prometheus/staplerd-alerts.yml';

// ---- what /metrics exports -------------------------------------------------------------------------------

interface MetricInfo {
  labels: Set<string>;
  /** Label values a PromQL matcher may compare with `=` / `!=`, for labels with a closed set of values. */
  values: Map<string, Set<string>>;
}

const STATES: EntryState[] = ['pending', 'good', 'revoked', 'unknown', 'failing', 'not_applicable', 'expired'];
/** Labels every scraped series has (Prometheus adds them), and `le` on histogram buckets. */
const TARGET_LABELS = ['job', 'instance'];

/**
 * Every metric a real scrape has, from the real Metrics class (its own metrics and prom-client's default
 * ones), with label names and the values of closed-set labels: one certificate per state is fed in so the
 * per-certificate gauges have series to read values from.
 */
async function exportedMetrics(): Promise<Map<string, MetricInfo>> {
  const now = Date.now();
  // Must-staple on every one, so that each state has a per-certificate series (must-staple needs attention).
  const briefs: CertBrief[] = STATES.map((state, i) => ({ name: `c${i}`, state, mustStaple: true, thisUpdateMs: now - 3_600_000, nextUpdateMs: now + 3_600_000 }));
  // Cast: the readiness shape grows with features (the shared store); this is what the daemon reports alone.
  const readiness = { ready: true, mustStapleMissing: [], mustStapleMissingCount: 0, waiting: [], waitingCount: 0, store: { kind: 'memory', connected: true } } as unknown as ReturnType<MetricsSource['readiness']>;
  const source: MetricsSource = { briefs: () => briefs, readiness: () => readiness };
  const m = new Metrics(source, { marginSeconds: 300, certificateSeriesLimit: 100, attentionHorizonSeconds: 7200 });
  await m.collect();
  const out = new Map<string, MetricInfo>();
  for (const e of await m.registry.getMetricsAsJSON()) {
    const declared = (m.registry.getSingleMetric(e.name) as unknown as { labelNames?: readonly string[] } | undefined)?.labelNames ?? [];
    const labels = new Set([...declared, ...TARGET_LABELS]);
    if (String(e.type) === 'histogram') labels.add('le');
    const values = new Map<string, Set<string>>();
    for (const v of e.values) {
      for (const [k, val] of Object.entries(v.labels)) {
        if (!values.has(k)) values.set(k, new Set());
        values.get(k)!.add(String(val));
      }
    }
    out.set(e.name, { labels, values });
  }
  return out;
}

/**
 * Labels compared with `=` / `!=` whose values must be ones the code emits. `state`, `outcome` and
 * `must_staple` take the values seen in a real scrape; `result` is `ok` or an error code from the table
 * (fetches, sink pushes) or ok / error / dropped (hooks, see HookRunnerOptions.onResult).
 */
function closedValues(metric: string, label: string, info: MetricInfo): Set<string> | undefined {
  if (label === 'result') {
    if (metric === 'staplerd_hook_runs_total') return new Set(['ok', 'error', 'dropped']);
    return new Set(['ok', ...Object.keys(ERRORS)]);
  }
  if (label === 'state' || label === 'outcome' || label === 'must_staple') return info.values.get(label);
  return undefined;
}

// ---- a small PromQL reader: enough to check names, labels and brackets, not a parser --------------------

const METRIC_RE = /\bstaplerd_[a-zA-Z0-9_]*/g;
const SELECTOR_RE = /\b(staplerd_[a-zA-Z0-9_]*|up)\s*(?:\{([^}]*)\})?/g;
const MATCHER_RE = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;
const GROUPING_RE = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g;

/** A name as it appears in a query, without the histogram/summary series suffixes. */
function baseName(name: string): string {
  return name.replace(/_(bucket|count|sum)$/, '');
}

function checkBrackets(expr: string, where: string): void {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  let inString = false;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '(' || c === '[' || c === '{') stack.push(c);
    else if (c in pairs) assert.equal(stack.pop(), pairs[c], `${where}: unbalanced "${c}" at ${i} in\n${expr}`);
  }
  assert.equal(inString, false, `${where}: unterminated string in\n${expr}`);
  assert.deepEqual(stack, [], `${where}: unclosed ${stack.join('')} in\n${expr}`);
}

/**
 * Checks one PromQL expression against the exported metrics: every staplerd_* name exists, every label in a
 * selector belongs to its metric (with a value the code emits, for closed sets), every grouping label
 * belongs to some metric in the expression. Returns the metric names it uses and the labels they carry.
 */
function checkExpr(expr: string, where: string, metrics: Map<string, MetricInfo>): { names: Set<string>; labels: Set<string> } {
  checkBrackets(expr, where);
  const names = new Set<string>();
  const labels = new Set(TARGET_LABELS);
  for (const m of expr.matchAll(METRIC_RE)) {
    const name = baseName(m[0]);
    assert.ok(metrics.has(name), `${where}: metric ${m[0]} is not exported by staplerd (src/http/metrics.ts)\n${expr}`);
    names.add(name);
    for (const l of metrics.get(name)!.labels) labels.add(l);
  }
  for (const s of expr.matchAll(SELECTOR_RE)) {
    const name = baseName(s[1]!);
    const info = metrics.get(name);
    if (!info || s[2] === undefined) continue; // `up` and bare names
    for (const mt of s[2].matchAll(MATCHER_RE)) {
      const [, label, op, value] = mt as unknown as [string, string, string, string];
      assert.ok(info.labels.has(label), `${where}: ${name} has no label "${label}" (it has ${[...info.labels].join(', ')})\n${expr}`);
      if (op !== '=' && op !== '!=') continue;
      const allowed = closedValues(name, label, info);
      if (allowed) assert.ok(allowed.has(value), `${where}: ${name}{${label}="${value}"}: staplerd never emits that value (it emits ${[...allowed].slice(0, 12).join(', ')}...)\n${expr}`);
    }
  }
  for (const g of expr.matchAll(GROUPING_RE)) {
    for (const l of g[2]!.split(',').map((x) => x.trim()).filter(Boolean)) {
      assert.ok(labels.has(l), `${where}: "${g[1]} (${g[2]})" names label "${l}", which no metric in the expression has\n${expr}`);
    }
  }
  return { names, labels };
}

/** Source of truth check: the names in src/http/metrics.ts are what the registry exports (the reader works). */
async function metricsFromSource(): Promise<string[]> {
  const src = await read('src/http/metrics.ts');
  // Every quoted metric name: `name: '...'` options and the helpers' first arguments alike.
  return [...src.matchAll(/'(staplerd_[a-z0-9_]+)'/g)].map((m) => m[1]!);
}

test('the metric names in src/http/metrics.ts are the ones a scrape exports', async () => {
  const metrics = await exportedMetrics();
  const names = await metricsFromSource();
  assert.ok(names.length >= 10, `found only ${names.length} metric names in src/http/metrics.ts: ${names.join(', ')}`);
  for (const n of names) assert.ok(metrics.has(n), `${n} is declared in metrics.ts but not in the registry`);
  assert.ok(metrics.has('staplerd_process_resident_memory_bytes'), 'default process metrics are collected with the staplerd_ prefix');
});

// ---- systemd unit -------------------------------------------------------------------------------------------

type Ini = Map<string, Map<string, string[]>>;

/** systemd's unit syntax: [Section], Key=Value (repeatable), # and ; comments, backslash continuations. */
function parseUnit(text: string): Ini {
  const ini: Ini = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++i]!.trim()}`;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      section = new Map();
      assert.ok(!ini.has(sec[1]!), `${UNIT}: section [${sec[1]}] appears twice`);
      ini.set(sec[1]!, section);
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    assert.ok(kv, `${UNIT}:${i + 1}: not a Key=Value line: ${line}`);
    assert.ok(section, `${UNIT}:${i + 1}: ${kv[1]} before any [Section]`);
    const k = kv[1]!;
    section.set(k, [...(section.get(k) ?? []), kv[2]!.trim()]);
  }
  return ini;
}

describe(`${UNIT}`, () => {
  async function unit(): Promise<{ text: string; service: Map<string, string[]>; get: (k: string) => string | undefined }> {
    const text = await read(UNIT);
    const ini = parseUnit(text);
    for (const s of ['Unit', 'Service', 'Install']) assert.ok(ini.has(s), `${UNIT} has no [${s}] section`);
    const service = ini.get('Service')!;
    // The last assignment wins in systemd (an empty one resets lists).
    return { text, service, get: (k) => service.get(k)?.at(-1) };
  }

  test('runs `staplerd serve -c /etc/staplerd/staplerd.yaml` from the global npm install, as a command the CLI parses', async () => {
    const { get, service } = await unit();
    assert.equal(service.get('ExecStart')?.length, 1, 'exactly one ExecStart');
    const argv = get('ExecStart')!.replace(/^[-@:+!]+/, '').split(/\s+/);
    assert.equal(argv[0], '/usr/local/bin/staplerd', 'npm install -g puts the bin at /usr/local/bin/staplerd on Debian');
    assert.equal(basename(argv[0]!), 'staplerd');
    const cmd = parseCommand(argv.slice(1));
    assert.deepEqual(cmd, { kind: 'serve', config: '/etc/staplerd/staplerd.yaml' });
  });

  test('reloads with SIGHUP, which staplerd handles', async () => {
    const { get } = await unit();
    assert.equal(get('ExecReload'), '/bin/kill -HUP $MAINPID');
    const main = await read('src/main.ts');
    assert.match(main, /process\.on\('SIGHUP'/, 'src/main.ts no longer handles SIGHUP: ExecReload would kill the daemon');
  });

  test('gives staplerd more time to stop than staplerd gives itself', async () => {
    const { get } = await unit();
    const stopSec = Number(get('TimeoutStopSec'));
    assert.ok(Number.isFinite(stopSec), `TimeoutStopSec=${get('TimeoutStopSec')} is not a number of seconds`);
    const bound = /STOP_BOUND_MS\s*=\s*([\d_]+)/.exec(await read('src/main.ts'));
    assert.ok(bound, 'src/main.ts no longer declares STOP_BOUND_MS: update this test and TimeoutStopSec');
    const boundMs = Number(bound[1]!.replace(/_/g, ''));
    assert.ok(stopSec * 1000 > boundMs, `TimeoutStopSec=${stopSec} must exceed staplerd's own stop bound of ${boundMs} ms, or systemd SIGKILLs a clean stop`);
  });

  test('sets the service type, restart policy, user, directories and environment', async () => {
    const { get, service } = await unit();
    const expect: Record<string, string> = {
      Type: 'simple',
      Restart: 'on-failure',
      DynamicUser: 'yes',
      StateDirectory: 'staplerd',
      ConfigurationDirectory: 'staplerd',
      EnvironmentFile: '-/etc/staplerd/env',
    };
    for (const [k, v] of Object.entries(expect)) assert.equal(get(k), v, `${k}=`);
    assert.ok(service.get('Environment')?.includes('NODE_ENV=production'), 'Environment=NODE_ENV=production');
  });

  test('is hardened, with W+X memory left allowed for the V8 JIT', async () => {
    const { get, text } = await unit();
    const expect: Record<string, string> = {
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectKernelLogs: 'yes',
      ProtectControlGroups: 'yes',
      RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6',
      RestrictNamespaces: 'yes',
      LockPersonality: 'yes',
      MemoryDenyWriteExecute: 'no',
      SystemCallFilter: '@system-service',
      CapabilityBoundingSet: '',
      AmbientCapabilities: '',
    };
    for (const [k, v] of Object.entries(expect)) assert.equal(get(k), v, `${k}=`);
    assert.match(text, /JIT/, 'say why MemoryDenyWriteExecute stays off');
    assert.match(text, /^#\s*ReadWritePaths=\/\S+/m, 'a commented ReadWritePaths example for staple-file sinks');
  });

  test('passes systemd-analyze verify, with a low exposure score', async (t: TestContext) => {
    const analyze = findBinary('systemd-analyze');
    if (!analyze) {
      t.skip('systemd-analyze not installed: the unit was checked by the parser above only');
      return;
    }
    const tmp = await tempDir('unit');
    try {
      // verify insists that ExecStart's binary exists; point it at a stand-in, everything else unchanged.
      const bin = join(tmp.dir, 'staplerd');
      await writeFile(bin, '#!/bin/sh\nexit 0\n');
      await chmod(bin, 0o755);
      const text = (await read(UNIT)).replace(/^ExecStart=\/usr\/local\/bin\/staplerd /m, `ExecStart=${bin} `);
      assert.ok(text.includes(`ExecStart=${bin} serve`), 'ExecStart rewritten for verify');
      const copy = join(tmp.dir, 'staplerd.service');
      await writeFile(copy, text);
      const r = await run(analyze, ['verify', copy], { cwd: tmp.dir, timeoutMs: 30_000 });
      // Unknown keys and bad values are only warnings (exit 0): any output at all is a failure here.
      assert.equal(r.code, 0, `systemd-analyze verify exit ${String(r.code)}\n${r.stdout}${r.stderr}`);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), '', `systemd-analyze verify complained:\n${r.stdout}${r.stderr}`);

      const sec = await run(analyze, ['security', '--offline=yes', '--threshold=20', copy], { cwd: tmp.dir, timeoutMs: 30_000 });
      if (/unrecognized option|Unknown option/i.test(sec.stderr)) {
        t.diagnostic('systemd-analyze security --offline not supported by this systemd; exposure not scored');
        return;
      }
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(sec.stdout)?.[1];
      t.diagnostic(`systemd-analyze security: exposure ${level ?? '?'}`);
      assert.equal(sec.code, 0, `exposure above 2.0 (of 10): hardening was weakened\n${sec.stdout.split('\n').filter((l) => !l.startsWith('✓')).join('\n')}${sec.stderr}`);
    } finally {
      await tmp.cleanup();
    }
  });
});

// ---- Grafana dashboard -------------------------------------------------------------------------------------

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  __inputs: { name: string; type: string; pluginId: string }[];
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; datasource?: { uid?: string }; query?: string | { query?: string }; definition?: string }[] };
}

describe(`${DASHBOARD}`, () => {
  async function dashboard(): Promise<{ d: Dashboard; panels: Panel[]; text: string }> {
    const text = await read(DASHBOARD);
    const d = JSON.parse(text) as Dashboard;
    const panels = d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    return { d, panels, text };
  }
  const exprs = (p: Panel): string[] => (p.targets ?? []).map((t) => t.expr ?? '');

  test('is an importable dashboard: schema 39, the Prometheus data source as a ${DS_PROMETHEUS} input', async () => {
    const { d, panels } = await dashboard();
    assert.equal(d.schemaVersion, 39);
    assert.ok(d.uid && d.title, 'uid and title');
    assert.deepEqual(
      d.__inputs.map((i) => [i.name, i.type, i.pluginId]),
      [['DS_PROMETHEUS', 'datasource', 'prometheus']],
    );
    const ids = new Set<number>();
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `panel id ${p.id} used twice`);
      ids.add(p.id);
      if (p.type === 'row') continue;
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' }, `panel "${p.title}" data source`);
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has no query`);
      const refIds = new Set<string>();
      for (const t of p.targets ?? []) {
        assert.ok(t.refId && !refIds.has(t.refId), `panel "${p.title}": refId ${String(t.refId)} missing or repeated`);
        refIds.add(t.refId);
        assert.ok(t.expr && t.expr.trim(), `panel "${p.title}" ${t.refId}: empty expr`);
        if (t.datasource) assert.equal(t.datasource.uid, '${DS_PROMETHEUS}', `panel "${p.title}" ${t.refId} data source`);
      }
    }
    for (const v of d.templating.list) if (v.type === 'query') assert.equal(v.datasource?.uid, '${DS_PROMETHEUS}', `variable ${v.name} data source`);
  });

  test('panels sit on the 24-column grid without overlapping', async () => {
    const { panels } = await dashboard();
    const boxes = panels.map((p) => ({ t: p.title, ...p.gridPos }));
    for (const b of boxes) assert.ok(b.x >= 0 && b.w > 0 && b.h > 0 && b.x + b.w <= 24, `panel "${b.t}" gridPos ${JSON.stringify(b)}`);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]!;
        const b = boxes[j]!;
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        assert.ok(!overlap, `panels "${a.t}" and "${b.t}" overlap`);
      }
    }
  });

  test('has the panels operators look for', async () => {
    const { panels } = await dashboard();
    const find = (what: string, pred: (p: Panel, e: string[]) => boolean): Panel => {
      const p = panels.find((x) => pred(x, exprs(x)));
      assert.ok(p, `no panel for ${what}`);
      return p;
    };
    const uses = (e: string[], re: RegExp) => e.some((x) => re.test(x));
    find('certificates by state', (p, e) => ['piechart', 'stat'].includes(p.type) && uses(e, /sum by \(state\) \(staplerd_certificates\b/));
    const until = find('seconds until nextUpdate per certificate', (p, e) => ['table', 'bargauge'].includes(p.type) && uses(e, /staplerd_staple_seconds_until_next_update/));
    const sorted = JSON.stringify(until).match(/"sort(?:By)?":\s*\[\s*\{[^}]*"(?:field|displayName)":\s*"until nextUpdate"[^}]*"desc":\s*false/);
    assert.ok(until.type === 'bargauge' ? uses(exprs(until), /^sort\(/) : sorted, 'seconds until nextUpdate sorted ascending');
    find('must-staple certificates without staple', (p, e) => p.type === 'stat' && uses(e, /staplerd_must_staple_without_staple/));
    find('ready', (p, e) => p.type === 'stat' && uses(e, /staplerd_ready\b/));
    find('fetch results by code', (p, e) => p.type === 'timeseries' && uses(e, /sum by \(result\) \(rate\(staplerd_fetch_total\b/));
    const latency = find('upstream latency', (p, e) => p.type === 'timeseries' && uses(e, /histogram_quantile\(0\.5,.*staplerd_upstream_request_duration_seconds_bucket/));
    assert.ok(uses(exprs(latency), /histogram_quantile\(0\.99,.*by \(le, host\)/), 'p99 per host beside p50');
    find('OCSP requests by outcome', (p, e) => p.type === 'timeseries' && uses(e, /sum by \(outcome\) \(rate\(staplerd_ocsp_requests_total\b/));
    find('sink pushes by result', (p, e) => p.type === 'timeseries' && uses(e, /staplerd_sink_push_total/) && uses(e, /\bresult\b/));
  });

  test('every query names only metrics, labels and label values staplerd exports', async () => {
    const { d, panels, text } = await dashboard();
    const metrics = await exportedMetrics();
    const vars = new Set(d.templating.list.map((v) => v.name));
    for (const p of panels) {
      for (const e of exprs(p)) {
        checkExpr(e, `panel "${p.title}"`, metrics);
        for (const v of e.matchAll(/\$([a-z_]+)/g)) if (!v[1]!.startsWith('__')) assert.ok(vars.has(v[1]!), `panel "${p.title}" uses undefined variable $${v[1]}`);
      }
    }
    for (const v of d.templating.list) {
      const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
      checkExpr(q, `variable ${v.name}`, metrics);
    }
    // Descriptions and anything else in the file, too.
    for (const m of text.matchAll(METRIC_RE)) assert.ok(metrics.has(baseName(m[0])), `${DASHBOARD} mentions ${m[0]}, which staplerd does not export`);
  });
});

// ---- Prometheus alert rules ----------------------------------------------------------------------------------

interface Rule {
  alert?: string;
  record?: string;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

describe(`${ALERTS}`, () => {
  async function rules(): Promise<Rule[]> {
    const doc = parseYaml(await read(ALERTS)) as { groups?: { name?: unknown; rules?: Rule[] }[] };
    assert.ok(Array.isArray(doc.groups) && doc.groups.length > 0, 'groups: [...]');
    const names = new Set<string>();
    for (const g of doc.groups) {
      assert.equal(typeof g.name, 'string', 'every group has a name');
      assert.ok(!names.has(g.name as string), `group ${String(g.name)} twice`);
      names.add(g.name as string);
      assert.ok(Array.isArray(g.rules) && g.rules.length > 0, `group ${String(g.name)} has rules`);
    }
    return doc.groups.flatMap((g) => g.rules!);
  }

  test('every rule is a complete alerting rule', async () => {
    const rs = await rules();
    const seen = new Set<string>();
    for (const r of rs) {
      const where = `alert ${String(r.alert)}`;
      assert.match(String(r.alert), /^[A-Z][A-Za-z0-9]+$/, `${where}: alert name`);
      assert.ok(!seen.has(r.alert!), `${where} defined twice`);
      seen.add(r.alert!);
      assert.equal(r.record, undefined, `${where}: no recording rules here`);
      assert.ok(typeof r.expr === 'string' && r.expr.trim() !== '', `${where}: expr`);
      assert.match(String(r.for), /^\d+[smhdwy]$/, `${where}: for: a duration`);
      assert.ok(['info', 'warning', 'critical'].includes(String(r.labels?.severity)), `${where}: labels.severity is info, warning or critical`);
      assert.ok(typeof r.annotations?.summary === 'string' && r.annotations.summary.trim() !== '', `${where}: annotations.summary`);
    }
  });

  test('cover expiring staples, must-staple, revocation, failing responders, down and not ready', async () => {
    const rs = await rules();
    const find = (what: string, pred: (r: Rule, e: string) => boolean): Rule => {
      const r = rs.find((x) => pred(x, String(x.expr)));
      assert.ok(r, `no alert for ${what}`);
      return r;
    };
    const sev = (r: Rule) => r.labels?.severity;
    const soon = find('a staple servable for less than an hour', (_r, e) => /staplerd_staple_seconds_servable < 3600\b/.test(e));
    assert.equal(sev(soon), 'warning');
    const critical = find('a staple servable for less than 10 minutes', (_r, e) => /staplerd_staple_seconds_servable < 600\b/.test(e));
    assert.equal(sev(critical), 'critical');
    const must = find('must-staple without staple', (_r, e) => /staplerd_must_staple_without_staple > 0/.test(e));
    assert.deepEqual([sev(must), must.for], ['critical', '1m']);
    find('a revoked certificate', (_r, e) => /staplerd_certificate_state\{state="revoked"\} == 1/.test(e));
    find('fetch errors from a responder', (_r, e) => /increase\(staplerd_fetch_total\{result!="ok"\}/.test(e));
    const failing = find('a certificate failing', (_r, e) => /staplerd_certificate_state\{state="failing"\}/.test(e));
    assert.equal(failing.for, '15m');
    find('staplerd down', (_r, e) => /^up\{[^}]*\} == 0$/.test(e.trim()));
    const ready = find('not ready', (_r, e) => /staplerd_ready == 0/.test(e));
    assert.equal(ready.for, '10m');
  });

  test('every expression and annotation names only metrics and labels staplerd exports', async () => {
    const rs = await rules();
    const metrics = await exportedMetrics();
    for (const r of rs) {
      const where = `alert ${String(r.alert)}`;
      const { labels } = checkExpr(String(r.expr), where, metrics);
      for (const [k, v] of Object.entries(r.annotations ?? {})) {
        for (const m of String(v).matchAll(/\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g)) {
          assert.ok(labels.has(m[1]!), `${where}: annotations.${k} uses $labels.${m[1]}, which the expression's series do not have`);
        }
        for (const m of String(v).matchAll(METRIC_RE)) assert.ok(metrics.has(baseName(m[0])), `${where}: annotations.${k} names ${m[0]}, which staplerd does not export`);
      }
    }
  });

  test('promtool check rules accepts the file', async (t: TestContext) => {
    const promtool = findBinary('promtool');
    if (!promtool) {
      t.skip('promtool not installed (Debian package prometheus): checked by the YAML reader above only');
      return;
    }
    const tmp = await tempDir('rules');
    try {
      const copy = join(tmp.dir, 'staplerd-alerts.yml');
      await copyFile(join(ROOT, ALERTS), copy);
      const r = await run(promtool, ['check', 'rules', copy], { cwd: tmp.dir, timeoutMs: 30_000 });
      assert.equal(r.code, 0, `promtool check rules:\n${r.stdout}${r.stderr}`);
    } finally {
      await tmp.cleanup();
    }
  });
});
