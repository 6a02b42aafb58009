/**
 * Keep-alive load over raw sockets with prebuilt requests cycled in order: used where autocannon's
 * request-list mode would be the bottleneck (it rebuilds every request when given several), i.e. the
 * mixed case. Responses are framed by Content-Length; latency is measured per request in sub-ms.
 * Usage: node dist/bench/keepalive-load.js SPEC.json (see gen-common.ts for the output protocol).
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { finish, resultOf, window } from './gen-common.js';

export interface KeepAliveSpec {
  port: number;
  connections: number;
  durationSec: number;
  warmupSec: number;
  /** Complete raw HTTP/1.1 requests, base64; cycled in order, each connection starting elsewhere. */
  rawBase64: string[];
}

const HEADER_END = Buffer.from('\r\n\r\n');

function main(): void {
  const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as KeepAliveSpec;
  const raws = spec.rawBase64.map((b) => Buffer.from(b, 'base64'));
  const latencies: number[] = [];
  const statusCounts: Record<string, number> = {};
  let errors = 0;
  let measuring = false;
  let stopped = false;

  const open = (slot: number, next: number): void => {
    let buf: Buffer | undefined;
    let need = -1;
    let status = 0;
    let t0 = 0;
    let i = next;
    let inFlight = false;
    const s: Socket = connect({ port: spec.port, host: '127.0.0.1', noDelay: true }, () => send());
    const send = (): void => {
      if (stopped) return void s.destroy();
      t0 = performance.now();
      inFlight = true;
      s.write(raws[i++ % raws.length]!);
    };
    s.on('data', (chunk: Buffer) => {
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      if (need < 0) {
        const end = buf.indexOf(HEADER_END);
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        status = Number(head.slice(9, 12));
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        need = end + 4 + (cl ? Number(cl[1]) : 0);
      }
      if (buf.length < need) return;
      inFlight = false;
      if (measuring) {
        latencies.push(performance.now() - t0);
        statusCounts[status] = (statusCounts[status] ?? 0) + 1;
      }
      buf = buf.length > need ? buf.subarray(need) : undefined;
      need = -1;
      send();
    });
    s.on('error', () => undefined);
    // The server may close (error answers, keep-alive timeout): a request in flight is an error; reconnect.
    s.on('close', () => {
      if (inFlight && measuring) errors++;
      if (!stopped) open(slot, i);
    });
  };

  for (let c = 0; c < spec.connections; c++) open(c, Math.floor((c * raws.length) / spec.connections));
  window(spec.warmupSec, spec.durationSec, () => (measuring = true), () => {
    measuring = false;
    stopped = true;
    finish(resultOf(latencies, statusCounts, errors, spec.durationSec));
  });
}

main();
