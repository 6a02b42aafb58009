/**
 * Running a container image without a container runtime (none starts on these machines: crun and runc fail
 * setting rlimits). What a runtime would do, done with the pieces that work, as root:
 * - the root filesystem: `podman create` + `podman mount` (the image's layers plus a writable layer), or an
 *   overlay over a debootstrap chroot (the Debian 13 one, standing in for the nginx and HAProxy images);
 * - the network: one private network namespace (`ip netns`) with only loopback, so ports never collide with
 *   anything else on the machine and every process in it sees the others on 127.0.0.1;
 * - per process: `ip netns exec` (which also gives a private mount namespace), then proc, a minimal /dev and
 *   the volume/bind mounts inside the root, then `chroot --userspec=USER` and `env -i -C WORKDIR` with the
 *   image's environment. Each step execs the next, so the pid the test holds is the image's process itself
 *   and SIGTERM reaches it as `docker stop` would.
 * What the image says (ENTRYPOINT, CMD, USER, Env, WorkingDir, HEALTHCHECK) is read from `podman image
 * inspect`, never written here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Child, findBinary, run, waitFor, type RunResult } from '../helpers/processes.js';

/** The image CI builds (.ci/image.sh prints it; .ci/run exports it). */
export const IMAGE = process.env.STAPLERD_IMAGE || 'localhost/staplerd:ci';
/** The Debian 13 chroot (.ci/trixie.sh) whose nginx and HAProxy stand in for the compose file's images. */
export const TRIXIE = process.env.STAPLERD_TRIXIE_ROOT || '/var/cache/staplerd-ci/trixie';

const TOOLS = ['podman', 'ip', 'chroot', 'mount', 'umount', 'openssl'];

export interface ImageSuite {
  /** For `describe(..., { skip })`: why the suite cannot run, when it may skip; else false. */
  skip: string | false;
  /** Throws (failing `before`) naming what is missing; with STAPLERD_E2E=required the suite runs to get here. */
  check(): void;
}

/** Whether root, the tools, the image (and the chroot) are here; skips loudly unless STAPLERD_E2E=required. */
export function imageSuite(what: string, o: { trixie?: boolean } = {}): ImageSuite {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (podman mount, mount namespaces)');
  missing.push(...TOOLS.filter((t) => !findBinary(t)));
  if (missing.length === 0 && spawnSync(findBinary('podman')!, ['image', 'exists', IMAGE]).status !== 0) {
    missing.push(`the image ${IMAGE} (build it: STAPLERD_IMAGE="$(bash .ci/image.sh)"; export STAPLERD_IMAGE)`);
  }
  if (o.trixie && !existsSync(join(TRIXIE, 'usr/sbin/nginx'))) missing.push(`the Debian 13 chroot ${TRIXIE} (.ci/trixie.sh)`);
  const reason = missing.length > 0 ? `${what} needs ${missing.join(', ')}` : undefined;
  let skip: string | false = false;
  if (reason && process.env.STAPLERD_E2E !== 'required') {
    skip = `${reason}: SKIPPED; set STAPLERD_E2E=required to make this a failure`;
    console.warn(`\n*** ${skip} ***\n`);
  }
  return {
    skip,
    check() {
      if (reason) throw new Error(`${reason}, and STAPLERD_E2E=required`);
    },
  };
}

/** Runs a command that must succeed; its output on failure. */
export async function must(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run(findBinary(cmd) ?? cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  user: string;
  env: string[];
  workingDir: string;
  /** HEALTHCHECK test as stored: ["CMD", ...] or ["CMD-SHELL", "..."]. */
  healthcheck: string[] | undefined;
  exposedPorts: number[];
}

interface InspectConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  User?: string;
  Env?: string[] | null;
  WorkingDir?: string;
  ExposedPorts?: Record<string, unknown> | null;
  Healthcheck?: { Test?: string[] } | null;
}

export async function inspectImage(image: string): Promise<ImageConfig> {
  const [info] = JSON.parse(await must('podman', ['image', 'inspect', image])) as { Config: InspectConfig; Healthcheck?: { Test?: string[] } }[];
  const c = info!.Config;
  return {
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    user: c.User || 'root',
    env: c.Env ?? [],
    workingDir: c.WorkingDir || '/',
    healthcheck: c.Healthcheck?.Test ?? info!.Healthcheck?.Test,
    exposedPorts: Object.keys(c.ExposedPorts ?? {}).map((p) => Number(p.split('/')[0])),
  };
}

/** A user's entry in the root filesystem's /etc/passwd (by name or numeric uid). */
export function passwdEntry(root: string, user: string): { uid: number; gid: number; home: string } {
  const name = user.split(':')[0]!;
  for (const line of readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n')) {
    const f = line.split(':');
    if (f.length >= 7 && (f[0] === name || f[2] === name)) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
  }
  throw new Error(`user ${user} is not in ${root}/etc/passwd`);
}

/** A writable root filesystem and how to remove it. */
export interface Rootfs {
  root: string;
  remove(): Promise<void>;
}

/** `podman create` + `podman mount`: the image's layers with a writable layer on top, as a container gets. */
export async function mountImage(image: string, label: string): Promise<Rootfs> {
  const name = `staplerd-test-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await must('podman', ['create', '--name', name, image]);
  const root = await must('podman', ['mount', name]);
  return {
    root,
    async remove() {
      await must('podman', ['umount', name]);
      await must('podman', ['rm', '-f', name]);
    },
  };
}

/** An overlay over a chroot directory, so that nothing the processes write reaches the shared chroot. */
export async function overlayRoot(lower: string, dir: string): Promise<Rootfs> {
  const [upper, work, root] = ['upper', 'work', 'merged'].map((d) => join(dir, d)) as [string, string, string];
  for (const d of [upper, work, root]) await mkdir(d, { recursive: true });
  await must('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, root]);
  return { root, remove: () => must('umount', [root]).then(() => undefined) };
}

/** A private network namespace with loopback up. */
export async function createNetns(): Promise<{ name: string; remove(): Promise<void> }> {
  const name = `staplerd-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await must('ip', ['netns', 'add', name]);
  await must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  const pids = async () => (await must('ip', ['netns', 'pids', name])).split(/\s+/).filter(Boolean).map(Number);
  return {
    name,
    // Kills whatever is left in it first: an nginx worker outlives a killed master and would hold the test's
    // output pipes open (the test file would never exit) and its root filesystem busy.
    async remove() {
      for (const pid of await pids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
        }
      }
      await waitFor(`no process left in network namespace ${name}`, 10_000, async () => ((await pids()).length === 0 ? true : undefined));
      await must('ip', ['netns', 'delete', name]);
    },
  };
}

/** `ip netns exec NS` + argv: for host tools (openssl) that must reach the namespace's loopback. */
export function inNetns(netns: string, argv: string[]): [string, string[]] {
  return [findBinary('ip')!, ['netns', 'exec', netns, ...argv]];
}

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** One container: its root, network namespace, user, environment, working directory and mounts. */
export interface ContainerSpec {
  netns: string;
  root: string;
  user: string;
  env: string[];
  workingDir: string;
  mounts: Mount[];
}

// Runs on the host side inside `ip netns exec` (a private mount namespace), then becomes the process.
const LAUNCH = `set -e
root=$1 user=$2 wd=$3; shift 3
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,size=1m,nosuid tmpfs "$root/dev"
for n in null zero full random urandom; do : >"$root/dev/$n"; mount --bind "/dev/$n" "$root/dev/$n"; done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"; ln -s /proc/self/fd/1 "$root/dev/stdout"; ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir "$root/dev/shm"; mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmpfs "$root/dev/shm"
while [ "$1" != -- ]; do
  src=$1 dst=$root$2 mode=$3; shift 3
  if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : >"$dst"; fi
  mount --bind "$src" "$dst"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done
shift
exec chroot --userspec="$user" "$root" /usr/bin/env -i -C "$wd" "$@"
`;

/** The command line that runs `argv` in the container: `ip netns exec ... sh -c LAUNCH ... chroot ... env ...`. */
export function containerCommand(c: ContainerSpec, argv: string[]): [string, string[]] {
  const home = c.env.some((e) => e.startsWith('HOME=')) ? [] : [`HOME=${passwdEntry(c.root, c.user).home}`];
  const mounts = c.mounts.flatMap((m) => [m.source, m.target, m.readOnly ? 'ro' : 'rw']);
  return inNetns(c.netns, ['/bin/sh', '-c', LAUNCH, 'launch', c.root, c.user, c.workingDir, ...mounts, '--', ...c.env, ...home, ...argv]);
}

/** Starts `argv` in the container as a long-running child. */
export function startIn(label: string, c: ContainerSpec, argv: string[]): Child {
  const [cmd, args] = containerCommand(c, argv);
  return new Child(label, cmd, args);
}

/** Runs `argv` in the container to completion (as `docker exec` would). */
export function execIn(c: ContainerSpec, argv: string[], timeoutMs = 20_000): Promise<RunResult> {
  const [cmd, args] = containerCommand(c, argv);
  return run(cmd, args, { timeoutMs });
}

/** The argv of a HEALTHCHECK / compose healthcheck test: ["CMD", ...] or ["CMD-SHELL", "..."]. */
export function healthcheckArgv(test: string[]): string[] {
  if (test[0] === 'CMD') return test.slice(1);
  if (test[0] === 'CMD-SHELL') return ['/bin/sh', '-c', test[1]!];
  throw new Error(`healthcheck ${JSON.stringify(test)} is not CMD or CMD-SHELL`);
}

/** Polls the healthcheck until it exits 0 (the "healthy" of Docker), failing if `process` exits first. */
export async function waitHealthy(what: string, c: ContainerSpec, test: string[], process: Child, timeoutMs = 60_000): Promise<void> {
  await waitFor(`${what} healthy`, timeoutMs, async () => {
    if (!process.running) throw new Error(`${what} exited (${String(await process.exited)})\n${process.output()}`);
    const r = await execIn(c, healthcheckArgv(test));
    return r.code === 0 ? true : undefined;
  }, 500);
}
