import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { readFile } from 'node:fs/promises';
import { StaplerError } from './errors.js';
import { LocalCoordinator, type FetchCoordinator } from './fleet/coordinator.js';
import type { RedisCoordinator } from './fleet/redis-coordinator.js';
import { resyncWithFleet } from './fleet/resync.js';
import { proxyOptionsOf } from './fetch/dispatcher.js';
import { HttpResponderClient } from './fetch/responder-client.js';
import { buildApp } from './http/app.js';
import { Metrics } from './http/metrics.js';
import { Learner, loadTrustedIssuers } from './service/learner.js';
import { Stapler } from './service/stapler.js';
import { FileSink } from './sinks/file-sink.js';
import { HaproxySink } from './sinks/haproxy-sink.js';
import { HookRunner } from './sinks/hooks.js';
import { SinkRunner } from './sinks/runner.js';
import type { StapleSink } from './sinks/sink.js';
import type { CertRecord } from './sources/certificates.js';
import { loadAllRecords } from './sources/load-all.js';
import { watchDirectories } from './sources/watch.js';
import { DiskStapleStore } from './store/disk-store.js';
import { systemClock, type Clock } from './util/clock.js';
import { MemorySettler } from './util/memory.js';

export interface Daemon {
  readonly app: FastifyInstance;
  readonly stapler: Stapler;
  readonly sinks: SinkRunner;
  readonly hooks: HookRunner;
  readonly learner: Learner | undefined;
  /** http://host:port of the listening socket. */
  readonly url: string;
  /** Re-reads certificates (directories, or a whole new config's certificate list). */
  rescan(next?: Config): Promise<void>;
  stop(): Promise<void>;
}

export interface DaemonOptions {
  log: Logger;
  /** Shown on the status page. */
  version?: string;
  clock?: Clock;
  /** Where http_proxy / https_proxy / no_proxy are read when fetch.proxy is unset; default process.env. */
  env?: NodeJS.ProcessEnv;
}

/**
 * HAProxy 2.6 staples a certificate only if its `.ocsp` file exists at load: create the missing ones
 * (empty) for every file sink with `createEmpty`. Returns the paths created.
 */
export async function bootstrapStapleFiles(sinks: FileSink[], records: CertRecord[], log: Logger): Promise<string[]> {
  const made: string[] = [];
  for (const sink of sinks) made.push(...(await sink.createMissing(records)));
  if (made.length) log.info({ files: made }, 'created empty staple files');
  return made;
}

/** The configured file sinks (used by the daemon and by `staplerd bootstrap`). */
export function fileSinksOf(cfg: Pick<Config, 'sinks'>, log: Logger): FileSink[] {
  return cfg.sinks.files.map((c) => new FileSink(c, log));
}

/** Local by default; on Redis in fleet mode (connects in the background: start-up never waits for it). */
async function makeCoordinator(cfg: Config, log: Logger, o: { onConnected: () => void }): Promise<FetchCoordinator> {
  if (cfg.store.kind !== 'redis') return new LocalCoordinator();
  const r = cfg.store.redis;
  const read = async (p: string, what: string) => {
    try {
      return await readFile(p);
    } catch (e) {
      throw new StaplerError('CONFIG_FILE', `${cfg.source}: store.redis.${what}: ${(e as Error).message}`, { cause: e });
    }
  };
  const password = process.env.STAPLERD_REDIS_PASSWORD || (r.passwordFile ? (await read(r.passwordFile, 'passwordFile')).toString('utf8').trim() : undefined);
  // Loaded only in fleet mode: the Redis client is a sizeable module a single node never needs.
  const { RedisCoordinator } = await import('./fleet/redis-coordinator.js');
  const coordinator = new RedisCoordinator({
    config: r,
    password,
    tlsCa: r.tls?.ca ? await read(r.tls.ca, 'tls.ca') : undefined,
    log,
    minIntervalMs: cfg.refresh.minIntervalSeconds * 1000,
    onConnected: o.onConnected,
  });
  coordinator.start();
  // Give Redis a moment before the first fetches, so that a fleet starting together shares from the start.
  await coordinator.ready(Math.min(2000, r.commandTimeoutMs));
  return coordinator;
}

/** Wires config to components and starts listening. Persisted staples are served before any fetch. */
export async function startDaemon(cfg: Config, o: DaemonOptions): Promise<Daemon> {
  let current = cfg;
  const log = o.log;
  const clock = o.clock ?? systemClock;
  const store = new DiskStapleStore(cfg.dataDir);
  await store.open();
  const egress = await proxyOptionsOf(cfg.fetch, o.env ?? process.env, cfg.source);
  if (egress.describe) log.info({ proxy: egress.describe }, 'upstream fetches go through an HTTP proxy');
  const client = new HttpResponderClient({
    timeoutMs: cfg.fetch.timeoutMs,
    maxResponseBytes: cfg.fetch.maxResponseBytes,
    perHostConcurrency: cfg.fetch.perHostConcurrency,
    userAgent: cfg.fetch.userAgent,
    proxy: egress.proxy,
  });
  // Redis may connect before the Stapler exists (makeCoordinator waits a moment for it): until then a
  // resynchronisation has nothing to do.
  let resyncShared: () => Promise<void> = async () => undefined;
  const coordinator = await makeCoordinator(cfg, log, {
    onConnected: () => void resyncShared(),
  });
  const stapler = new Stapler({
    clock,
    coordinator,
    client,
    store,
    log,
    refresh: cfg.refresh,
    concurrency: cfg.fetch.concurrency,
    nonce: cfg.fetch.nonce,
    onFetch: (url, result, seconds) => metrics.fetched(url, result, seconds),
  });
  const metrics = new Metrics(stapler, { marginSeconds: cfg.refresh.marginSeconds, ...cfg.metrics });
  coordinator.onShared((fp) => void stapler.adoptShared(fp));
  // When Redis comes (back): share what we fetched meanwhile, take what others did.
  if (cfg.store.kind === 'redis') resyncShared = () => resyncWithFleet(coordinator as RedisCoordinator, stapler, log);
  const fileSinks = fileSinksOf(cfg, log);
  const sinkList: StapleSink[] = [...fileSinks, ...cfg.sinks.haproxy.map((c) => new HaproxySink(c, log, clock))];
  const sinks = new SinkRunner({
    sinks: sinkList,
    log,
    retryInitialMs: cfg.sinks.retryInitialMs,
    retryMaxMs: cfg.sinks.retryMaxMs,
    current: () => stapler.current(),
    learned: cfg.learning.sinks,
    onResult: (sink, result) => metrics.sinkPushed(sink, result),
  });
  const hooks = new HookRunner({
    hooks: cfg.hooks,
    log,
    briefs: () => stapler.briefs(),
    view: (name) => stapler.get(name),
    marginSeconds: cfg.refresh.marginSeconds,
    now: () => clock.now(),
    clock,
    learned: cfg.learning.hooks,
    onResult: (event, result) => metrics.hookRan(event, result),
  });
  // Subscribed before start, so staples loaded from disk reach the sinks at once (issue 3: "and at start").
  stapler.onStaple((r, s) => sinks.offer(r, s));
  stapler.onStaple((r, s, why) => hooks.onStaple(r, s, why));
  stapler.onRemoved((r, next) => {
    void sinks.forget(r, next);
    hooks.forget(r.name);
  });

  const trusted = await loadTrustedIssuers(cfg.learning, cfg.source);
  const learner = trusted.length
    ? new Learner({
        stapler,
        issuers: trusted,
        maxEntries: cfg.learning.maxEntries,
        idleTimeoutSeconds: cfg.learning.idleTimeoutSeconds,
        maxNewPerMinute: cfg.learning.maxNewPerMinute,
        newBurst: cfg.learning.newBurst,
        failureTtlSeconds: cfg.learning.failureTtlSeconds,
        clock,
        log,
      })
    : undefined;
  const records = await loadAllRecords(cfg, log);
  await bootstrapStapleFiles(fileSinks, records, log);
  await stapler.setRecords(records);
  sinks.start();
  await stapler.start();
  hooks.start();
  learner?.start();
  const app = buildApp({ stapler, learner, metrics, version: o.version ?? '', log, config: cfg });
  await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.listen.port;
  const host = cfg.listen.host.includes(':') ? `[${cfg.listen.host}]` : cfg.listen.host;
  log.info({ url: `http://${host}:${port}`, certificates: records.length, sinks: sinkList.map((s) => s.name), learningIssuers: trusted.length, ocspPath: cfg.ocsp.pathPrefix }, 'staplerd listening');

  // Gives back what a busy spell grew (the start-up fetches first of all) once the daemon goes quiet.
  const settler = new MemorySettler({
    clock,
    onRelease: (before, after) => log.debug({ newSpaceMB: [before.size, after.size].map((b) => Math.round(b / 1048576)) }, 'released memory while quiet'),
  });
  settler.start();

  let scanning = Promise.resolve();
  let unwatch = (): void => undefined;
  const watch = (c: Config) => {
    unwatch();
    unwatch = watchDirectories(c.directories.map((d) => d.path), 500, () => {
      rescan().catch((err) => log.warn({ err: String(err) }, 'rescan failed; keeping the current certificates'));
    }, log);
  };
  const rescan = (next?: Config): Promise<void> => {
    scanning = scanning.then(async () => {
      const c = next ?? current;
      const found = await loadAllRecords(c, log, stapler.records());
      await bootstrapStapleFiles(fileSinks, found, log);
      await stapler.setRecords(found);
      if (next) watch(next);
      current = c;
      log.info({ certificates: found.length }, 'certificates rescanned');
    });
    return scanning;
  };
  watch(cfg);

  return {
    app,
    stapler,
    sinks,
    hooks,
    learner,
    url: `http://${host}:${port}`,
    rescan,
    async stop() {
      unwatch();
      settler.stop();
      learner?.stop();
      // Together: stopping the Stapler aborts upstream fetches, which an in-flight HTTP request (a refresh,
      // an OCSP request waiting on a first fetch) may be waiting for while app.close() waits for it. A
      // keep-alive connection whose request finishes during close stays open until the client lets go,
      // so idle ones are closed as they appear.
      const reap = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await Promise.all([app.close(), stapler.stop()]);
      } finally {
        clearInterval(reap);
      }
      await sinks.stop();
      await hooks.stop();
    },
  };
}
