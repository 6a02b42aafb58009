#!/usr/bin/env node
// File I/O (staple writes and reads at start-up) runs on libuv's thread pool, 4 threads by default; set
// before anything uses the pool. An operator's own setting wins.
process.env.UV_THREADPOOL_SIZE ??= '16';
import { parseArgs } from 'node:util';
import { seconds } from './config/load.js';
import { main, type Command } from './main.js';

export const USAGE = `staplerd — caching OCSP stapling daemon

Usage:
  staplerd serve [-c FILE]                      run the daemon (default config: ./config/staplerd.yaml)
  staplerd check CHAIN.pem [--issuer FILE] [--url URL] [--timeout 10s] [--out FILE]
                                                fetch, verify and print one certificate's OCSP status
                                                (exit 0 good, 1 revoked or unknown, 2 error); --out
                                                writes a good or revoked response to FILE atomically
                                                and leaves FILE untouched otherwise
  staplerd config validate -c FILE              check a config file and its certificates, then exit
  staplerd bootstrap [-c FILE]                  create missing staple files (empty) for file sinks with
                                                createEmpty, then exit: run it before HAProxy 2.6 starts
  staplerd status [--url http://127.0.0.1:8080] [--all] [--state failing,revoked] [--prefix NAME]
                                                the certificate table of a running daemon, first 100 by
                                                name or --all (exit 1 if any certificate is failing,
                                                revoked or pending, 2 if unreachable)
  staplerd demo [--port 8080] [--dir DIR] [--once]
                                                throwaway CA + OCSP responder + staplerd, for a first look
  staplerd demo-ca [--dir DIR] [--host 127.0.0.1] [--port 8889] [--url http://ca:8889/]
                                                the demo CA alone, as a service (docker-compose.yml)
  staplerd --help | --version
`;

/** Turns argv into a Command; throws a usage error (exit 2) on anything it does not understand. */
export function parseCommand(argv: string[]): Command {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      issuer: { type: 'string' },
      url: { type: 'string' },
      timeout: { type: 'string' },
      out: { type: 'string', short: 'o' },
      port: { type: 'string' },
      dir: { type: 'string' },
      host: { type: 'string' },
      once: { type: 'boolean' },
      all: { type: 'boolean' },
      state: { type: 'string' },
      prefix: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  });
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const [cmd, ...rest] = positionals;
  const config = values.config ?? 'config/staplerd.yaml';
  switch (cmd) {
    case 'serve':
      return { kind: 'serve', config };
    case 'check':
      if (rest.length !== 1) throw new UsageError('check takes exactly one CHAIN.pem');
      return { kind: 'check', chain: rest[0]!, issuer: values.issuer, url: values.url, timeoutMs: durationArg('--timeout', values.timeout ?? '10s') * 1000, out: values.out };
    case 'bootstrap':
      return { kind: 'bootstrap', config };
    case 'status':
      return { kind: 'status', url: values.url ?? process.env.STAPLERD_URL ?? 'http://127.0.0.1:8080', all: values.all === true, state: values.state, prefix: values.prefix };
    case 'config':
      if (rest[0] !== 'validate') throw new UsageError('did you mean `staplerd config validate -c FILE`?');
      return { kind: 'validate', config };
    case 'demo-ca':
      return {
        kind: 'demo-ca',
        dir: values.dir ?? 'demo-ca',
        host: values.host ?? '127.0.0.1',
        port: portArg(values.port ?? '8889'),
        ocspUrl: values.url ?? `http://127.0.0.1:${values.port ?? '8889'}/`,
      };
    case 'demo':
      return { kind: 'demo', port: portArg(values.port ?? '8080'), dir: values.dir, once: values.once === true };
    case undefined:
      return { kind: 'help' };
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

export class UsageError extends Error {}

function durationArg(flag: string, v: string): number {
  try {
    return seconds(v);
  } catch {
    throw new UsageError(`${flag}: "${v}" is not a duration like 10s, 2m or 500ms`);
  }
}

function portArg(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new UsageError(`--port: "${v}" is not a port number (0-65535)`);
  return n;
}

function isEntry(): boolean {
  // Run as the bin (node dist/src/cli.js, npx staplerd, a symlink in node_modules/.bin).
  return process.argv[1] !== undefined && /cli\.js$|staplerd$/.test(process.argv[1]);
}

if (isEntry()) {
  let cmd: Command;
  try {
    cmd = parseCommand(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`staplerd: ${(e as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    cmd = { kind: 'none' };
  }
  void main(cmd, USAGE);
}
