import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { HttpResponderClient } from './fetch/responder-client.js';
import { buildApp } from './http/app.js';
import { Stapler } from './service/stapler.js';
import { loadAllRecords } from './sources/load-all.js';
import { watchDirectories } from './sources/watch.js';
import { DiskStapleStore } from './store/disk-store.js';
import { systemClock, type Clock } from './util/clock.js';

export interface Daemon {
  readonly app: FastifyInstance;
  readonly stapler: Stapler;
  /** http://host:port of the listening socket. */
  readonly url: string;
  /** Re-reads certificates (directories, or a whole new config's certificate list). */
  rescan(next?: Config): Promise<void>;
  stop(): Promise<void>;
}

export interface DaemonOptions {
  log: Logger;
  clock?: Clock;
}

/** Wires config to components and starts listening. Persisted staples are served before any fetch. */
export async function startDaemon(cfg: Config, o: DaemonOptions): Promise<Daemon> {
  let current = cfg;
  const log = o.log;
  const store = new DiskStapleStore(cfg.dataDir);
  await store.open();
  const client = new HttpResponderClient({
    timeoutMs: cfg.fetch.timeoutMs,
    maxResponseBytes: cfg.fetch.maxResponseBytes,
    perHostConcurrency: cfg.fetch.perHostConcurrency,
    userAgent: cfg.fetch.userAgent,
  });
  const stapler = new Stapler({
    clock: o.clock ?? systemClock,
    client,
    store,
    log,
    refresh: cfg.refresh,
    concurrency: cfg.fetch.concurrency,
    nonce: cfg.fetch.nonce,
  });
  await stapler.setRecords(await loadAllRecords(cfg, log));
  await stapler.start();
  const app = buildApp({ stapler, log, config: cfg });
  await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.listen.port;
  const host = cfg.listen.host.includes(':') ? `[${cfg.listen.host}]` : cfg.listen.host;
  log.info({ url: `http://${host}:${port}`, certificates: stapler.list().length, ocspPath: cfg.ocsp.pathPrefix }, 'staplerd listening');

  let scanning = Promise.resolve();
  const rescan = (next?: Config): Promise<void> => {
    scanning = scanning.then(async () => {
      const c = next ?? current;
      const records = await loadAllRecords(c, log);
      await stapler.setRecords(records);
      current = c;
      log.info({ certificates: records.length }, 'certificates rescanned');
    });
    return scanning;
  };
  const unwatch = watchDirectories(cfg.directories.map((d) => d.path), 500, () => {
    rescan().catch((err) => log.warn({ err: String(err) }, 'rescan failed; keeping the current certificates'));
  }, log);

  return {
    app,
    stapler,
    url: `http://${host}:${port}`,
    rescan,
    async stop() {
      unwatch();
      await app.close();
      await stapler.stop();
    },
  };
}
