/**
 * Child processes for the benchmark: spawning node scripts, reading their JSON lines, and what Linux's
 * /proc says about them (CPU ticks, RSS), since process.cpuUsage() cannot see another process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/** dist/ (this file lives in dist/bench/ once compiled). */
export const DIST = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(DIST, 'src', 'cli.js');
export const benchScript = (name: string): string => join(DIST, 'bench', `${name}.js`);

/** Linux USER_HZ; 100 on every mainstream kernel build. */
const TICKS_PER_SECOND = 100;

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Resolves with the first stdout line (parsed as JSON when it is) that `match` accepts. */
  waitLine<T = Record<string, unknown>>(match: (line: T) => boolean, timeoutMs: number): Promise<T>;
  /** Writes one line to the child's stdin and waits for its next JSON reply line. */
  ask<T = Record<string, unknown>>(command: string, timeoutMs?: number): Promise<T>;
  /** Last lines of stderr, for messages when the child fails. */
  tail(): string;
  readonly exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `nodeArgs` go before the script (e.g. --cpu-prof, which NODE_OPTIONS does not accept). */
export function spawnNode(script: string, args: string[], nodeArgs: string[] = []): Child {
  const proc = spawn(process.execPath, [...nodeArgs, script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new Error(`could not spawn ${script}`);
  const waiters: Array<{ match: (v: unknown) => boolean; resolve: (v: unknown) => void }> = [];
  const errTail: string[] = [];
  let buffered = '';
  // Every line is read (a full pipe would block the child's synchronous log writes).
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (waiters.length === 0 || !line.startsWith('{')) continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        continue;
      }
      const i = waiters.findIndex((w) => w.match(value));
      if (i !== -1) waiters.splice(i, 1)[0]!.resolve(value);
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    errTail.push(chunk);
    if (errTail.length > 20) errTail.shift();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const waitLine = <T>(match: (v: T) => boolean, timeoutMs: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const w = { match: match as (v: unknown) => boolean, resolve: (v: unknown) => (clearTimeout(timer), resolve(v as T)) };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${script}: no matching line within ${timeoutMs} ms; stderr: ${errTail.join('').slice(-2000)}`));
      }, timeoutMs);
      waiters.push(w);
      void exited.then((code) => reject(new Error(`${script} exited (${code}); stderr: ${errTail.join('').slice(-2000)}`)));
    });
  return {
    proc,
    pid: proc.pid,
    waitLine,
    ask: <T>(command: string, timeoutMs = 60_000) => {
      const reply = waitLine<T>(() => true, timeoutMs);
      proc.stdin!.write(`${command}\n`);
      return reply;
    },
    tail: () => errTail.join('').slice(-2000),
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const bound = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(bound);
      return code;
    },
  };
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name start at field 3 (state); utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Resident and peak resident set size in MB (VmRSS, VmHWM). */
export function memoryMB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One plain HTTP request on a fresh connection (no agent pooling). */
export function httpRequest(url: string, o: { method?: string; body?: Uint8Array; headers?: Record<string, string> } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const done = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    };
    if (!o.method || o.method === 'GET') {
      get(url, { agent: false, headers: o.headers }, done).on('error', reject);
      return;
    }
    const req = request(url, { method: o.method, agent: false, headers: o.headers }, done);
    req.on('error', reject);
    req.end(o.body);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every `everyMs` until it returns a value, or throws after `timeoutMs`. */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, everyMs: number, timeoutMs: number, what: string): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Wall time in epoch milliseconds with sub-millisecond resolution, comparable across processes. */
export const epochMs = (): number => performance.timeOrigin + performance.now();
