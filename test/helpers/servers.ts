/**
 * The server builds an end-to-end test runs against: the host's own binary (Debian 12: HAProxy 2.6,
 * nginx 1.22) and the one in a Debian 13 chroot (HAProxy 3.0, nginx 1.26) named by STAPLERD_TRIXIE_ROOT
 * (.ci/trixie.sh creates it, .ci/run sets the variable). A chrooted server shares the host's loopback, so
 * staplerd, the demo CA and openssl s_client stay on the host; only the files the server reads must live
 * inside the chroot, so each build hands out its own temp directory and translates paths into it.
 *
 * A missing build skips its suite LOUDLY, or, with STAPLERD_E2E=required, fails it in `before` (check()).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { findBinary } from './processes.js';

export type ServerName = 'haproxy' | 'nginx';

export interface ServerBuild {
  /** For test names: "2.6.12 (host)", "3.0.11 (Debian 13 chroot)". */
  readonly label: string;
  /** The version the binary reports ("3.0.11"), or '' when it is missing. */
  readonly version: string;
  /** For `describe(..., { skip })`: a message when this build is missing and tests may skip, else false. */
  readonly skip: string | false;
  /** Throws (failing the suite's `before`) when the build is missing and STAPLERD_E2E=required. */
  check(): void;
  /** The command line that runs the server with these arguments (wrapped in chroot for the chroot build). */
  command(args: string[]): { cmd: string; args: string[] };
  /** A temp directory the server can read; its `dir` is the host's path. */
  tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }>;
  /** The path the server sees for a host path inside one of this build's temp directories. */
  inside(hostPath: string): string;
}

export const TRIXIE_ENV = 'STAPLERD_TRIXIE_ROOT';

const VERSION_PATTERN: Record<ServerName, RegExp> = {
  haproxy: /^HA-?Proxy version (\d+\.\d+\.\d+)/m,
  nginx: /^nginx version: nginx\/(\d+\.\d+\.\d+)/m,
};

/** `<server> -v` (bounded); nginx prints its version on stderr, HAProxy on stdout. */
function versionOf(name: ServerName, cmd: string, args: string[]): string {
  const r = spawnSync(cmd, [...args, '-v'], { encoding: 'utf8', timeout: 10_000 });
  return VERSION_PATTERN[name].exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown version';
}

function skipOrFail(missing: string, what: string): { skip: string | false; check: () => void } {
  const required = process.env.STAPLERD_E2E === 'required';
  let skip: string | false = false;
  if (!required) {
    skip = `${missing}: ${what} SKIPPED; see .ci/run, or set STAPLERD_E2E=required to make this a failure`;
    console.warn(`\n*** ${skip} ***\n`);
  }
  return { skip, check: () => { throw new Error(`${missing} and STAPLERD_E2E=required: ${what} cannot run`); } };
}

function hostBuild(name: ServerName, what: string): ServerBuild {
  const path = findBinary(name);
  const missing = path ? undefined : skipOrFail(`${name} not installed`, `${what} (host)`);
  const version = path ? versionOf(name, path, []) : '';
  return {
    label: `${version || 'missing'} (host)`,
    version,
    skip: missing?.skip ?? false,
    check: missing?.check ?? (() => undefined),
    command: (args) => ({ cmd: path ?? name, args }),
    tempDir: async (prefix) => {
      const dir = await mkdtemp(join(tmpdir(), `staplerd-${prefix}-`));
      return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
    },
    inside: (hostPath) => hostPath,
  };
}

function chrootBuild(name: ServerName, what: string): ServerBuild {
  const root = process.env[TRIXIE_ENV];
  const binary = `/usr/sbin/${name}`;
  let problem: string | undefined;
  if (!root) problem = `${TRIXIE_ENV} is not set (no Debian 13 chroot; .ci/trixie.sh creates one)`;
  else if (!existsSync(join(root, binary))) problem = `${join(root, binary)} does not exist (${TRIXIE_ENV}=${root})`;
  else if (process.getuid?.() !== 0) problem = `chroot needs root (${TRIXIE_ENV}=${root})`;
  const chroot = findBinary('chroot') ?? '/usr/sbin/chroot';
  const missing = problem ? skipOrFail(problem, `${what} (Debian 13 chroot)`) : undefined;
  const version = problem ? '' : versionOf(name, chroot, [root!, binary]);
  const base = root ?? '/nonexistent';
  return {
    label: `${version || 'missing'} (Debian 13 chroot)`,
    version,
    skip: missing?.skip ?? false,
    check: missing?.check ?? (() => undefined),
    command: (args) => ({ cmd: chroot, args: [base, binary, ...args] }),
    tempDir: async (prefix) => {
      const dir = await mkdtemp(join(base, 'tmp', `staplerd-${prefix}-`));
      return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
    },
    inside: (hostPath) => {
      const rel = relative(base, hostPath);
      if (rel.startsWith('..') || rel.startsWith(sep)) throw new Error(`${hostPath} is outside the chroot ${base}`);
      return `/${rel}`;
    },
  };
}

/** The host's build and the Debian 13 chroot's, in that order. */
export function serverBuilds(name: ServerName, what: string): ServerBuild[] {
  return [hostBuild(name, what), chrootBuild(name, what)];
}

/** Only the Debian 13 chroot's build (for features the host's version lacks, such as HAProxy 3.0's updater). */
export function trixieBuild(name: ServerName, what: string): ServerBuild {
  return chrootBuild(name, what);
}
