import { readFileSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { runCheck } from './check.js';
import { runStatus } from './status.js';
import { loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import { bootstrapStapleFiles, fileSinksOf, startDaemon } from './daemon.js';
import { isStaplerError } from './errors.js';
import { loadAllRecords } from './sources/load-all.js';

export type Command =
  | { kind: 'serve'; config: string }
  | { kind: 'check'; chain: string; issuer: string | undefined; url: string | undefined; timeoutMs: number; out: string | undefined }
  | { kind: 'bootstrap'; config: string }
  | { kind: 'status'; url: string; all: boolean; state: string | undefined; prefix: string | undefined }
  | { kind: 'demo-ca'; dir: string; host: string; port: number; ocspUrl: string }
  | { kind: 'validate'; config: string }
  | { kind: 'demo'; port: number; dir: string | undefined; once: boolean }
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'none' };

/** Graceful stop must finish within this, or we exit non-zero rather than hang a supervisor. */
const STOP_BOUND_MS = 15_000;

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * pino JSON to stdout; human-readable (pino-pretty) when stdout is a terminal. STAPLERD_LOG_FORMAT=json or
 * pretty overrides. Secrets are redacted from every line.
 */
export function createLogger(level: Config['logLevel'], env: NodeJS.ProcessEnv = process.env): Logger {
  const pretty = env.STAPLERD_LOG_FORMAT ? env.STAPLERD_LOG_FORMAT === 'pretty' : process.stdout.isTTY === true;
  return pino({
    level,
    base: { name: 'staplerd' },
    redact: { paths: ['adminToken', '*.adminToken', 'req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
    ...(pretty && { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:standard', ignore: 'pid,hostname,name' } } }),
  });
}

/** The composition root: runs a command and is the only place that ends the process. */
export async function main(cmd: Command, usage: string): Promise<void> {
  // `staplerd check ... | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  const say = (s: string): void => void process.stdout.write(`${s}\n`);
  const complain = (s: string): void => void process.stderr.write(`${s}\n`);
  try {
    switch (cmd.kind) {
      case 'none':
        return;
      case 'help':
        process.stdout.write(usage);
        return;
      case 'version':
        return say(version());
      case 'check':
        process.exitCode = await runCheck({ chain: cmd.chain, issuer: cmd.issuer, url: cmd.url, timeoutMs: cmd.timeoutMs, out: cmd.out }, say, complain);
        return;
      case 'status':
        process.exitCode = await runStatus(cmd.url, say, complain, { all: cmd.all, state: cmd.state, prefix: cmd.prefix });
        return;
      case 'bootstrap': {
        const cfg = loadConfigFile(cmd.config);
        const log = createLogger('warn');
        const made = await bootstrapStapleFiles(fileSinksOf(cfg, log), await loadAllRecords(cfg, log), log);
        say(`${made.length} staple file(s) created${made.length ? `:\n  ${made.join('\n  ')}` : ''}`);
        return;
      }
      case 'validate': {
        const cfg = loadConfigFile(cmd.config);
        const records = await loadAllRecords(cfg, createLogger('warn'));
        say(`${cfg.source}: OK (${records.length} certificates, ${records.filter((r) => !r.url).length} without an OCSP URL)`);
        return;
      }
      case 'serve':
        return await serve(cmd.config);
      case 'demo-ca': {
        const { runDemoCa } = await import('./demo/ca-service.js');
        return await runDemoCa({ dir: cmd.dir, host: cmd.host, port: cmd.port, ocspUrl: cmd.ocspUrl, say });
      }
      case 'demo': {
        const { runDemo } = await import('./demo/run.js');
        return await runDemo({ port: cmd.port, dir: cmd.dir, say, once: cmd.once });
      }
    }
  } catch (e) {
    complain(`staplerd: ${isStaplerError(e) ? `${e.code}: ` : ''}${e instanceof Error ? e.message : String(e)}`);
    // Bad configuration and bad inputs exit 2 (the operator must fix something); anything else 1.
    process.exit(isStaplerError(e) && /^(CONFIG|CERT|ISSUER)/.test(e.code) ? 2 : 1);
  }
}

async function serve(configPath: string): Promise<void> {
  const cfg = loadConfigFile(configPath);
  const log = createLogger(cfg.logLevel);
  // Until the daemon is up: a reload request has nothing to reload yet (and SIGHUP's default would kill
  // us), and a stop request stops at once.
  const early = (signal: string) => () => {
    if (signal === 'SIGHUP') return log.info('SIGHUP during start-up ignored');
    log.info({ signal }, 'stopping during start-up');
    process.exit(0);
  };
  const earlyHandlers = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((s) => [s, early(s)] as const);
  for (const [s, h] of earlyHandlers) process.on(s, h);
  const daemon = await startDaemon(cfg, { log, version: version() });
  for (const [s, h] of earlyHandlers) process.off(s, h);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: finishing in-flight work');
    const bound = setTimeout(() => {
      log.error('stop took too long; exiting');
      process.exit(1);
    }, STOP_BOUND_MS);
    daemon.stop().then(
      () => {
        clearTimeout(bound);
        log.info('stopped');
        process.exit(0);
      },
      (err) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    // Reload: a bad new config is rejected and the running one stays.
    let next: Config;
    try {
      next = loadConfigFile(configPath);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'SIGHUP: new config rejected; keeping the running one');
      return;
    }
    daemon.rescan(next).then(
      () => log.info('SIGHUP: certificates reloaded (listen, dataDir and policy changes need a restart)'),
      (err) => log.error({ err: (err as Error).message }, 'SIGHUP: reload failed; keeping the running certificates'),
    );
  });
}
