import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary, freePort } from './processes.js';

/** A private redis-server on a free loopback port, no persistence, stopped and removed by `stop()`. */
export interface RedisServer {
  port: number;
  url: string;
  stop(): Promise<void>;
  /** Stops the process but keeps the port, so `start()` brings the same address back. */
  pause(): Promise<void>;
  start(): Promise<void>;
}

export function redisBinary(): string | undefined {
  return findBinary('redis-server');
}

async function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function startRedis(bin: string): Promise<RedisServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'staplerd-redis-'));
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'], { stdio: 'ignore' });
    const end = Date.now() + 5000;
    while (!(await reachable(port))) {
      if (Date.now() > end) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const pause = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  await start();
  process.once('exit', () => child?.kill('SIGKILL'));
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    start,
    pause,
    async stop() {
      await pause();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
