/**
 * Runs one load (a generator child process) against one server process and reads the server's CPU from
 * /proc over the same time, so the table can say whether the server or the generator was the limit.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoadSpec } from './ac-load.js';
import type { LoadResult } from './gen-common.js';
import type { KeepAliveSpec } from './keepalive-load.js';
import type { CloseLoadSpec } from './close-load.js';
import { benchScript, cpuSeconds, epochMs, spawnNode } from './proc.js';

export interface Timing {
  connections: number;
  durationSec: number;
  warmupSec: number;
}

export interface MeasuredLoad extends LoadResult {
  /** Server CPU over the measured window, % of one core. */
  serverCpuPct: number;
  /** Generator CPU over the measured window, % of one core. */
  generatorCpuPct: number;
}

export type LoadRequest = LoadSpec['requests'][number];

let specCounter = 0;

async function runGenerator(script: string, spec: unknown, tmp: string, serverPid: number): Promise<MeasuredLoad> {
  const path = join(tmp, `load-${++specCounter}.json`);
  await writeFile(path, JSON.stringify(spec));
  const child = spawnNode(benchScript(script), [path]);
  try {
    const phase = (name: string) => child.waitLine<{ phase?: string }>((l) => l.phase === name, 600_000);
    const done = phase('done');
    const result = child.waitLine<LoadResult>((l) => typeof l.rps === 'number', 600_000);
    await phase('measure');
    const s0 = cpuSeconds(serverPid);
    const g0 = cpuSeconds(child.pid);
    const t0 = epochMs();
    await done;
    const wall = (epochMs() - t0) / 1000;
    const serverCpuPct = ((cpuSeconds(serverPid) - s0) / wall) * 100;
    const generatorCpuPct = ((cpuSeconds(child.pid) - g0) / wall) * 100;
    return { ...(await result), serverCpuPct, generatorCpuPct };
  } finally {
    child.proc.stdin!.end();
    await child.stop();
  }
}

/** Keep-alive requests through autocannon (ac-load child). */
export function keepAliveLoad(url: string, requests: LoadRequest[], t: Timing, tmp: string, serverPid: number): Promise<MeasuredLoad> {
  const spec: LoadSpec = { url, connections: t.connections, durationSec: t.durationSec, warmupSec: t.warmupSec, requests };
  return runGenerator('ac-load', spec, tmp, serverPid);
}

/** One connection per request, HTTP/1.0, as nginx (GET) and Apache (POST) fetch. */
export function closeLoad(port: number, raw: Buffer[], t: Timing, tmp: string, serverPid: number): Promise<MeasuredLoad> {
  const spec: CloseLoadSpec = {
    port, connections: t.connections, durationSec: t.durationSec, warmupSec: t.warmupSec, rawBase64: raw.map((b) => b.toString('base64')),
  };
  return runGenerator('close-load', spec, tmp, serverPid);
}

/** Several keep-alive requests, prebuilt, over raw sockets (keepalive-load child). */
export function rawKeepAliveLoad(port: number, raw: Buffer[], t: Timing, tmp: string, serverPid: number): Promise<MeasuredLoad> {
  const spec: KeepAliveSpec = {
    port, connections: t.connections, durationSec: t.durationSec, warmupSec: t.warmupSec, rawBase64: raw.map((b) => b.toString('base64')),
  };
  return runGenerator('keepalive-load', spec, tmp, serverPid);
}

/** A keep-alive HTTP/1.1 GET, as HAProxy's or curl's. */
export function rawGet11(path: string, port: number): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, 'latin1');
}

/** nginx's request: `GET <path> HTTP/1.0` with a Host header only. */
export function rawGet(path: string, port: number): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\n\r\n`, 'latin1');
}

/** Apache mod_ssl's request: an HTTP/1.0 POST of the DER OCSPRequest. */
export function rawPost(path: string, port: number, body: Uint8Array): Buffer {
  const head = `POST ${path} HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${body.byteLength}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
