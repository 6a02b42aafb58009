/**
 * `npm pack` makes a package that installs and runs with production dependencies alone: the nearest proof
 * on these machines (Docker cannot run here) that the image's `npm ci --omit=dev` step and `npx staplerd`
 * work. The repository is packed (its `prepack` builds it), the tarball installed into a clean project with
 * `--omit=dev`, and the installed bin is run: --version, check against the demo responder, config
 * validate, and serve until ready.
 *
 * The pack runs in a copy of the repository, not in it: `prepack` rebuilds dist/, and other test files
 * read dist/ while this one runs. The copy holds everything but node_modules (linked), build output and
 * version control and tests, plus planted files that must stay out of the tarball (a test, a key, local state).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, realpath, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { Child, freePort, run, tempDir, waitFor, type RunResult } from '../helpers/processes.js';

// Compiled to dist/test/packaging/pack.test.js: the repository is three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Top-level entries not copied: dependencies (linked instead), build output, VCS, local state, and the tests
 * and benchmarks (a planted test stands in for them, so the build stays quick).
 */
const NOT_COPIED = new Set(['node_modules', 'dist', '.git', 'var', '.staplerd-demo', 'test', 'bench']);

const show = (r: RunResult): string => `exit ${String(r.code)}\n--- stdout ---\n${r.stdout.slice(-4000)}\n--- stderr ---\n${r.stderr.slice(-4000)}`;

/**
 * The environment for npm and the installed bin. npm's lifecycle variables are dropped (run under `npm test`
 * they describe the repository, e.g. npm_config_local_prefix, and would steer the child npm back into it);
 * settings that reach the registry (registry, proxy, CA, cache, user config) are kept. Node's directory
 * goes first on PATH: the bin starts with `#!/usr/bin/env node`.
 */
function childEnv(): NodeJS.ProcessEnv {
  const keep = /^npm_config_(registry|.*proxy|cafile|ca|strict_ssl|cache|userconfig|globalconfig)$/i;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) || keep.test(k)) env[k] = v;
  env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
  env.npm_config_update_notifier = 'false';
  env.STAPLERD_LOG_FORMAT = 'json';
  return env;
}

describe('npm pack: the package installs with --omit=dev and runs', { timeout: 300_000 }, () => {
  const env = childEnv();
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let version: string;
  let entries: string[] = [];
  let app: string;
  let bin: string;
  let files: DemoPkiFiles;
  let responder: DemoResponder | undefined;
  let configPath: string;
  let port: number;

  before(async () => {
    tmp = await tempDir('pack');
    process.env.PATH = env.PATH; // this file's own process: Child below inherits it
    version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

    // ---- a copy of the repository, with things planted that must not be packed
    const copy = join(tmp.dir, 'repo');
    await cp(ROOT, copy, {
      recursive: true,
      filter: (src) => {
        const rel = relative(ROOT, src);
        return rel === '' || !(NOT_COPIED.has(rel.split(sep)[0]!) || /\.tgz$/.test(rel));
      },
    });
    await symlink(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
    await mkdir(join(copy, 'config', 'var', 'staples'), { recursive: true });
    await writeFile(join(copy, 'config', 'var', 'staples', 'planted.json'), '{}\n');
    await writeFile(join(copy, 'config', 'certs', 'planted.pem'), '-----BEGIN PRIVATE KEY-----\nplanted\n-----END PRIVATE KEY-----\n');
    await mkdir(join(copy, 'test', 'planted'), { recursive: true });
    await writeFile(join(copy, 'test', 'planted', 'planted.test.ts'), 'export const planted = true;\n');

    // ---- pack (prepack builds dist/ in the copy)
    const out = join(tmp.dir, 'out');
    await mkdir(out);
    const pack = await run('npm', ['pack', '--pack-destination', out], { cwd: copy, env, timeoutMs: 180_000 });
    assert.equal(pack.code, 0, `npm pack\n${show(pack)}`);
    const tarballs = (await readdir(out)).filter((f) => f.endsWith('.tgz'));
    assert.deepEqual(tarballs, [`staplerd-${version}.tgz`], 'npm pack made one tarball');
    const tarball = join(out, tarballs[0]!);
    assert.ok(existsSync(join(copy, 'dist', 'test', 'planted', 'planted.test.js')), 'prepack built the planted test: the tarball check below means something');
    const list = await run('tar', ['-tzf', tarball], { cwd: tmp.dir });
    assert.equal(list.code, 0, show(list));
    entries = list.stdout.split('\n').filter(Boolean);

    // ---- install into a clean project, production dependencies only
    app = join(tmp.dir, 'app');
    await mkdir(app);
    const init = await run('npm', ['init', '-y'], { cwd: app, env, timeoutMs: 60_000 });
    assert.equal(init.code, 0, `npm init\n${show(init)}`);
    const install = await run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', tarball], { cwd: app, env, timeoutMs: 240_000 });
    assert.equal(install.code, 0, `npm install (the npm registry must be reachable)\n${show(install)}`);
    bin = join(app, 'node_modules', '.bin', 'staplerd');

    // ---- a demo PKI and responder (the repository's own build), and a config for the installed bin
    port = await freePort();
    const rport = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${rport}/` });
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port: rport });
    configPath = join(tmp.dir, 'etc', 'staplerd.yaml');
    await mkdir(dirname(configPath));
    await writeFile(configPath, [
      `listen: { host: 127.0.0.1, port: ${port} }`,
      'dataDir: ../var',
      'logLevel: info',
      'certificates:',
      `  - { name: www, chain: ${files.leaves.good.chain} }`,
      `  - { name: strict, chain: ${files.leaves.mustStaple.chain} }`,
      '',
    ].join('\n'));
  });

  after(async () => {
    await responder?.close();
    await tmp?.cleanup();
  });

  test('the tarball holds the built CLI, docs and config examples, and no tests, keys or local state', () => {
    assert.ok(entries.length > 0);
    for (const e of entries) assert.ok(e.startsWith('package/'), `tarball entry outside package/: ${e}`);
    const paths = entries.map((e) => e.slice('package/'.length));
    for (const p of ['package.json', 'README.md', 'dist/src/cli.js', 'dist/src/main.js', 'dist/src/demo/responder.js', 'config/staplerd.yaml', 'config/staplerd.service', 'config/grafana/staplerd-dashboard.json', 'config/prometheus/staplerd-alerts.yml']) {
      assert.ok(paths.includes(p), `tarball lacks ${p}`);
    }
    const forbidden: [RegExp, string][] = [
      [/(^|\/)test\//, 'tests'],
      [/\.test\.(js|ts)(\.map)?$/, 'test files'],
      [/^dist\/test(\/|$)/, 'compiled tests'],
      [/^dist\/bench(\/|$)/, 'compiled benchmarks'],
      [/^\.ci(\/|$)/, 'CI scripts'],
      [/^config\/var(\/|$)/, "npm start's local state"],
      [/\.(pem|key)$/, 'PEM files or keys'],
      [/^src\//, 'TypeScript sources'],
      [/(^|\/)node_modules\//, 'dependencies'],
    ];
    for (const [re, what] of forbidden) {
      const bad = paths.filter((p) => re.test(p));
      assert.deepEqual(bad, [], `the tarball contains ${what}`);
    }
  });

  test('installs the bin from the tarball, without dev dependencies', async () => {
    const target = await realpath(bin);
    assert.equal(target, await realpath(join(app, 'node_modules', 'staplerd', 'dist', 'src', 'cli.js')), 'node_modules/.bin/staplerd is the installed package, not the repository');
    assert.ok(!existsSync(join(app, 'node_modules', 'typescript')), 'typescript (a dev dependency) was installed');
  });

  test('staplerd --version prints the version in package.json', async () => {
    const r = await run(bin, ['--version'], { cwd: app, env });
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), version);
  });

  test('staplerd check on a good certificate against the demo responder exits 0 and prints good', async () => {
    const r = await run(bin, ['check', files.leaves.good.chain], { cwd: app, env, timeoutMs: 30_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Cert Status: good/);
    assert.match(r.stdout, /: good\b/);
  });

  test('staplerd config validate accepts a config outside the package', async () => {
    const r = await run(bin, ['config', 'validate', '-c', configPath], { cwd: app, env, timeoutMs: 30_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /OK/);
  });

  test('staplerd serve becomes ready, exports metrics and stops cleanly on SIGTERM', async () => {
    const child = new Child('installed staplerd', bin, ['serve', '-c', configPath], app);
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitFor('installed staplerd /readyz 200', 30_000, async () => {
        if (!child.running) throw new Error(`staplerd exited (code ${String(await child.exited)})\n${child.output()}`);
        const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
        await r.body?.cancel();
        return r.status === 200 ? true : undefined;
      });
      const metrics = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      assert.match(metrics, /^staplerd_ready 1$/m);
      assert.match(metrics, /^staplerd_certificates\{state="good"\} 2$/m);
      assert.match(metrics, /^staplerd_process_resident_memory_bytes \d+/m);
      assert.equal(await child.stop('SIGTERM', 20_000), 0, child.output());
    } finally {
      if (child.running) await child.stop('SIGKILL').catch(() => undefined);
    }
  });
});
