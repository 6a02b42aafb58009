/**
 * docker-compose.yml's sidecar demo, without Docker: every service as the compose file defines it (image,
 * command, volumes, environment, healthcheck, depends_on, ports), read from the file, not copied here.
 * - `staplerd:latest` (the `build: .` image): the image .ci/image.sh built from the same Dockerfile, run as
 *   its `podman image inspect` config says (container.ts).
 * - `nginx:*` and `haproxy:*`: nginx 1.26 and HAProxy 3.0 from the Debian 13 chroot (nearest to the
 *   compose file's nginx:1.27 and haproxy:2.8), each in its own overlay, started as the official images
 *   start them (below: the one thing this file knows about images it cannot build).
 * - the compose network and the host's loopback are one private network namespace: every service name is
 *   127.0.0.1 in each root's /etc/hosts, and each published port is the container port (nothing else
 *   listens in that namespace). Nothing in the compose file or the configs it mounts is rewritten.
 * Then `openssl s_client -status` on the published TLS ports must show a good staple.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chown, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseCertificate } from '../../src/pki/certificate.js';
import { certificatesFromPem } from '../../src/pki/pem.js';
import { Child, REPO_ROOT, findBinary, run, tempDir, waitFor } from '../helpers/processes.js';
import {
  IMAGE, TRIXIE, createNetns, imageSuite, inNetns, inspectImage, mountImage, overlayRoot, startIn, waitHealthy,
  type ContainerSpec, type ImageConfig, type Mount, type Rootfs,
} from './container.js';

const suite = imageSuite('the compose demo test', { trixie: true });

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  volumes?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test?: string[] }; // without `test`, the image's HEALTHCHECK (its interval etc. overridden)
  depends_on?: Record<string, { condition: string }>;
}
const compose = parseYaml(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};

// How the official nginx and haproxy images start (their ENTRYPOINT/CMD/USER), applied to the Debian 13
// binaries. nginx: CMD ["nginx", "-g", "daemon off;"] as root (workers drop to the compiled-in user), logs
// to stderr. haproxy: docker-entrypoint.sh turns CMD ["haproxy", "-f", cfg] into `haproxy -W -db -f cfg`, as
// USER haproxy.
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const STAND_INS: Record<string, ImageConfig> = {
  nginx: { entrypoint: [], cmd: ['nginx', '-g', 'daemon off;'], user: 'root', env: [PATH], workingDir: '/', healthcheck: undefined, exposedPorts: [] },
  haproxy: {
    entrypoint: [], cmd: ['haproxy', '-W', '-db', '-f', '/usr/local/etc/haproxy/haproxy.cfg'], user: 'haproxy', env: [PATH],
    workingDir: '/var/lib/haproxy', healthcheck: undefined, exposedPorts: [],
  },
};

/** Compose's `${NAME:-default}` and `${NAME}`, from `env` (a user with no .env and nothing exported). */
function interpolate(v: string, env: Record<string, string>): string {
  return v.replace(/\$\{(\w+)(?::-([^}]*))?\}/g, (_, name: string, dflt?: string) => env[name] || (dflt ?? ''));
}

/** Services in an order that starts each after what it depends on. */
function startOrder(services: Record<string, ComposeService>): string[] {
  const out: string[] = [];
  const visit = (n: string, path: string[]) => {
    assert.ok(services[n], `depends_on names an unknown service ${n}`);
    assert.ok(!path.includes(n), `depends_on cycle ${[...path, n].join(' -> ')}`);
    for (const d of Object.keys(services[n].depends_on ?? {})) visit(d, [...path, n]);
    if (!out.includes(n)) out.push(n);
  };
  for (const n of Object.keys(services)) visit(n, []);
  return out;
}

interface Running {
  spec: ContainerSpec;
  cfg: ImageConfig;
  child: Child;
}

describe('docker-compose.yml: nginx and HAProxy staple through staplerd and the demo CA', { skip: suite.skip, timeout: 240_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let netns: Awaited<ReturnType<typeof createNetns>> | undefined;
  const roots: Rootfs[] = [];
  const running = new Map<string, Running>();
  const named = new Map<string, string>();
  const hosts = `127.0.0.1 localhost ${Object.keys(compose.services).join(' ')}\n::1 localhost\n`;

  /** The root filesystem and image config of a service. */
  async function rootOf(name: string, s: ComposeService): Promise<{ root: string; cfg: ImageConfig }> {
    if (s.build !== undefined || s.image === 'staplerd:latest') {
      const r = await mountImage(IMAGE, name);
      roots.push(r);
      return { root: r.root, cfg: await inspectImage(IMAGE) };
    }
    const kind = /^(nginx|haproxy):/.exec(s.image ?? '')?.[1];
    assert.ok(kind, `service ${name}: no stand-in for image ${s.image}`);
    const r = await overlayRoot(TRIXIE, join(tmp.dir, `${name}-root`));
    roots.push(r);
    if (kind === 'nginx') {
      await mkdir(join(r.root, 'var/log/nginx'), { recursive: true });
      await rm(join(r.root, 'var/log/nginx/error.log'), { force: true });
      await symlink('/dev/stderr', join(r.root, 'var/log/nginx/error.log'));
    }
    return { root: r.root, cfg: STAND_INS[kind]! };
  }

  /** Compose volumes as mounts: bind mounts from the repository, named volumes as shared temp directories. */
  async function mountsOf(root: string, s: ComposeService): Promise<Mount[]> {
    const out: Mount[] = [];
    for (const v of s.volumes ?? []) {
      const [src, target, mode] = v.split(':') as [string, string, string | undefined];
      let source = src.startsWith('.') || src.startsWith('/') ? join(REPO_ROOT, src) : named.get(src);
      if (source === undefined) {
        // A new named volume starts as a copy of the image's directory there: here, its owner (the content is empty).
        source = join(tmp.dir, 'volumes', src);
        await mkdir(source, { recursive: true });
        const st = await stat(join(root, target)).catch(() => undefined);
        if (st) await chown(source, st.uid, st.gid);
        named.set(src, source);
      }
      out.push({ source, target, readOnly: mode === 'ro' });
    }
    return out;
  }

  async function up(name: string): Promise<void> {
    const s = compose.services[name]!;
    for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
      const d = running.get(dep)!;
      const check = compose.services[dep]!.healthcheck?.test ?? d.cfg.healthcheck;
      if (condition === 'service_healthy') {
        assert.ok(check, `${name} waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
        await waitHealthy(dep, d.spec, check, d.child);
      }
    }
    const { root, cfg } = await rootOf(name, s);
    await writeFile(join(root, 'etc/hosts'), hosts);
    const env = new Map(cfg.env.map((e) => [e.slice(0, e.indexOf('=')), e] as const));
    for (const [k, v] of Object.entries(s.environment ?? {})) env.set(k, `${k}=${interpolate(String(v), {})}`);
    const spec: ContainerSpec = { netns: netns!.name, root, user: cfg.user, env: [...env.values()], workingDir: cfg.workingDir, mounts: await mountsOf(root, s) };
    const argv = [...cfg.entrypoint, ...(s.command ?? cfg.cmd)];
    running.set(name, { spec, cfg, child: startIn(name, spec, argv) });
  }

  const output = () => [...running.values()].map((r) => r.child.output()).join('\n');

  before(async () => {
    suite.check();
    tmp = await tempDir('compose');
    netns = await createNetns();
    for (const name of startOrder(compose.services)) await up(name);
  });

  after(async () => {
    // As `docker compose down`: SIGTERM in reverse start order; then whatever is left goes with the namespace.
    for (const r of [...running.values()].reverse()) await r.child.stop('SIGTERM', 10_000).catch((e: Error) => console.warn(`stopping: ${e.message}`));
    await netns?.remove();
    for (const r of roots.reverse()) await r.remove().catch((e: Error) => console.warn(`cleanup: ${e.message}`));
    await tmp?.cleanup();
  });

  const tlsPorts = Object.entries(compose.services)
    .filter(([, s]) => /^(nginx|haproxy):/.test(s.image ?? ''))
    .flatMap(([name, s]) => (s.ports ?? []).map((p) => ({ name, p })));

  test('the compose file publishes a TLS port for nginx and for HAProxy, each the port the service listens on', () => {
    assert.deepEqual([...new Set(tlsPorts.map((t) => t.name))].sort(), ['haproxy', 'nginx']);
    for (const { name, p } of tlsPorts) {
      const [host, hostPort, containerPort] = p.split(':');
      assert.equal(host, '127.0.0.1', `${name}: ${p}`);
      assert.equal(hostPort, containerPort, `${name}: ${p}: this test reaches the service on its container port`);
    }
  });

  for (const { name, p } of tlsPorts) {
    test(`openssl s_client -status on ${name}'s published port ${p} shows a good staple`, async () => {
      const port = p.split(':')[1]!;
      // The demo CA's PKI, in the named volume it shares with staplerd (the service that mounts it writable).
      const pki = join(named.get('demo-pki')!, 'pki');
      const good = parseCertificate(certificatesFromPem(await readFile(join(pki, 'good.pem'), 'utf8'), 'good.pem')[0]!);
      const [cmd, args] = inNetns(netns!.name, [
        findBinary('openssl')!, 's_client', '-connect', `127.0.0.1:${port}`, '-servername', 'good.demo.test', '-status', '-CAfile', join(pki, 'root.pem'),
      ]);
      // nginx fetches its staple on the first handshake per worker and HAProxy gets its from staplerd's push.
      const out = await waitFor(`${name} to staple`, 90_000, async () => {
        const r = await run(cmd, args, { timeoutMs: 15_000 });
        return /OCSP Response Status: successful/.test(r.stdout) ? r.stdout : undefined;
      }, 1000).catch((e: Error) => {
        throw new Error(`${e.message}\n${output()}`);
      });
      assert.match(out, /Cert Status: good/);
      assert.match(out, new RegExp(`Serial Number: ${good.serialHex}\\b`, 'i'), 'the staple is for the certificate served');
      assert.match(out, /Subject: CN=staplerd demo OCSP signer/, 'signed by the demo CA\'s delegated responder');
      assert.match(out, /Verify return code: 0 \(ok\)/, 'the served chain verifies to the demo root');
    });
  }

  test('staplerd and the demo CA stop with exit code 0 on SIGTERM', async () => {
    for (const name of ['staplerd', 'ca']) {
      const c = running.get(name)!.child;
      assert.equal(await c.stop('SIGTERM', 20_000), 0, c.output());
    }
  });
});
