import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { StaplerError } from '../errors.js';
import type { HaproxySinkConfig } from '../config/schema.js';
import type { Staple } from '../service/staple.js';
import type { CertRecord } from '../sources/certificates.js';
import { systemClock, type Clock } from '../util/clock.js';
import { filterAccepts, haproxyAcceptable, type StapleSink } from './sink.js';

/**
 * HAProxy's own rule, kept here rather than shared with serving (whose margin shrinks for short windows):
 * every version refuses a response with less than 300 s to nextUpdate, and one without nextUpdate.
 */
const HAPROXY_MIN_REMAINING_MS = 300_000;

/** Replies are small; a stats socket that talks for longer than this is not answering our command. */
const MAX_REPLY = 256 * 1024;

/** `/run/haproxy/admin.sock` or `host:port` (IPv6 as `[::1]:9999`). */
export function socketTarget(s: string): { path: string } | { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(s);
  if (m && !s.startsWith('/')) return { host: m[1]!, port: Number(m[2]) };
  return { path: s };
}

/**
 * One command on the HAProxy master/stats CLI in non-interactive mode: HAProxy answers and closes the
 * connection, so the answer is everything read until EOF.
 */
export function haproxyCommand(socket: string, command: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = socketTarget(socket);
    const conn: Socket = 'path' in t ? connect(t.path) : connect(t.port, t.host);
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (e: Error) => {
      conn.destroy();
      reject(new StaplerError('HAPROXY_UNREACHABLE', `${socket}: ${e.message}`, { cause: e }));
    };
    conn.setTimeout(timeoutMs, () => fail(new Error(`no answer in ${timeoutMs} ms`)));
    conn.on('connect', () => conn.end(`${command}\n`));
    conn.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REPLY) fail(new Error('reply too long'));
      else chunks.push(c);
    });
    conn.on('error', fail);
    conn.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** What `show info` says about which HAProxy process this is: a new one has lost every pushed staple. */
export function processIdentity(info: string): string | undefined {
  const pid = /^Pid: (\d+)$/m.exec(info)?.[1];
  const start = /^Start_time_sec: (\d+)$/m.exec(info)?.[1] ?? /^Uptime_sec: /m.exec(info)?.[0];
  return pid ? `${pid}@${start ?? '?'}` : undefined;
}

/**
 * Pushes staples over the HAProxy runtime API (`set ssl ocsp-response <base64>`, HAProxy 2.2+). HAProxy
 * only replaces an OCSP entry it already has (from a `<crt>.ocsp` file present at load, see FileSink
 * createEmpty) and matches it by CertID; anything but `OCSP Response updated!` is a failure.
 */
export class HaproxySink implements StapleSink {
  readonly name: string;
  readonly #c: HaproxySinkConfig;
  readonly #log: Logger;

  readonly #clock: Clock;

  constructor(c: HaproxySinkConfig, log: Logger, clock: Clock = systemClock) {
    this.#clock = clock;
    if (!c.socket) throw new RangeError('HaproxySink: socket is required');
    if (!(c.timeoutMs > 0) || !(c.checkIntervalMs > 0)) throw new RangeError('HaproxySink: timeoutMs and checkIntervalMs must be > 0');
    this.#c = c;
    this.name = `haproxy:${c.socket}`;
    this.#log = log.child({ sink: this.name });
  }

  accepts(r: CertRecord, s: Staple): boolean {
    const remaining = s.nextUpdateMs - this.#clock.now().getTime();
    return filterAccepts(this.#c.certificates, r) && haproxyAcceptable(s) && !s.nextUpdateAssumed && remaining > HAPROXY_MIN_REMAINING_MS;
  }

  async push(r: CertRecord, s: Staple): Promise<void> {
    const reply = (await haproxyCommand(this.#c.socket, `set ssl ocsp-response ${s.body.toString('base64')}`, this.#c.timeoutMs)).trim();
    if (reply.includes('OCSP Response updated!')) return;
    if (/Certificate ID does not match/i.test(reply)) throw new StaplerError('HAPROXY_CERTID_MISMATCH', `${r.name}: ${reply}`);
    throw new StaplerError('HAPROXY_REJECTED', `${r.name}: ${reply.slice(0, 200) || 'empty reply'}`);
  }

  /**
   * Polls `show info`; when the process identity changes (restart, reload) or the socket comes back after
   * being unreachable, asks for everything to be pushed again.
   */
  watch(onReset: () => void): () => void {
    let known: string | undefined;
    let reachable = true;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    // A chain of timeouts, not setInterval: a slow socket can never make two checks overlap.
    const tick = async () => {
      try {
        const id = processIdentity(await haproxyCommand(this.#c.socket, 'show info', this.#c.timeoutMs));
        const changed = (known !== undefined && id !== known) || !reachable;
        if (changed) this.#log.info({ previous: known, now: id }, 'HAProxy restarted or came back: pushing all staples again');
        known = id;
        reachable = true;
        if (changed) onReset();
      } catch (err) {
        if (reachable) this.#log.warn({ err: (err as Error).message }, 'HAProxy stats socket unreachable');
        reachable = false;
      }
      if (stopped) return;
      timer = setTimeout(() => void tick(), this.#c.checkIntervalMs);
      timer.unref();
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }
}
