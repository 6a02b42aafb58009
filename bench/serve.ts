/**
 * Cases 1 and 2: serving cached staples. staplerd and a bare node:http server (same bytes, same headers)
 * take the same load one after the other; then a mixed load of hits, unknown and malformed requests.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getPath, type Leaf } from './certs.js';
import { OCSP_PREFIX, spawnDaemon, statesOf, waitPersisted, waitReady, type RunningDaemon } from './daemon.js';
import { createFixture, ocspStatusOf, type Fixture } from './fixture.js';
import { closeLoad, keepAliveLoad, rawGet, rawGet11, rawKeepAliveLoad, rawPost, type LoadRequest, type MeasuredLoad, type Timing } from './load.js';
import { benchScript, httpRequest, spawnNode, type Child } from './proc.js';
import type { BareSpec } from './bare-server.js';
import { monotonicMicros } from './profile.js';
import { pinningAvailable, wrkAvailable, wrkPinned, wrkSideBySide, type PinnedRuns, type WrkPairs } from './wrk.js';

export interface ServeRow {
  name: string;
  bare: MeasuredLoad;
  staplerd: MeasuredLoad;
  /** staplerd rps / bare rps. */
  ratio: number;
}

export interface MixedResult {
  hitsOnly: MeasuredLoad;
  mixed: MeasuredLoad;
  /** mixed rps / hits-only rps, same generator, same 1,000 certificates. */
  ratio: number;
  /** Non-200 responses and connection errors under mixed load. */
  bad: number;
  /** Each distinct mixed request sent once beforehand: OCSP status seen vs expected. */
  probeFailures: string[];
}

export interface ServeResults {
  /** Monotonic µs from the first load to the last (to cut start-up out of a --cpu-prof profile). */
  loadWindowUs: [number, number];
  certificates: number;
  /** Runs per server and row (alternating), each a warm-up plus a window. */
  rounds: number;
  rows: ServeRow[];
  mixed: MixedResult | undefined;
  /** GET hits under wrk, keep-alive and Connection: close, median of alternating pairs; or why not run. */
  wrk: WrkPairs[] | { skipped: string };
  /** The pinned, simultaneous diagnostic (wrkPinned): staplerd and an exercised bare server against the fresh one. */
  pinned?: PinnedRuns[] | { skipped: string };
}

export interface WrkOptions {
  pairs: number;
  durationSec: number;
  warmupSec: number;
}

/** wrk -t2 -c50, as issue 14 states the targets. */
const WRK_THREADS = 2;

async function wrkRows(s: Servers, connections: number, o: WrkOptions): Promise<WrkPairs[] | { skipped: string }> {
  if (!(await wrkAvailable())) return { skipped: 'wrk not installed (Debian package wrk)' };
  const path = getPath(OCSP_PREFIX, s.fx.minter.request(s.fx.leaves[0]!));
  const servers = { bare: { url: `http://127.0.0.1:${s.barePort}`, pid: s.bare.pid }, staplerd: { url: s.daemon.url, pid: s.daemon.child.pid } };
  const base = { threads: WRK_THREADS, connections, ...o };
  return [
    await wrkSideBySide('GET hit, keep-alive (wrk)', servers, path, { ...base, close: false }),
    await wrkSideBySide('GET hit, Connection: close (wrk)', servers, path, { ...base, close: true }),
  ];
}

const SERVED_HEADERS = ['content-type', 'etag', 'last-modified', 'expires', 'cache-control'] as const;
const POST_HEADERS = { 'content-type': 'application/ocsp-request' };

interface Servers {
  fx: Fixture;
  daemon: RunningDaemon;
  bare: Child;
  barePort: number;
  /** Node options of the bare servers (with --cpu-prof, their own profile directory). */
  bareNodeArgs: string[];
}

async function startBare(fx: Fixture, spec: BareSpec, file: string, nodeArgs: string[]): Promise<{ child: Child; port: number }> {
  await writeFile(join(fx.tmp, file), JSON.stringify(spec));
  const child = spawnNode(benchScript('bare-server'), [join(fx.tmp, file)], nodeArgs);
  const { port } = await child.waitLine<{ port: number }>((l) => typeof l.port === 'number', 30_000);
  return { child, port };
}

/**
 * The pinned diagnostic (wrkPinned) for GET hits, keep-alive and Connection: close: staplerd against the
 * bare server, and a bare server that first exercised what the daemon's other parts use against the same
 * fresh one.
 */
async function pinnedRows(s: Servers, connections: number, o: WrkOptions): Promise<PinnedRuns[] | { skipped: string }> {
  if (!(await wrkAvailable()) || !(await pinningAvailable())) return { skipped: 'needs wrk, taskset and 2 CPUs' };
  const path = getPath(OCSP_PREFIX, s.fx.minter.request(s.fx.leaves[0]!));
  const spec = JSON.parse(await readFile(join(s.fx.tmp, 'bare.json'), 'utf8')) as BareSpec;
  const exercised = await startBare(s.fx, { ...spec, exercise: true }, 'bare-exercised.json', []);
  try {
    const bare = { name: 'bare', url: `http://127.0.0.1:${s.barePort}`, pid: s.bare.pid };
    const staplerd = { name: 'staplerd', url: s.daemon.url, pid: s.daemon.child.pid };
    const warmed = { name: 'exercised bare', url: `http://127.0.0.1:${exercised.port}`, pid: exercised.child.pid };
    const rows: PinnedRuns[] = [];
    for (const close of [false, true]) {
      const runs = { connections, durationSec: o.durationSec, runs: o.pairs, close };
      const how = close ? 'Connection: close' : 'keep-alive';
      rows.push(await wrkPinned(`GET hit, ${how}: staplerd / bare`, { reference: bare, subject: staplerd }, path, runs));
      rows.push(await wrkPinned(`GET hit, ${how}: exercised bare / bare`, { reference: bare, subject: warmed }, path, runs));
    }
    return rows;
  } finally {
    await exercised.child.stop();
  }
}

async function startServers(certs: number, logLevel: string, nodeArgs: string[], bareNodeArgs: string[]): Promise<Servers> {
  const fx = await createFixture({ label: 'serve', count: certs, unknown: 50, concurrency: 64, logLevel });
  const daemon = await spawnDaemon(fx.configPath, nodeArgs);
  await waitReady(daemon, 50, 120_000);
  const states = await statesOf(daemon);
  if (states['good'] !== certs) throw new Error(`serve setup: expected ${certs} good, got ${JSON.stringify(states)}`);
  // The staple writes wait out the fetch burst (up to 10 s): let them finish, or they run inside the first
  // measured window (open, write, fsync, rename per staple) and tax staplerd's side alone.
  await waitPersisted(fx.dataDir, certs, 120_000);
  // The bare server answers exactly what staplerd answered for the first leaf's GET.
  const path = getPath(OCSP_PREFIX, fx.minter.request(fx.leaves[0]!));
  const probe = await httpRequest(daemon.url + path);
  if (probe.status !== 200 || ocspStatusOf(probe.body) !== 0) throw new Error(`serve setup: probe answered ${probe.status}`);
  const headers: Record<string, string> = {};
  for (const h of SERVED_HEADERS) if (typeof probe.headers[h] === 'string') headers[h] = probe.headers[h] as string;
  const spec: BareSpec = { getPath: path, postPath: OCSP_PREFIX, body: probe.body.toString('base64'), headers };
  const { child: bare, port } = await startBare(fx, spec, 'bare.json', bareNodeArgs);
  return { fx, daemon, bare, barePort: port, bareNodeArgs };
}

const portOf = (url: string): number => Number(new URL(url).port);

/**
 * Reference and subject alternate in ABBA order (A B for one round, A B B A for two, ...), each run a full
 * warm-up + window, and the windows are summed: a noisy neighbour or a drift hits both about equally.
 */
async function alternate(a: () => Promise<MeasuredLoad>, b: () => Promise<MeasuredLoad>, rounds: number): Promise<[MeasuredLoad, MeasuredLoad]> {
  const as: MeasuredLoad[] = [];
  const bs: MeasuredLoad[] = [];
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      as.push(await a());
      bs.push(await b());
    } else {
      bs.push(await b());
      as.push(await a());
    }
  }
  return [combine(as), combine(bs)];
}

/** Sums request counts and windows; p50 and CPU are request-weighted means, p99 the worst round's. */
export function combine(runs: MeasuredLoad[]): MeasuredLoad {
  const requests = runs.reduce((n, r) => n + r.requests, 0);
  const durationSec = runs.reduce((n, r) => n + r.durationSec, 0);
  const mean = (k: 'p50' | 'serverCpuPct' | 'generatorCpuPct'): number => runs.reduce((n, r) => n + r[k] * r.durationSec, 0) / durationSec;
  const statusCounts: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.statusCounts)) statusCounts[k] = (statusCounts[k] ?? 0) + v;
  return {
    requests, durationSec, rps: requests / durationSec, p50: mean('p50'), p99: Math.max(...runs.map((r) => r.p99)),
    statusCounts, errors: runs.reduce((n, r) => n + r.errors, 0), serverCpuPct: mean('serverCpuPct'), generatorCpuPct: mean('generatorCpuPct'),
  };
}

async function sideBySide(name: string, s: Servers, rounds: number, run: (url: string, port: number, pid: number) => Promise<MeasuredLoad>): Promise<ServeRow> {
  const [bare, staplerd] = await alternate(
    () => run(`http://127.0.0.1:${s.barePort}`, s.barePort, s.bare.pid),
    () => run(s.daemon.url, portOf(s.daemon.url), s.daemon.child.pid),
    rounds,
  );
  return { name, bare, staplerd, ratio: staplerd.rps / bare.rps };
}

async function hitRows(s: Servers, t: Timing, rounds: number): Promise<ServeRow[]> {
  const req = s.fx.minter.request(s.fx.leaves[0]!);
  const path = getPath(OCSP_PREFIX, req);
  const body = Buffer.from(req).toString('base64');
  const get: LoadRequest = { method: 'GET', path };
  const post: LoadRequest = { method: 'POST', path: OCSP_PREFIX, headers: POST_HEADERS, bodyBase64: body };
  const tmp = s.fx.tmp;
  return [
    await sideBySide('GET hit, keep-alive', s, rounds, (url, _p, pid) => keepAliveLoad(url, [get], t, tmp, pid)),
    await sideBySide('GET hit, keep-alive (raw generator)', s, rounds, (_u, port, pid) => rawKeepAliveLoad(port, [rawGet11(path, port)], t, tmp, pid)),
    await sideBySide('POST hit, keep-alive', s, rounds, (url, _p, pid) => keepAliveLoad(url, [post], t, tmp, pid)),
    await sideBySide('GET hit, close (HTTP/1.0)', s, rounds, (_u, port, pid) => closeLoad(port, [rawGet(path, port)], t, tmp, pid)),
    await sideBySide('POST hit, close (HTTP/1.0)', s, rounds, (_u, port, pid) => closeLoad(port, [rawPost(OCSP_PREFIX, port, req)], t, tmp, pid)),
  ];
}

/** Deterministic shuffle (mulberry32), so every run sends the same sequence. */
function shuffle<T>(items: T[], seed: number): T[] {
  let a = seed;
  const rand = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

interface Expected {
  req: LoadRequest;
  /** OCSPResponseStatus expected: 0 successful, 1 malformedRequest, 6 unauthorized. */
  status: number;
}

function malformed(s: Servers): LoadRequest[] {
  const real = Buffer.from(s.fx.minter.request(s.fx.leaves[1]!));
  const two = Buffer.from(s.fx.minter.request(s.fx.leaves[2]!));
  const paths = [
    `${OCSP_PREFIX}/${encodeURIComponent(Buffer.from('not an OCSP request').toString('base64'))}`,
    `${OCSP_PREFIX}/${encodeURIComponent(real.subarray(0, real.length - 9).toString('base64'))}`,
    `${OCSP_PREFIX}/${encodeURIComponent(Buffer.concat([real, two]).toString('base64'))}`,
    `${OCSP_PREFIX}/MEIw!!not*base64`,
    `${OCSP_PREFIX}/`,
  ];
  return paths.map((path) => ({ method: 'GET', path }));
}

/** 90% hits spread over all certificates, 5% unknown certificates, 5% malformed; 2,000 requests cycled. */
function mixedRequests(s: Servers, total: number): { mixed: Expected[]; hitsOnly: LoadRequest[] } {
  const hit = (l: Leaf): LoadRequest => ({ method: 'GET', path: getPath(OCSP_PREFIX, s.fx.minter.request(l)) });
  const leaves = s.fx.leaves;
  const hits = Array.from({ length: total * 0.9 }, (_, i) => ({ req: hit(leaves[i % leaves.length]!), status: 0 }));
  const unknown = Array.from({ length: total * 0.05 }, (_, i) => ({ req: hit(s.fx.unknown[i % s.fx.unknown.length]!), status: 6 }));
  const bad = malformed(s);
  const mal = Array.from({ length: total * 0.05 }, (_, i) => ({ req: bad[i % bad.length]!, status: 1 }));
  const hitsOnly = Array.from({ length: total }, (_, i) => hit(leaves[i % leaves.length]!));
  return { mixed: shuffle([...hits, ...unknown, ...mal], 42), hitsOnly: shuffle(hitsOnly, 7) };
}

async function mixedCase(s: Servers, t: Timing, rounds: number): Promise<MixedResult> {
  const { mixed, hitsOnly } = mixedRequests(s, 2000);
  const probeFailures: string[] = [];
  const seen = new Set<string>();
  for (const e of mixed) {
    if (seen.has(e.req.path)) continue;
    seen.add(e.req.path);
    const r = await httpRequest(s.daemon.url + e.req.path);
    const got = r.status === 200 ? ocspStatusOf(r.body) : -1;
    const type = r.headers['content-type'];
    if (r.status !== 200 || got !== e.status || type !== 'application/ocsp-response') {
      probeFailures.push(`${e.req.path.slice(0, 40)}: HTTP ${r.status} ${String(type)} OCSP status ${got}, expected ${e.status}`);
    }
  }
  const pid = s.daemon.child.pid;
  const port = portOf(s.daemon.url);
  // autocannon rebuilds every request when given a list, and becomes the bottleneck: raw sockets here.
  const hitsRaw = hitsOnly.map((r) => rawGet11(r.path, port));
  const mixedRaw = mixed.map((e) => rawGet11(e.req.path, port));
  const [hitsRun, mixedRun] = await alternate(
    () => rawKeepAliveLoad(port, hitsRaw, t, s.fx.tmp, pid),
    () => rawKeepAliveLoad(port, mixedRaw, t, s.fx.tmp, pid),
    rounds,
  );
  const bad = Object.entries(mixedRun.statusCounts).reduce((n, [code, c]) => n + (code === '200' ? 0 : c), 0) + mixedRun.errors;
  return { hitsOnly: hitsRun, mixed: mixedRun, ratio: mixedRun.rps / hitsRun.rps, bad, probeFailures };
}

export async function serveCases(o: {
  certs: number; timing: Timing; rounds: number; logLevel: string; nodeArgs?: string[]; bareNodeArgs?: string[]; wrk: WrkOptions; wrkOnly?: boolean;
}): Promise<ServeResults> {
  const s = await startServers(o.certs, o.logLevel, o.nodeArgs ?? [], o.bareNodeArgs ?? []);
  try {
    const from = monotonicMicros();
    const wrk = await wrkRows(s, o.timing.connections, o.wrk);
    const pinned = await pinnedRows(s, o.timing.connections, o.wrk);
    const rows = o.wrkOnly ? [] : await hitRows(s, o.timing, o.rounds);
    const mixed = o.wrkOnly ? undefined : await mixedCase(s, o.timing, o.rounds);
    return { loadWindowUs: [from, monotonicMicros()], certificates: o.certs, rounds: o.rounds, rows, mixed, wrk, pinned };
  } finally {
    await s.bare.stop();
    await s.daemon.child.stop();
    await s.fx.cleanup();
  }
}
