/**
 * wrk (Debian package) against staplerd and the bare node server, side by side: the serve targets of issue
 * 14 are judged on these. wrk is C with its own event loop, so on 2 cores it leaves the server more CPU than
 * autocannon (which saturates first and flatters the ratio). Pairs alternate (bare first, then staplerd
 * first, ...) and the median of the per-pair ratios is reported, so one noisy window moves nothing.
 */
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { cpuSeconds, epochMs } from './proc.js';

export interface WrkRun {
  rps: number;
  requests: number;
  /** Latency percentiles, ms. */
  p50: number;
  p99: number;
  /** Socket errors (connect, read, write, timeout) and non-2xx/3xx answers. */
  errors: number;
  non2xx: number;
  /** Server CPU over the run, % of one core. */
  serverCpuPct: number;
}

export interface WrkPairs {
  name: string;
  /** Per pair: [bare, staplerd]. */
  pairs: Array<[WrkRun, WrkRun]>;
  ratios: number[];
  median: number;
  command: string;
}

export function wrkAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('wrk', ['--version'], { stdio: 'ignore' });
    p.on('error', () => resolve(false));
    p.on('exit', () => resolve(true));
  });
}

const toMs = (v: string, unit: string): number => Number(v) * (unit === 'us' ? 1e-3 : unit === 's' ? 1e3 : unit === 'm' ? 60e3 : 1);

/** Reads wrk's text summary (wrk 4.1 with --latency). */
export function parseWrk(out: string): Omit<WrkRun, 'serverCpuPct'> {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/^Requests\/sec:\s+([\d.]+)/m),
    requests: num(/^\s+(\d+) requests in /m),
    p50: pct('50'),
    p99: pct('99'),
    errors: sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0,
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
  };
}

export function wrkArgs(url: string, o: { threads: number; connections: number; durationSec: number; close: boolean }): string[] {
  return [`-t${o.threads}`, `-c${o.connections}`, `-d${Math.max(1, Math.round(o.durationSec))}s`, '--latency', ...(o.close ? ['-H', 'Connection: close'] : []), url];
}

export async function runWrk(url: string, o: { threads: number; connections: number; durationSec: number; close: boolean; serverPid: number }): Promise<WrkRun> {
  const args = wrkArgs(url, o);
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const c0 = cpuSeconds(o.serverPid);
  const t0 = epochMs();
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', resolve);
  });
  const wall = (epochMs() - t0) / 1000;
  const serverCpuPct = ((cpuSeconds(o.serverPid) - c0) / wall) * 100;
  const r = parseWrk(out);
  if (code !== 0 || !Number.isFinite(r.rps)) throw new Error(`wrk ${args.join(' ')} exited ${code}: ${err}${out}`);
  return { ...r, serverCpuPct };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * `pairs` alternating pairs (bare then staplerd, then staplerd then bare, ...) after one warm-up run each.
 */
export async function wrkSideBySide(
  name: string,
  servers: { bare: { url: string; pid: number }; staplerd: { url: string; pid: number } },
  path: string,
  o: { threads: number; connections: number; durationSec: number; warmupSec: number; close: boolean; pairs: number },
): Promise<WrkPairs> {
  const run = (s: { url: string; pid: number }, durationSec: number) => runWrk(s.url + path, { ...o, durationSec, serverPid: s.pid });
  await run(servers.bare, o.warmupSec);
  await run(servers.staplerd, o.warmupSec);
  const pairs: Array<[WrkRun, WrkRun]> = [];
  for (let i = 0; i < o.pairs; i++) {
    if (i % 2 === 0) {
      const b = await run(servers.bare, o.durationSec);
      pairs.push([b, await run(servers.staplerd, o.durationSec)]);
    } else {
      const s = await run(servers.staplerd, o.durationSec);
      pairs.push([await run(servers.bare, o.durationSec), s]);
    }
  }
  const ratios = pairs.map(([b, s]) => s.rps / b.rps);
  const command = `wrk ${wrkArgs('http://127.0.0.1:PORT' + path.slice(0, 24) + '…', { ...o }).join(' ')}`;
  return { name, pairs, ratios, median: median(ratios), command };
}

export interface PinnedRuns {
  name: string;
  reference: string;
  subject: string;
  /** Per run: [reference rps, subject rps], measured at the same time. */
  runs: Array<[number, number]>;
  ratios: number[];
  median: number;
}

/** taskset (util-linux) and a second CPU: what the pinned diagnostic needs. */
export async function pinningAvailable(): Promise<boolean> {
  if (cpus().length < 2) return false;
  return new Promise((resolve) => {
    const p = spawn('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    p.on('error', () => resolve(false));
    p.on('exit', (code) => resolve(code === 0));
  });
}

function taskset(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('taskset', args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`taskset ${args.join(' ')} exited ${code}`))));
  });
}

function pinnedWrk(url: string, o: { connections: number; durationSec: number; close: boolean }): Promise<number> {
  const args = ['-c', '0', 'wrk', ...wrkArgs(url, { threads: 1, connections: o.connections, durationSec: o.durationSec, close: o.close })];
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.on('error', reject);
    child.on('exit', (code) => {
      const r = parseWrk(out);
      if (code !== 0 || !Number.isFinite(r.rps)) reject(new Error(`taskset ${args.join(' ')} exited ${code}: ${out}`));
      else resolve(r.rps);
    });
  });
}

/**
 * A diagnostic, not a target: both servers pinned to the last CPU, where they share one core, and one
 * wrk each (`-t1`, half the connections) on CPU 0, run at the same time. A neighbour's load then falls on
 * both servers alike, so the ratio measures CPU per request and moves by a few percent between runs where
 * the alternating pairs move by tens. The servers' affinity is restored afterwards.
 */
export async function wrkPinned(
  name: string,
  servers: { reference: { name: string; url: string; pid: number }; subject: { name: string; url: string; pid: number } },
  path: string,
  o: { connections: number; durationSec: number; runs: number; close: boolean },
): Promise<PinnedRuns> {
  const last = String(cpus().length - 1);
  const all = `0-${last}`;
  const { reference, subject } = servers;
  const half = { ...o, connections: Math.max(1, Math.round(o.connections / 2)) };
  await taskset(['-a', '-p', '-c', last, String(reference.pid)]);
  await taskset(['-a', '-p', '-c', last, String(subject.pid)]);
  try {
    const runs: Array<[number, number]> = [];
    for (let i = 0; i < o.runs; i++) runs.push(await Promise.all([pinnedWrk(reference.url + path, half), pinnedWrk(subject.url + path, half)]));
    const ratios = runs.map(([r, s]) => s / r);
    return { name, reference: reference.name, subject: subject.name, runs, ratios, median: median(ratios) };
  } finally {
    await taskset(['-a', '-p', '-c', all, String(reference.pid)]).catch(() => undefined);
    await taskset(['-a', '-p', '-c', all, String(subject.pid)]).catch(() => undefined);
  }
}
