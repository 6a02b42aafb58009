/**
 * Case 6, fleet mode (issue 7): upstream fetches and time to all-valid for 5 nodes sharing one Redis,
 * next to 1 node alone. The same N certificates, the same responder process: first one daemon with the
 * local store (spawn to /readyz 200, requests the responder saw), then five daemons started together on
 * one private redis-server, each with its own empty data dir (first spawn to the last node's /readyz 200,
 * requests the responder saw). Without the shared store the five would ask 5 x N questions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { spawnDaemon, statesOf, waitReady, type RunningDaemon } from './daemon.js';
import { createFixture, type Fixture } from './fixture.js';
import { pollUntil } from './proc.js';
import { freePort } from '../src/util/net.js';

export const FLEET_NODES = 5;

export interface FleetRun {
  nodes: number;
  /** First spawn to the last node's /readyz 200, ms. */
  allReadyMs: number;
  /** Requests the responder saw during the run. */
  upstreamRequests: number;
  /** Certificates in state good, per node. */
  good: number[];
}

export type FleetResult =
  | { kind: 'skipped'; reason: string }
  | { kind: 'ran'; certificates: number; single: FleetRun; fleet: FleetRun; redis: string };

/** A redis-server on a free loopback port, no persistence, in its own temp dir. */
interface BenchRedis {
  url: string;
  version: string;
  stop(): Promise<void>;
}

function findRedisServer(): string | undefined {
  for (const d of [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!d) continue;
    const p = join(d, 'redis-server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory; keep looking
    }
  }
  return undefined;
}


/** Sends one inline command and resolves with the first reply chunk, or undefined when nothing listens. */
function redisSay(port: number, command: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const done = (v: string | undefined): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), 1000);
    s.once('connect', () => s.write(`${command}\r\n`));
    s.once('data', (d: Buffer) => done(d.toString('utf8')));
    s.once('error', () => done(undefined));
  });
}

async function startRedis(bin: string): Promise<BenchRedis> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'staplerd-bench-redis-'));
  const child: ChildProcess = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await pollUntil(async () => ((await redisSay(port, 'PING'))?.startsWith('+PONG') ? true : undefined), 50, 10_000, 'redis-server to answer PING');
    const info = (await redisSay(port, 'INFO server')) ?? '';
    return { url: `redis://127.0.0.1:${port}/0`, version: /redis_version:(\S+)/.exec(info)?.[1] ?? '?', stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

const requestsSoFar = async (fx: Fixture): Promise<number> => (await fx.upstream.ask<{ requests: number }>('stats')).requests;

/** The fixture's own config (written by bench/daemon.ts, JSON after one comment line) with a data dir and store of our choosing. */
async function nodeConfig(fx: Fixture, i: number, store: Record<string, unknown>): Promise<string> {
  const text = await readFile(fx.configPath, 'utf8');
  const doc = JSON.parse(text.slice(text.indexOf('{'))) as Record<string, unknown>;
  const dir = join(fx.tmp, `node${i}`);
  await mkdir(dir, { recursive: true });
  const path = join(dir, 'staplerd.yaml');
  await writeFile(path, `# written by npm run bench (fleet case)\n${JSON.stringify({ ...doc, dataDir: join(dir, 'var'), store }, null, 2)}\n`);
  return path;
}

/** Spawns one daemon per config together; resolves when every one answers /readyz 200. */
async function runNodes(fx: Fixture, configs: string[], nodeArgs: string[]): Promise<FleetRun> {
  const before = await requestsSoFar(fx);
  const started = await Promise.allSettled(configs.map((c) => spawnDaemon(c, nodeArgs, 300_000)));
  const daemons = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const t0 = Math.min(...daemons.map((d) => d.spawnedAt));
    const ready = await Promise.all(daemons.map((d: RunningDaemon) => waitReady(d, 50, 600_000)));
    const allReadyMs = Math.max(...ready.map((r) => r.at)) - t0;
    const good = await Promise.all(daemons.map(async (d) => (await statesOf(d))['good'] ?? 0));
    return { nodes: configs.length, allReadyMs, upstreamRequests: (await requestsSoFar(fx)) - before, good };
  } finally {
    await Promise.all(daemons.map((d) => d.child.stop()));
  }
}

export async function fleetCase(o: { certs: number; concurrency: number; logLevel: string; nodeArgs?: string[] }): Promise<FleetResult> {
  const bin = findRedisServer();
  if (!bin) return { kind: 'skipped', reason: 'redis-server not installed' };
  const fx = await createFixture({ label: 'fleet', count: o.certs, concurrency: o.concurrency, logLevel: o.logLevel });
  try {
    const single = await runNodes(fx, [await nodeConfig(fx, 0, { kind: 'local' })], o.nodeArgs ?? []);
    const redis = await startRedis(bin);
    try {
      const store = { kind: 'redis', redis: { url: redis.url, keyPrefix: 'bench:' } };
      const configs = await Promise.all(Array.from({ length: FLEET_NODES }, (_, i) => nodeConfig(fx, i + 1, store)));
      const fleet = await runNodes(fx, configs, o.nodeArgs ?? []);
      return { kind: 'ran', certificates: o.certs, single, fleet, redis: redis.version };
    } finally {
      await redis.stop();
    }
  } finally {
    await fx.cleanup();
  }
}
