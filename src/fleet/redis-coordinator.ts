import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { StaplerError } from '../errors.js';
import type { RedisStoreConfig } from '../config/schema.js';
import type { Staple } from '../service/staple.js';
import type { FetchCoordinator, Obtained, ObtainRequest } from './coordinator.js';

/** What a node writes for a certificate: the DER (never trusted by readers) and when the CA was last asked. */
interface SharedRecord {
  der: string;
  thisUpdate: number;
  nextUpdate: number;
  checkedAt: number;
  node: string;
}

export interface RedisCoordinatorOptions {
  config: RedisStoreConfig;
  password?: string | undefined;
  tlsCa?: Buffer | undefined;
  log: Logger;
  /** A node that asked the CA this recently and got nothing newer spares the others the same question. */
  minIntervalMs: number;
  /** Called when the connection comes (back): the caller resynchronises (see `sync`). */
  onConnected?: () => void;
  /** Told of every shared staple that failed verification (metrics). */
  onRejected?: (fingerprint: string) => void;
  /** Largest record read from Redis, bytes (default MAX_RECORD_BYTES); a larger one is refused unread. */
  maxRecordBytes?: number;
}

/** A 64 KiB response (fetch.maxResponseBytes' default) in base64 with its JSON fields fits in 96 KiB. */
const MAX_RECORD_BYTES = 96 * 1024;
/** Clock difference tolerated between nodes for checkedAt, ms: a later one is a lie, not skew. */
const NODE_SKEW_MS = 5000;

/** Follow-up resynchronisations after a (re)connect, ms. */
const SETTLE_RESYNC_MS = [2000, 10_000];

/** Deletes the lease only if we still hold it: a lease that expired and was taken by another node stays. */
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/**
 * Fleet mode on Redis (or Valkey): one CA fetch per certificate per window across all nodes.
 * - A staple another node fetched is used when it is newer than ours, after verifying it here.
 * - Otherwise a lease (SET NX PX with a random token, released only by its holder through a compare-and-delete
 *   script) picks one node to ask the CA; the others wait for its publication, or for the lease to lapse
 *   if it died, and then try themselves.
 * - New staples are announced on a channel; every node adopts them (verified) and runs its sinks.
 * - Redis unreachable: every node fetches on its own, as without fleet mode; nothing is lost, and the
 *   stores are resynchronised when Redis is back.
 */
export class RedisCoordinator implements FetchCoordinator {
  readonly #o: RedisCoordinatorOptions;
  readonly #cmd: Redis;
  readonly #sub: Redis;
  readonly #node = randomBytes(6).toString('hex');
  readonly #listeners: Array<(fp: string) => void> = [];
  readonly #waiters = new Map<string, Set<() => void>>();
  #connected = false;
  #closed = false;
  readonly #settle: NodeJS.Timeout[] = [];

  constructor(o: RedisCoordinatorOptions) {
    if (!(o.config.leaseMs > 0)) throw new RangeError('RedisCoordinator: lease must be > 0');
    if (o.maxRecordBytes !== undefined && !(Number.isInteger(o.maxRecordBytes) && o.maxRecordBytes > 0)) throw new RangeError('RedisCoordinator: maxRecordBytes must be a positive integer');
    this.#o = o;
    const c = o.config;
    const opts: RedisOptions = {
      lazyConnect: true,
      // Fail fast while disconnected (the caller falls back to fetching itself) instead of queueing.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: c.commandTimeoutMs,
      connectTimeout: Math.max(1000, c.commandTimeoutMs),
      retryStrategy: (times) => Math.min(200 * times, 5000),
      ...(c.username && { username: c.username }),
      ...(o.password && { password: o.password }),
      ...((c.tls || c.url.startsWith('rediss:')) && { tls: { rejectUnauthorized: c.tls?.rejectUnauthorized ?? true, ...(o.tlsCa && { ca: o.tlsCa }), ...(c.tls?.serverName && { servername: c.tls.serverName }) } }),
    };
    this.#cmd = new Redis(c.url, opts);
    // The subscriber re-subscribes itself (below), so ioredis' own resubscription is off.
    this.#sub = new Redis(c.url, { ...opts, commandTimeout: undefined, autoResubscribe: false });
    this.#cmd.on('ready', () => this.#up());
    this.#cmd.on('close', () => this.#down('connection closed'));
    this.#cmd.on('error', (e: Error) => this.#down(e.message));
    this.#sub.on('error', () => undefined); // reported through #cmd; the subscriber reconnects on its own
    this.#sub.on('message', (_ch: string, msg: string) => this.#message(msg));
  }

  /** Connects in the background: start-up never waits for Redis. */
  start(): void {
    void this.#cmd.connect().catch(() => undefined);
    // (Re)subscribe on every connect, then resynchronise: publications made while the subscriber was
    // away are not replayed by Redis.
    this.#sub.on('ready', () => {
      void this.#sub.subscribe(this.#channel).then(
        () => this.#connected && this.#o.onConnected?.(),
        () => undefined,
      );
    });
    void this.#sub.connect().catch(() => undefined);
  }

  /** Resolves once connected, or after `ms` regardless: the first fetches should share, but never wait long. */
  async ready(ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!this.#connected && !this.#closed && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
  }

  status(): { kind: 'redis'; connected: boolean } {
    return { kind: 'redis', connected: this.#connected };
  }

  onShared(listener: (fingerprint: string) => void): void {
    this.#listeners.push(listener);
  }

  async shared(fp: string): Promise<Uint8Array | undefined> {
    const rec = await this.#read(fp);
    return rec && new Uint8Array(Buffer.from(rec.der, 'base64'));
  }

  async obtain(r: ObtainRequest): Promise<Obtained> {
    if (!this.#connected) return { ...(await r.direct()), source: 'fetched' };
    for (let attempt = 0; attempt < 3; attempt++) {
      const plan = await this.#plan(r).catch((e: Error) => {
        this.#o.log.debug({ cert: r.name, err: e.message }, 'shared store unavailable for this fetch; fetching directly');
        return { kind: 'direct' as const };
      });
      if (plan.kind === 'use') return plan.obtained;
      if (plan.kind === 'direct') return { ...(await r.direct()), source: 'fetched' };
      if (plan.kind === 'lease') {
        try {
          // The previous holder may have shared its staple and let go between our read and our SET NX.
          const meanwhile = await this.#usableShared(r).catch(() => undefined);
          if (meanwhile) return meanwhile;
          const got = await r.direct();
          // An `unknown` is not shared: it is not a staple, and it would displace a good one in Redis.
          if (got.staple.status.kind === 'unknown') return { ...got, source: 'fetched' };
          const wrote = await this.#publish(r.fingerprint, got.staple).catch((e: Error) => {
            this.#o.log.warn({ cert: r.name, err: e.message }, 'could not share a fetched staple');
            return true;
          });
          // Another node's response for the same window is already shared: serve that one, so that every
          // node serves the same bytes (two fetches in one second differ only in their signatures).
          if (!wrote) return (await this.#usableShared(r).catch(() => undefined)) ?? { ...got, source: 'fetched' };
          return { ...got, source: 'fetched' };
        } finally {
          await this.#cmd.eval(RELEASE, 1, this.#key('lease', r.fingerprint), plan.token).catch(() => undefined);
        }
      }
      // Another node holds the lease: wait for what it publishes, or for the lease to go.
      const waited = await this.#awaitOther(r).catch(() => undefined);
      if (waited) return waited;
    }
    return { ...(await r.direct()), source: 'fetched' };
  }

  /** Publishes every staple that is newer than the shared one (after Redis came back). */
  async sync(staples: Array<{ fingerprint: string; staple: Staple }>): Promise<number> {
    let pushed = 0;
    for (const s of staples) if (await this.#publish(s.fingerprint, s.staple, false)) pushed++;
    return pushed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#settle) clearTimeout(t);
    for (const set of this.#waiters.values()) for (const w of set) w();
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  get #channel(): string {
    return `${this.#o.config.keyPrefix}staples`;
  }

  #key(kind: 'staple' | 'lease', fp: string): string {
    return `${this.#o.config.keyPrefix}${kind}:${fp}`;
  }

  /** Use a shared staple, take the lease, or wait for the node that has it. */
  async #plan(r: ObtainRequest): Promise<{ kind: 'use'; obtained: Obtained } | { kind: 'lease'; token: string } | { kind: 'wait' } | { kind: 'direct' }> {
    const usable = await this.#usableShared(r);
    if (usable) return { kind: 'use', obtained: usable };
    const token = randomBytes(12).toString('hex');
    const ok = await this.#cmd.set(this.#key('lease', r.fingerprint), token, 'PX', this.#o.config.leaseMs, 'NX');
    return ok === 'OK' ? { kind: 'lease', token } : { kind: 'wait' };
  }

  async #usableShared(r: ObtainRequest): Promise<Obtained | undefined> {
    const rec = await this.#read(r.fingerprint);
    if (!rec) return undefined;
    let staple: Staple;
    try {
      staple = await r.verify(new Uint8Array(Buffer.from(rec.der, 'base64')));
    } catch (e) {
      this.#o.log.warn({ cert: r.name, code: e instanceof StaplerError ? e.code : 'OCSP_MALFORMED' }, 'shared staple failed verification: ignored');
      this.#o.onRejected?.(r.fingerprint);
      return undefined;
    }
    if (staple.status.kind === 'unknown') return undefined; // not a staple (issue 13 item 2): ask the CA
    const held = r.held?.thisUpdateMs ?? -Infinity;
    if (staple.thisUpdateMs > held) return { staple, maxAge: undefined, source: 'shared' };
    // Same response as ours, and another node asked the CA just now: asking again would get the same.
    // checkedAt is unsigned: it counts only between the verified thisUpdate and now (see checkedAtOf).
    if (staple.thisUpdateMs === held && Date.now() - checkedAtOf(rec, staple.thisUpdateMs, Date.now()) < this.#o.minIntervalMs) return { staple: r.held ?? staple, maxAge: undefined, source: 'shared' };
    return undefined;
  }

  async #awaitOther(r: ObtainRequest): Promise<Obtained | undefined> {
    const deadline = Date.now() + this.#o.config.leaseMs + 1000;
    while (!this.#closed && Date.now() < deadline) {
      await this.#wake(r.fingerprint, 500);
      const usable = await this.#usableShared(r);
      if (usable) return usable;
      if ((await this.#cmd.exists(this.#key('lease', r.fingerprint))) === 0) return undefined; // holder gave up or died
    }
    return undefined;
  }

  #wake(fp: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.#waiters.get(fp) ?? new Set();
      this.#waiters.set(fp, set);
      const done = () => {
        clearTimeout(t);
        set.delete(done);
        if (set.size === 0) this.#waiters.delete(fp);
        resolve();
      };
      const t = setTimeout(done, ms);
      set.add(done);
    });
  }

  /**
   * The record for a fingerprint, read with one bounded command (GETRANGE up to the limit + 1 byte: a
   * 50 MB record is never pulled into memory) and checked field by field. A record that is too large or
   * not a record is refused with a code and ignored like a staple that fails verification.
   */
  async #read(fp: string): Promise<SharedRecord | undefined> {
    const max = this.#o.maxRecordBytes ?? MAX_RECORD_BYTES;
    const raw = await this.#cmd.getrangeBuffer(this.#key('staple', fp), 0, max);
    if (raw.length === 0) return undefined;
    const code = raw.length > max ? 'FLEET_RECORD_TOO_LARGE' : undefined;
    const rec = code ? undefined : parseRecord(raw);
    if (!rec) {
      this.#o.log.warn({ fingerprint: fp, code: code ?? 'FLEET_RECORD_INVALID', maxBytes: max }, 'shared store record refused: ignored');
      this.#o.onRejected?.(fp);
    }
    return rec;
  }

  /** Writes our staple unless the shared one is newer; the TTL ends at nextUpdate. Returns whether it wrote. */
  async #publish(fp: string, s: Staple, checked = true): Promise<boolean> {
    const existing = await this.#read(fp);
    // Never replace a newer shared staple, nor one for the same window (the fleet keeps one set of bytes).
    // The claimed thisUpdate is unsigned: one later than now is a lie and does not hold our staple back.
    const claimed = existing && existing.thisUpdate <= Date.now() + NODE_SKEW_MS ? existing.thisUpdate : -Infinity;
    if (claimed >= s.thisUpdate.getTime()) return false;
    const ttl = s.nextUpdate.getTime() - Date.now();
    if (ttl <= 1000) return false;
    const rec: SharedRecord = { der: s.body.toString('base64'), thisUpdate: s.thisUpdate.getTime(), nextUpdate: s.nextUpdate.getTime(), checkedAt: checked ? Date.now() : existing ? checkedAtOf(existing, s.thisUpdateMs, Date.now()) : 0, node: this.#node };
    await this.#cmd.set(this.#key('staple', fp), JSON.stringify(rec), 'PX', ttl);
    await this.#cmd.publish(this.#channel, `${this.#node} ${fp}`);
    return true;
  }

  #message(msg: string): void {
    const [node, fp] = msg.split(' ');
    if (!fp) return;
    for (const w of [...(this.#waiters.get(fp) ?? [])]) w();
    if (node === this.#node) return;
    for (const l of this.#listeners) l(fp);
  }

  #up(): void {
    if (this.#connected) return;
    this.#connected = true;
    this.#o.log.info({ url: redact(this.#o.config.url) }, 'shared store (Redis) connected');
    this.#o.onConnected?.();
    // Other nodes come back at their own pace and republish then; what they announce before our
    // subscriber is back is not replayed. Resynchronising again a little later settles that race.
    for (const ms of SETTLE_RESYNC_MS) {
      const t = setTimeout(() => this.#connected && !this.#closed && this.#o.onConnected?.(), ms);
      t.unref();
      this.#settle.push(t);
    }
  }

  #down(why: string): void {
    if (!this.#connected || this.#closed) return;
    this.#connected = false;
    this.#o.log.warn({ url: redact(this.#o.config.url), err: why }, 'shared store (Redis) unreachable: fetching locally until it is back');
  }
}

/** A record as JSON with the types it must have; anything else is not a record. */
function parseRecord(raw: Buffer): SharedRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  if (typeof r.der !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(r.der)) return undefined;
  if (!num(r.thisUpdate) || !num(r.nextUpdate) || !num(r.checkedAt)) return undefined;
  return { der: r.der, thisUpdate: r.thisUpdate as number, nextUpdate: r.nextUpdate as number, checkedAt: r.checkedAt as number, node: typeof r.node === 'string' ? r.node.slice(0, 32) : '' };
}

/**
 * When the CA was last asked, as far as a record can say: never before the verified response's thisUpdate
 * (the answer cannot predate itself) and never after now. A checkedAt in the future is a lie, not skew:
 * it counts as thisUpdate, so a record set to the far future cannot stop every node's refreshes (issue 12
 * item 5: 0 upstream fetches after admin refreshes).
 */
export function checkedAtOf(rec: Pick<SharedRecord, 'checkedAt'>, verifiedThisUpdateMs: number, nowMs: number): number {
  if (rec.checkedAt > nowMs + NODE_SKEW_MS) return verifiedThisUpdateMs;
  return Math.max(verifiedThisUpdateMs, Math.min(rec.checkedAt, nowMs));
}

/** The URL without its password, for logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
