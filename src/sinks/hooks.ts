import { execFile } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import type { HookConfig, HooksConfig } from '../config/schema.js';
import { servableUntil } from '../pki/freshness.js';
import type { CertBrief, CertificateView, Staple } from '../service/staple.js';
import type { CertRecord } from '../sources/certificates.js';
import { systemClock, type Clock } from '../util/clock.js';
import { DropReport, TokenBucket } from '../util/token-bucket.js';
import { childEnv } from './child-env.js';

export type HookEvent = 'revoked' | 'must_staple_expiring';

export interface HookRunnerOptions {
  hooks: HooksConfig;
  log: Logger;
  /**
   * Every certificate's brief: the must-staple expiry check walks these on every pass and builds a full view
   * only to fire. Views of 20,000 certificates took 240-320 ms of event loop here, their briefs 3-14 ms.
   */
  briefs: () => Iterable<CertBrief>;
  /** One certificate's full view (the hook's details); undefined when it is gone. */
  view: (name: string) => CertificateView | undefined;
  marginSeconds: number;
  now: () => Date;
  /** Timers for the dropped-runs report, and the rate limit's time; default the system clock. */
  clock?: Clock;
  /** Run hooks for learned certificates too (learning.hooks); off by default: anyone can make one learned. */
  learned?: boolean;
  onResult?: (event: HookEvent, result: 'ok' | 'error' | 'dropped') => void;
}

/** Drops are logged at most once per this interval (with the count), not once each. */
const DROP_LOG_INTERVAL_MS = 60_000;

/**
 * One hook's limits (issue 12 item 6): a token bucket on starts, at most `concurrency` runs at once (a run
 * is its command and its webhook request together), at most `burst` waiting; the rest are dropped,
 * counted and reported. Once stopped it starts nothing: the runs still waiting are dropped at stop, and
 * later offers are ignored, so no command or request is launched after shutdown.
 */
class HookLane {
  readonly #h: HookConfig;
  readonly #bucket: TokenBucket;
  readonly #drops: DropReport;
  readonly #clock: Clock;
  readonly #queue: Array<() => Promise<void>> = [];
  #running = 0;
  #stopped = false;
  /** Runs that were waiting when the lane stopped (not the limit's drops, which #drops counts). */
  #droppedAtStop = 0;

  constructor(h: HookConfig, clock: Clock, onDrops: (n: number) => void) {
    if (!(h.concurrency >= 1)) throw new RangeError('HookLane: concurrency must be >= 1');
    this.#h = h;
    this.#clock = clock;
    this.#bucket = new TokenBucket({ perMinute: h.maxPerMinute, burst: h.burst, nowMs: clock.now().getTime() });
    this.#drops = new DropReport({ clock, intervalMs: DROP_LOG_INTERVAL_MS, report: onDrops });
  }

  /** Every run dropped: by the limits, and waiting when the lane stopped. */
  get dropped(): number {
    return this.#drops.total + this.#droppedAtStop;
  }

  /** Starts (or queues) `run`; `dropped` when the limits dropped it, `stopped` (nothing done) after stop. */
  offer(run: () => Promise<void>): 'queued' | 'dropped' | 'stopped' {
    if (this.#stopped) return 'stopped';
    if (!this.#bucket.take(this.#clock.now().getTime()) || this.#queue.length >= this.#h.burst) {
      this.#drops.drop();
      return 'dropped';
    }
    this.#queue.push(run);
    this.#next();
    return 'queued';
  }

  /** Starts nothing more; drops the waiting runs and returns how many. The running ones go on. */
  stop(): number {
    this.#stopped = true;
    const waiting = this.#queue.length;
    this.#queue.length = 0;
    this.#droppedAtStop += waiting;
    this.#drops.stop();
    return waiting;
  }

  #next(): void {
    while (!this.#stopped && this.#running < this.#h.concurrency && this.#queue.length > 0) {
      const run = this.#queue.shift()!;
      this.#running++;
      void run().finally(() => {
        this.#running--;
        this.#next();
      });
    }
  }
}

/**
 * Runs the operator's hooks: a command (no shell; details in STAPLERD_* environment variables) and/or a
 * webhook (POST JSON). The URL comes from the config only, never from anything received.
 * - revoked: when a certificate's fetched staple turns revoked (once per transition);
 * - must_staple_expiring: when a must-staple certificate's servable staple ends within `within` (or it has
 *   none), once per staple.
 */
export class HookRunner {
  readonly #o: HookRunnerOptions;
  /** Certificates last seen revoked: only these, so the set stays as small as the revoked ones. */
  readonly #revoked = new Set<string>();
  /** Must-staple certificates warned about, with the staple (thisUpdate) they were warned for. */
  readonly #warned = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  readonly #inflight = new Set<Promise<void>>();
  readonly #lanes = new Map<HookEvent, HookLane>();

  constructor(o: HookRunnerOptions) {
    this.#o = o;
    const clock = o.clock ?? systemClock;
    const lanes: Array<[HookEvent, HookConfig | undefined]> = [['revoked', o.hooks.revoked], ['must_staple_expiring', o.hooks.mustStapleExpiring]];
    for (const [event, h] of lanes) {
      if (!h) continue;
      const report = (n: number) => o.log.warn({ hook: event, dropped: n, code: 'HOOK_FAILED' }, `hook runs dropped by the limit (at most ${h.maxPerMinute}/min, ${h.concurrency} at once)`);
      this.#lanes.set(event, new HookLane(h, clock, report));
    }
  }

  /** Runs dropped by the rate and concurrency limits or waiting at stop, per event (tests, status). */
  dropped(event: HookEvent): number {
    return this.#lanes.get(event)?.dropped ?? 0;
  }

  get enabled(): boolean {
    return Boolean(this.#o.hooks.revoked || this.#o.hooks.mustStapleExpiring);
  }

  /** Staple listener: a persisted staple seeds the known status; a fetched one may be a transition. */
  onStaple(record: CertRecord, staple: Staple, why: 'fetched' | 'loaded'): void {
    if (record.learned && !this.#o.learned) return;
    const wasRevoked = this.#revoked.has(record.name);
    if (staple.status.kind !== 'revoked') {
      this.#revoked.delete(record.name);
      return;
    }
    this.#revoked.add(record.name);
    if (why !== 'fetched' || wasRevoked || !this.#o.hooks.revoked) return;
    const at = staple.status.at.toISOString();
    this.#fire('revoked', this.#o.hooks.revoked, { name: record.name, serial: record.leaf.serialHex, subject: record.leaf.subject, revokedAt: at, nextUpdate: staple.nextUpdate.toISOString() });
  }

  /** A certificate was removed: forget its remembered status. */
  forget(name: string): void {
    this.#revoked.delete(name);
    this.#warned.delete(name);
  }

  start(): void {
    const h = this.#o.hooks.mustStapleExpiring;
    if (!h) return;
    const every = Math.max(1000, Math.min(60_000, (h.withinSeconds * 1000) / 4));
    const tick = () => {
      this.check();
      this.#timer = setTimeout(tick, every);
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, Math.min(every, 5000));
    this.#timer.unref();
  }

  /**
   * One pass of the must-staple expiry check (exposed for tests): a walk over the briefs, with a full view
   * built only for a certificate whose hook fires (or, in state `unknown`, to read its dedupe key).
   */
  check(): void {
    const h = this.#o.hooks.mustStapleExpiring;
    if (!h) return;
    const now = this.#o.now().getTime();
    // The warned certificates still here; the others are forgotten after the walk (learned ones come and
    // go), so the map stays bounded. Only warned names are kept, so this set is as small as the map.
    const present = new Set<string>();
    for (const b of this.#o.briefs()) {
      if (this.#warned.has(b.name)) present.add(b.name);
      // Learned certificates never reach here: they are known by CertID only, so never must-staple.
      // `not_applicable` is exactly "no OCSP URL" (stateOf).
      if (!b.mustStaple || b.state === 'not_applicable' || b.state === 'expired') continue;
      // good and revoked mean a servable staple is held, so the brief has its times.
      const servable = b.state === 'good' || b.state === 'revoked';
      if (servable && b.nextUpdateMs !== undefined && servableUntil(b.nextUpdateMs, this.#o.marginSeconds, b.thisUpdateMs) - now > h.withinSeconds * 1000) continue;
      const v = this.#expiring(b);
      if (!v) continue;
      present.add(v.name);
      this.#fire('must_staple_expiring', h, { name: v.name, serial: v.serial, subject: v.subject, state: v.state, nextUpdate: v.nextUpdate ?? '', lastError: v.lastError?.code ?? '' });
    }
    for (const n of this.#warned.keys()) if (!present.has(n)) this.#warned.delete(n);
  }

  /**
   * The view to warn with, once per staple: keyed by the view's thisUpdate. That is the held staple's, which
   * the brief has, in every state but `unknown`, where the view shows the CA's unknown answer (viewOf) and
   * each new answer warns again; only then is the view built before the key is known.
   */
  #expiring(b: CertBrief): CertificateView | undefined {
    let v: CertificateView | undefined;
    let key: string;
    if (b.state === 'unknown') {
      v = this.#o.view(b.name);
      if (!v) return undefined;
      key = v.thisUpdate ?? 'none';
    } else {
      key = b.thisUpdateMs === undefined ? 'none' : new Date(b.thisUpdateMs).toISOString();
    }
    if (this.#warned.get(b.name) === key) return undefined;
    v ??= this.#o.view(b.name);
    if (!v) return undefined;
    this.#warned.set(b.name, key);
    return v;
  }

  /**
   * Shutdown: no hook starts after this is called. Runs waiting for a slot are dropped (counted, and logged
   * in one line per hook); resolves when the runs already started have finished, each bounded by its timeout.
   */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    for (const [event, lane] of this.#lanes) {
      const waiting = lane.stop();
      if (waiting === 0) continue;
      this.#o.log.warn({ hook: event, dropped: waiting, code: 'HOOK_FAILED' }, 'hook runs dropped at stop (waiting for a slot, not started)');
      for (let i = 0; i < waiting; i++) this.#o.onResult?.(event, 'dropped');
    }
    await Promise.allSettled([...this.#inflight]);
  }

  #fire(event: HookEvent, h: HookConfig, details: Record<string, string>): void {
    const log = this.#o.log.child({ hook: event, cert: details.name });
    const run = (): Promise<void> => {
      const runs: Array<Promise<void>> = [];
      if (h.command) runs.push(runCommand(h.command, event, details, h));
      if (h.url) runs.push(postJson(h.url, { event, ...details }, h.timeoutMs));
      const p = Promise.all(runs).then(
        () => {
          log.info({ details }, 'hook ran');
          this.#o.onResult?.(event, 'ok');
        },
        (err: Error) => {
          log.error({ err: err.message, code: 'HOOK_FAILED' }, 'hook failed');
          this.#o.onResult?.(event, 'error');
        },
      );
      this.#inflight.add(p);
      void p.finally(() => this.#inflight.delete(p));
      return p;
    };
    if (this.#lanes.get(event)?.offer(run) === 'dropped') this.#o.onResult?.(event, 'dropped');
  }
}

function runCommand(command: string[], event: HookEvent, details: Record<string, string>, h: HookConfig): Promise<void> {
  const vars: Record<string, string> = { STAPLERD_EVENT: event };
  for (const [k, v] of Object.entries(details)) vars[`STAPLERD_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`] = v;
  const env = childEnv(h.env ?? [], vars);
  const [cmd, ...args] = command as [string, ...string[]];
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, timeout: h.timeoutMs, maxBuffer: 64 * 1024 }, (err, _out, stderr) => (err ? reject(new Error(`${cmd}: ${err.message} ${stderr}`.trim())) : resolve()));
  });
}

function postJson(url: string, body: unknown, timeoutMs: number): Promise<void> {
  const data = Buffer.from(JSON.stringify(body));
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'POST', timeout: timeoutMs, headers: { 'content-type': 'application/json', 'content-length': data.length, 'user-agent': 'staplerd' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode && res.statusCode < 300 ? resolve() : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}
