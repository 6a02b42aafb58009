/**
 * The container image CI builds from the Dockerfile (.ci/image.sh), run as the image says: ENTRYPOINT, CMD,
 * USER, Env, WorkingDir and HEALTHCHECK come from `podman image inspect`; the root filesystem from `podman
 * mount`; the process from `chroot --userspec` in a private network namespace (see container.ts). Upstream
 * is `openssl ocsp` for the project's demo PKI, in the same namespace, on its loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chown, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { Child, findBinary, run, startOpensslResponder, tempDir, waitFor } from '../helpers/processes.js';
import {
  IMAGE, createNetns, execIn, healthcheckArgv, imageSuite, inNetns, inspectImage, mountImage, must, passwdEntry, startIn,
  type ContainerSpec, type ImageConfig, type Rootfs,
} from './container.js';

const suite = imageSuite('the container image test');
const UPSTREAM_PORT = 8889; // inside the private network namespace: nothing else listens there

/** Every regular file under `dir` with its size (directories read in parallel: the image has ~20,000 files). */
async function regularFiles(dir: string): Promise<{ path: string; size: number }[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const found = await Promise.all(entries.map(async (e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return regularFiles(p);
    return e.isFile() ? [{ path: p, size: (await stat(p)).size }] : [];
  }));
  return found.flat();
}

describe('the container image, run as its config says', { skip: suite.skip, timeout: 180_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let netns: Awaited<ReturnType<typeof createNetns>> | undefined;
  let rootfs: Rootfs | undefined;
  let cfg: ImageConfig;
  let spec: ContainerSpec;
  let files: DemoPkiFiles;
  let upstream: Child | undefined;
  let daemon: Child | undefined;
  let volume: string;
  let port: number;

  const start = () => startIn('staplerd (image)', spec, [...cfg.entrypoint, ...cfg.cmd]);
  /** `openssl ocsp` against staplerd's /ocsp, verifying the answer against the demo root. */
  const askOcsp = () => {
    const [cmd, args] = inNetns(netns!.name, [
      findBinary('openssl')!, 'ocsp', '-issuer', files.issuer, '-cert', files.leaves.good.cert, '-CAfile', files.root,
      '-url', `http://127.0.0.1:${port}/ocsp`, '-no_nonce', '-timeout', '5',
    ]);
    return run(cmd, args, { timeoutMs: 15_000 });
  };
  const staplesGood = async () => {
    const r = await askOcsp();
    return /Response verify OK/.test(r.stdout + r.stderr) && new RegExp(`${files.leaves.good.cert}: good`).test(r.stdout) ? r : undefined;
  };

  before(async () => {
    suite.check();
    tmp = await tempDir('image');
    cfg = await inspectImage(IMAGE);
    assert.ok(cfg.entrypoint.length + cfg.cmd.length > 0, 'the image has an ENTRYPOINT or CMD');
    assert.ok(cfg.healthcheck, 'the image has a HEALTHCHECK');
    assert.equal(cfg.exposedPorts.length, 1, `one exposed port (${cfg.exposedPorts.join(', ')})`);
    port = cfg.exposedPorts[0]!;
    netns = await createNetns();
    rootfs = await mountImage(IMAGE, 'image');
    // The image's VOLUME as Docker makes a fresh named volume: empty, owned as the image's directory is.
    volume = join(tmp.dir, 'data');
    await mkdir(volume);
    const dataDir = await stat(join(rootfs.root, 'var/lib/staplerd'));
    await chown(volume, dataDir.uid, dataDir.gid);
    spec = {
      netns: netns.name, root: rootfs.root, user: cfg.user, env: cfg.env, workingDir: cfg.workingDir,
      mounts: [{ source: volume, target: '/var/lib/staplerd', readOnly: false }],
    };
    const now = new Date();
    files = await writeDemoPki(createDemoPki({ now, ocspUrl: `http://127.0.0.1:${UPSTREAM_PORT}/` }), join(tmp.dir, 'pki'), now);
    upstream = await startOpensslResponder(findBinary('openssl')!, {
      index: files.index, issuer: files.issuer, signer: files.ocspSigner, signerKey: files.ocspSignerKey,
    }, UPSTREAM_PORT, 60, inNetns(netns.name, []).flat());
  });

  after(async () => {
    for (const c of [daemon, upstream]) if (c?.running) await c.stop('SIGKILL');
    await netns?.remove();
    await rootfs?.remove();
    await tmp?.cleanup();
  });

  test('runs as the unprivileged user the image names, with no build-time CA bundle in the image', async () => {
    const user = passwdEntry(rootfs!.root, cfg.user);
    assert.notEqual(user.uid, 0, `USER ${cfg.user} is not root`);
    // The npm registry's CA went to the build stage as a secret: no variable, no history line, no file.
    assert.ok(!cfg.env.some((e) => e.startsWith('NODE_EXTRA_CA_CERTS=')), cfg.env.join(' '));
    const history = await must('podman', ['history', '--no-trunc', '--format', '{{.CreatedBy}}', IMAGE]);
    assert.doesNotMatch(history, /NODE_EXTRA_CA_CERTS=\/|ca-certificates\.crt/);
    const bundle = process.env.NODE_EXTRA_CA_CERTS || '/etc/ssl/certs/ca-certificates.crt';
    const want = await readFile(bundle).catch(() => undefined);
    if (want) {
      const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
      const all = await regularFiles(rootfs!.root);
      assert.ok(all.length > 1000, `walked ${all.length} files`);
      for (const f of all.filter((x) => x.size === want.length)) {
        assert.notEqual(hash(await readFile(f.path)), hash(want), `${f.path} is the build's CA bundle`);
      }
    }
    assert.ok(!(await stat(join(rootfs!.root, 'run/secrets/ca')).catch(() => undefined)), '/run/secrets/ca is in the image');
  });

  test('staples a certificate dropped into /etc/staplerd/certs; the HEALTHCHECK passes; SIGTERM exits 0 at once', async () => {
    const certs = join(rootfs!.root, 'etc/staplerd/certs');
    await writeFile(join(certs, 'good.pem'), await readFile(files.leaves.good.chain));
    // Before staplerd runs the healthcheck must fail, or passing it later proves nothing.
    assert.notEqual((await execIn(spec, healthcheckArgv(cfg.healthcheck!))).code, 0, 'HEALTHCHECK passes with nothing running');
    daemon = start();
    await waitFor('the HEALTHCHECK to pass', 60_000, async () => {
      if (!daemon!.running) throw new Error(`staplerd exited\n${daemon!.output()}`);
      return (await execIn(spec, healthcheckArgv(cfg.healthcheck!))).code === 0 ? true : undefined;
    }, 500);
    const r = await waitFor('a verified good staple over /ocsp', 60_000, staplesGood, 500).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemon!.output()}`);
    });
    assert.match(r.stdout, /This Update:/);
    const t0 = Date.now();
    const code = await daemon.stop('SIGTERM', 5_000);
    assert.equal(code, 0, daemon.output());
    console.log(`image: SIGTERM to exit ${Date.now() - t0} ms`);
    assert.notEqual((await execIn(spec, healthcheckArgv(cfg.healthcheck!))).code, 0, 'HEALTHCHECK fails once staplerd is gone');
  });

  test('persists staples in /var/lib/staplerd as the unprivileged user and serves them after a restart with the CA down', async () => {
    const user = passwdEntry(rootfs!.root, cfg.user);
    const persisted: string[] = [];
    for (const f of await regularFiles(volume)) {
      assert.equal((await stat(f.path)).uid, user.uid, `${f.path} is owned by ${cfg.user}`);
      persisted.push(f.path);
    }
    assert.ok(persisted.length > 0, 'staplerd wrote its staples to the volume');
    await upstream!.stop('SIGTERM');
    daemon = start();
    const r = await waitFor('the persisted staple over /ocsp with the CA down', 60_000, staplesGood, 500).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemon!.output()}`);
    });
    assert.match(r.stdout, /good/);
    assert.equal(await daemon.stop('SIGTERM', 5_000), 0, daemon.output());
  });
});
