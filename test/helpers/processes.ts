/**
 * Real processes for integration and end-to-end tests: staplerd itself (`node dist/src/cli.js serve`),
 * `openssl ocsp` as an independent upstream responder, and the small tools around them (free ports,
 * bounded waits, running a command, skipping when a binary is missing).
 *
 * Every child started here is also registered for a last-resort SIGKILL when the test process exits, so a
 * failing test that never reaches its `after` hook still leaves nothing running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

/** Root of the repository (this file runs from dist/test/helpers/). */
export const REPO_ROOT = new URL('../../../', import.meta.url).pathname;
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli.js');

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function track(c: ChildProcess): void {
  live.add(c);
  c.once('exit', () => live.delete(c));
}

export { freePort } from '../../src/util/net.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined, or throws naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(everyMs);
  }
}


/** True once something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Absolute path of an executable on PATH (plus the sbin directories, where nginx lives), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory; keep looking
    }
  }
  return undefined;
}

/**
 * The path of `name`, or undefined after skipping the test LOUDLY. With STAPLERD_E2E=required (CI) a
 * missing binary fails the test instead: CI must never go green by skipping what it is meant to prove.
 */
export function requireBinary(t: TestContext, name: string, why = ''): string | undefined {
  const path = findBinary(name);
  if (path) return path;
  const msg = `${name} not installed${why ? ` (${why})` : ''}: ${t.name} SKIPPED; install it (see .ci/run) or set STAPLERD_E2E=required to make this a failure`;
  if (process.env.STAPLERD_E2E === 'required') throw new Error(`${name} not installed and STAPLERD_E2E=required: ${t.name} cannot run`);
  console.warn(`\n*** ${msg} ***\n`);
  t.skip(msg);
  return undefined;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded), never through a shell. */
export function run(cmd: string, args: string[], o: { timeoutMs?: number; input?: string | Uint8Array; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { cwd: o.cwd ?? REPO_ROOT, env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    track(c);
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no exit within ${o.timeoutMs ?? 20_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, o.timeoutMs ?? 20_000);
    c.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    c.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    c.stdin!.on('error', () => undefined); // the command may exit without reading its input
    c.stdin!.end(o.input ?? '');
  });
}

/** `node dist/src/cli.js ...args`. */
export function runCli(args: string[], o: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], o);
}

/** A temp directory removed by `cleanup()` (call it from `after`). */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `staplerd-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A long-running child with its output captured and a bounded, idempotent stop. */
export class Child {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  #code: number | null | undefined;

  constructor(readonly label: string, cmd: string, args: string[], cwd?: string) {
    this.proc = spawn(cmd, args, { cwd: cwd ?? REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    track(this.proc);
    this.proc.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString('utf8')));
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString('utf8')));
    this.exited = new Promise((resolve) => {
      this.proc.once('error', (e) => {
        this.stderr += `spawn error: ${String(e)}\n`;
        this.#code = null;
        resolve(null);
      });
      // An exit by signal reports code null; report it as 128 + signal number, as a shell would.
      this.proc.once('exit', (code, signal) => {
        this.#code = code ?? (signal ? 128 + (signalNumbers[signal] ?? 0) : null);
        resolve(this.#code);
      });
    });
  }

  get running(): boolean {
    return this.#code === undefined;
  }

  /** Sends `signal` and waits for exit; SIGKILLs after `timeoutMs` and then throws (a hang is a failure). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
    if (!this.running) return this.#code ?? null;
    this.proc.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const r = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (r === 'timeout') {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`${this.label} did not exit within ${timeoutMs} ms of ${signal}; killed\n${this.output()}`);
    }
    return r;
  }

  output(): string {
    return `--- ${this.label} stdout ---\n${this.stdout.slice(-4000)}\n--- ${this.label} stderr ---\n${this.stderr.slice(-4000)}`;
  }
}

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** staplerd running as `node dist/src/cli.js serve -c <config>`. */
export class Staplerd extends Child {
  url = '';

  constructor(readonly configPath: string) {
    super('staplerd', process.execPath, [CLI, 'serve', '-c', configPath]);
  }

  /** pino's JSON lines from stdout (anything else is ignored). */
  logs(): LogLine[] {
    const out: LogLine[] = [];
    for (const l of this.stdout.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        out.push(JSON.parse(l) as LogLine);
      } catch {
        // a line cut in half by a kill; not a log line we can use
      }
    }
    return out;
  }

  get(path: string, init?: RequestInit): Promise<Response> {
    return fetch(`${this.url}${path}`, { ...init, signal: AbortSignal.timeout(5000) });
  }

  async json<T = unknown>(path: string): Promise<T> {
    const r = await this.get(path);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  /** Polls /readyz until it answers 200. */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    await waitFor('staplerd /readyz 200', timeoutMs, async () => {
      if (!this.running) throw new Error(`staplerd exited (code ${String(await this.exited)})\n${this.output()}`);
      const r = await this.get('/readyz');
      await r.body?.cancel();
      return r.status === 200 ? true : undefined;
    });
  }
}

/**
 * Starts staplerd and waits until GET /healthz answers. With `listen.port: 0` in the config the port is
 * read from the "staplerd listening" log line (so logLevel must be info or lower); otherwise pass `port`.
 */
export async function startStaplerd(configPath: string, o: { port?: number; timeoutMs?: number } = {}): Promise<Staplerd> {
  const s = new Staplerd(configPath);
  // Generous: on a shared 2-core machine under load, `node cli.js --version` alone was measured at 4-6 s.
  const timeoutMs = o.timeoutMs ?? 30_000;
  try {
    s.url = await waitFor('staplerd to listen', timeoutMs, () => {
      if (!s.running) throw new Error('exited');
      if (o.port) return `http://127.0.0.1:${o.port}`;
      const line = s.logs().find((l) => l.msg === 'staplerd listening' && typeof l.url === 'string');
      return line ? String(line.url) : undefined;
    }, 50);
    await waitFor('staplerd /healthz', timeoutMs, async () => {
      if (!s.running) throw new Error('exited');
      const r = await s.get('/healthz');
      await r.body?.cancel();
      return r.ok ? true : undefined;
    }, 50);
  } catch (e) {
    if (s.running) await s.stop('SIGKILL');
    throw new Error(`staplerd did not start: ${(e as Error).message}\n${s.output()}`);
  }
  return s;
}

/** Writes a staplerd config (JSON is YAML) into `dir` and returns its path. */
export async function writeStaplerdConfig(dir: string, doc: Record<string, unknown>, name = 'staplerd.yaml'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `# written by a staplerd test\n${JSON.stringify({ logLevel: 'info', ...doc }, null, 2)}\n`);
  return path;
}

/** Files an `openssl ocsp` responder needs (as written by src/demo/ca.ts writeDemoPki). */
export interface OpensslResponderFiles {
  index: string;
  issuer: string;
  signer: string;
  signerKey: string;
}

/**
 * `openssl ocsp -index ... -port P` as an independent upstream. OpenSSL 3.0's `-port` takes only a number
 * (it binds every interface); tests contact it on 127.0.0.1 only. Waits for its "ACCEPT" line.
 */
export async function startOpensslResponder(openssl: string, f: OpensslResponderFiles, port: number, nmin = 60, prefix: string[] = []): Promise<Child> {
  const args = ['ocsp', '-index', f.index, '-port', String(port), '-rsigner', f.signer, '-rkey', f.signerKey, '-CA', f.issuer, '-nmin', String(nmin), '-ignore_err'];
  // `prefix` runs it through another command first, e.g. `ip netns exec NS` (test/image/).
  const c = prefix.length > 0 ? new Child('openssl ocsp', prefix[0]!, [...prefix.slice(1), openssl, ...args]) : new Child('openssl ocsp', openssl, args);
  try {
    await waitFor(`openssl ocsp to accept on port ${port}`, 10_000, () => {
      if (!c.running) throw new Error('exited');
      return /ACCEPT /.test(c.stdout + c.stderr) ? true : undefined;
    }, 50);
  } catch (e) {
    if (c.running) await c.stop('SIGKILL');
    throw new Error(`${(e as Error).message}\n${c.output()}`);
  }
  return c;
}

/**
 * `openssl s_client -status` against a TLS server on loopback for the demo PKI's good leaf: stdout and stderr
 * together (the OCSP block and the verify result), for the e2e tests of every server that staples.
 */
export async function sClientStatus(openssl: string, port: number, caFile: string, timeoutMs = 30_000): Promise<string> {
  const r = await run(openssl, ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'good.demo.test', '-status', '-CAfile', caFile], { timeoutMs });
  return `${r.stdout}\n${r.stderr}`;
}

export interface SuiteBinaries {
  /** For `describe(..., { skip })`: a message when a binary is missing and tests may skip, else false. */
  skip: string | false;
  /** The binary's path; throws (failing the suite's `before`) when it is missing and STAPLERD_E2E=required. */
  path(name: string): string;
}

/**
 * The describe-level form of requireBinary: missing binaries skip the whole suite LOUDLY, or, with
 * STAPLERD_E2E=required, let it run so that its `before` fails on `path(name)`.
 */
export function suiteBinaries(names: string[], what: string): SuiteBinaries {
  const found = new Map(names.map((n) => [n, findBinary(n)] as const));
  const missing = names.filter((n) => !found.get(n));
  let skip: string | false = false;
  if (missing.length > 0 && process.env.STAPLERD_E2E !== 'required') {
    skip = `${missing.join(', ')} not installed: ${what} SKIPPED; install it (see .ci/run) or set STAPLERD_E2E=required to make this a failure`;
    console.warn(`\n*** ${skip} ***\n`);
  }
  return {
    skip,
    path(name) {
      const p = found.get(name);
      if (!p) throw new Error(`${name} not installed and STAPLERD_E2E=required: ${what} cannot run`);
      return p;
    },
  };
}
