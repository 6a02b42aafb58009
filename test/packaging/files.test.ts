/**
 * The packaging files name paths, ports and commands that live elsewhere in the repository: the Dockerfile
 * copies files and runs the CLI, docker-compose.yml mounts files, the configs must load, the README shows
 * commands. Docker cannot run on these machines, so this is the check that they all still exist and agree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/main.js';
import { loadAllRecords } from '../../src/sources/load-all.js';

// Compiled to dist/test/packaging/files.test.js: the repository is three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const repo = (p: string) => join(ROOT, p);
const read = (p: string) => readFileSync(repo(p), 'utf8');

// ---- a small Dockerfile reader: instructions with continuation lines joined, grouped into stages ----------

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  ins: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (cur === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // comment inside a continuation
    if (line.endsWith('\\')) cur += `${line.slice(0, -1)} `;
    else {
      logical.push(cur + line);
      cur = '';
    }
  }
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(l)!;
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(f, `FROM ${args}`);
      stages.push({ from: f[1]!, name: f[2], ins: [] });
    } else {
      assert.ok(stages.length > 0, `${op} before FROM`);
      stages.at(-1)!.ins.push({ op, args });
    }
  }
  return stages;
}

/** Exec form (a JSON array of strings) or undefined when the instruction uses shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const v: unknown = JSON.parse(args);
  return Array.isArray(v) && v.every((s) => typeof s === 'string') ? v : undefined;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
}

function copiesOf(stage: Stage): Copy[] {
  return stage.ins
    .filter((i) => i.op === 'COPY' || i.op === 'ADD')
    .map((i) => {
      const words = execForm(i.args) ?? i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
    });
}

function workdirOf(stage: Stage): string {
  return stage.ins.filter((i) => i.op === 'WORKDIR').at(-1)?.args ?? '/';
}

/** Where a COPY destination lands, given the WORKDIR in force (the last one is enough for our files). */
function landsAt(stage: Stage, c: Copy, source: string): string {
  const dest = posix.isAbsolute(c.dest) ? c.dest : posix.join(workdirOf(stage), c.dest);
  return c.dest.endsWith('/') ? posix.join(dest, posix.basename(source)) : dest;
}

const dockerfile = parseDockerfile(read('Dockerfile'));
const build = dockerfile[0]!;
const runtime = dockerfile.at(-1)!;
const runtimeOnly = (op: string) => runtime.ins.filter((i) => i.op === op);
const dockerConfig = loadConfigFile(repo('config/docker/staplerd.yaml'));
const compose = parseYaml(read('docker-compose.yml')) as {
  services: Record<string, { build?: string | { context: string }; ports?: string[]; volumes?: string[]; environment?: Record<string, string> }>;
  volumes?: Record<string, unknown>;
};
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string>; engines: { node: string } };

test('the Dockerfile builds in one stage and runs from another, both on a Node that package.json allows', () => {
  assert.ok(dockerfile.length >= 2, 'multi-stage');
  const engineMajor = Number(/(\d+)/.exec(pkg.engines.node)![1]);
  for (const s of dockerfile) {
    const m = /^node:(\d+)/.exec(s.from);
    assert.ok(m, `base image ${s.from} is an official node image`);
    assert.ok(Number(m[1]) >= engineMajor, `${s.from} satisfies engines.node ${pkg.engines.node}`);
  }
  const runs = build.ins.filter((i) => i.op === 'RUN').map((i) => i.args).join(' && ');
  assert.match(runs, /npm ci\b/);
  assert.match(runs, /npm run build\b/);
  assert.match(runs, /npm prune --omit=dev\b/);
  assert.ok(pkg.scripts.build, 'package.json has the build script the Dockerfile runs');
  assert.equal(runtime.ins.filter((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args)).length, 0, 'runtime stage installs nothing');
});

test('every file the Dockerfile copies from the repository exists and is not excluded by .dockerignore', () => {
  const ignored = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !/[*?[]/.test(l));
  let n = 0;
  for (const stage of dockerfile) {
    for (const c of copiesOf(stage).filter((x) => x.from === undefined)) {
      for (const src of c.sources) {
        n++;
        assert.ok(existsSync(repo(src)), `COPY ${src}: no such path in the repository`);
        const clean = posix.normalize(src).replace(/\/$/, '');
        for (const ig of ignored) assert.ok(clean !== ig && !clean.startsWith(`${ig}/`), `COPY ${src} is excluded by .dockerignore line "${ig}"`);
      }
    }
  }
  assert.ok(n > 0);
});

test('what the runtime stage copies from the build stage is something the build produces', () => {
  const buildDir = workdirOf(build);
  const fromBuild = copiesOf(runtime).filter((c) => c.from !== undefined);
  assert.ok(fromBuild.length > 0);
  for (const c of fromBuild) {
    assert.equal(c.from, build.name, 'copies from the build stage by name');
    for (const src of c.sources) {
      const rel = posix.relative(buildDir, src);
      assert.ok(!rel.startsWith('..'), `${src} is inside the build WORKDIR ${buildDir}`);
      if (rel === 'node_modules') continue; // made by npm ci, pruned by npm prune (checked above)
      // dist/ exists because the test run compiled it with the same tsc -p tsconfig.json as `npm run build`.
      assert.ok(existsSync(repo(rel)), `COPY --from=${c.from} ${src}: ${rel} is neither in the repository nor built by tsc`);
    }
  }
});

test('the runtime stage runs as a user that is not root', () => {
  const user = runtimeOnly('USER').at(-1)?.args;
  assert.ok(user, 'runtime stage sets USER');
  assert.doesNotMatch(user, /^(root|0)(:|$)/);
});

test('the exposed port is the one the container config listens on, on all interfaces', () => {
  const exposed = runtimeOnly('EXPOSE').flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.split('/')[0]));
  assert.deepEqual(exposed, [dockerConfig.listen.port]);
  assert.equal(dockerConfig.listen.host, '0.0.0.0', 'a container must listen beyond its own loopback');
});

test('the HEALTHCHECK asks /healthz on that port with node itself, in exec form', () => {
  const hc = runtimeOnly('HEALTHCHECK').at(-1)?.args;
  assert.ok(hc, 'runtime stage has a HEALTHCHECK');
  const cmd = execForm(hc.slice(hc.indexOf('CMD') + 3).trim());
  assert.ok(cmd, 'HEALTHCHECK CMD in exec form');
  assert.equal(cmd[0], 'node', 'no curl in the slim image');
  assert.ok(cmd.join(' ').includes(`127.0.0.1:${dockerConfig.listen.port}/healthz`), cmd.join(' '));
});

test('ENTRYPOINT and CMD are exec form and run the built CLI with a command it knows', async () => {
  const { parseCommand } = await import('../../src/cli.js');
  const entry = execForm(runtimeOnly('ENTRYPOINT').at(-1)?.args ?? '');
  const cmd = execForm(runtimeOnly('CMD').at(-1)?.args ?? '');
  assert.ok(entry && cmd, 'exec form: a shell wrapper would swallow SIGTERM');
  assert.equal(entry[0], 'node');
  const script = posix.relative(workdirOf(runtime), entry[1]!);
  assert.equal(script, pkg.bin.staplerd, 'the entrypoint is the package bin');
  assert.ok(existsSync(repo(script)), `${script} is produced by the build`);
  const parsed = parseCommand([...entry.slice(2), ...cmd]);
  assert.equal(parsed.kind, 'serve');
  // The config it serves is the container config, copied to that path.
  const cfgPath = (parsed as { config: string }).config;
  const copied = copiesOf(runtime).find((c) => c.from === undefined && c.sources.some((s) => landsAt(runtime, c, s) === cfgPath));
  assert.deepEqual(copied?.sources, ['config/docker/staplerd.yaml'], `${cfgPath} comes from config/docker/staplerd.yaml`);
});

test('the container config keeps its data in the image volume and watches a directory the image creates', () => {
  const volumes = runtimeOnly('VOLUME').flatMap((i) => execForm(i.args) ?? i.args.split(/\s+/));
  assert.ok(volumes.includes(dockerConfig.dataDir), `VOLUME ${volumes.join(' ')} holds dataDir ${dockerConfig.dataDir}`);
  const runs = runtimeOnly('RUN').map((i) => i.args).join(' ');
  for (const d of dockerConfig.directories) assert.ok(runs.includes(d.path), `the image creates ${d.path}`);
  assert.match(runs, new RegExp(`chown\\s+\\S+\\s+.*${dockerConfig.dataDir}`), 'the data directory belongs to the unprivileged user');
});

test('docker-compose.yml builds this Dockerfile and mounts paths that exist where the config expects them', async () => {
  const { parseCommand } = await import('../../src/cli.js');
  const svc = compose.services.staplerd;
  assert.ok(svc, 'a staplerd service');
  const builders = Object.values(compose.services).filter((s) => s.build);
  assert.ok(builders.length > 0, 'a service builds the image');
  for (const b of builders) {
    const ctx = typeof b.build === 'string' ? b.build : b.build?.context;
    assert.ok(ctx && existsSync(repo(join(ctx, 'Dockerfile'))), 'build context holds the Dockerfile');
  }
  for (const [name, s] of Object.entries(compose.services)) {
    for (const v of s.volumes ?? []) {
      const src = v.split(':')[0]!;
      if (src.startsWith('.') || src.startsWith('/')) assert.ok(existsSync(repo(src)), `${name}: bind mount ${src} exists in the repository`);
      else assert.ok(compose.volumes && src in compose.volumes, `${name}: named volume ${src} is declared`);
    }
    for (const p of s.ports ?? []) assert.ok(p.startsWith('127.0.0.1:'), `${name}: ${p} is published on the host loopback only`);
  }
  const mounts = (svc.volumes ?? []).map((v) => {
    const [src, target, mode] = v.split(':');
    return { src: src!, target: target!, mode };
  });
  const at = (t: string) => mounts.find((m) => m.target === t);
  const cmd = parseCommand(execForm(runtimeOnly('CMD').at(-1)!.args)!) as { config: string };
  const mounted = at(cmd.config)?.src;
  assert.ok(mounted && /^\.\/config\/docker\/.*\.yaml$/.test(mounted), `the config the CMD names is mounted from config/docker (${mounted})`);
  const cfg = loadConfigFile(repo(mounted));
  assert.ok((svc.ports ?? []).some((p) => p.endsWith(`:${cfg.listen.port}`)), `publishes ${cfg.listen.port}`);
  assert.ok(at(cfg.dataDir), 'dataDir is on a volume');
  for (const c of cfg.certificates) assert.ok(mounts.some((m) => c.chain.startsWith(`${m.target}/`)), `${c.chain} is on a mounted volume`);
  for (const d of cfg.directories) assert.ok(at(d.path), `${d.path} is mounted`);
  const ca = compose.services.ca as { command?: string[] } | undefined;
  if (ca?.command) assert.equal((parseCommand(ca.command) as { kind: string }).kind, 'demo-ca', 'the CA service runs a command the CLI knows');
});

test('the shipped configs load with the real validator', async () => {
  const examples = readdirSync(repo('config/examples')).filter((f) => /\.ya?ml$/.test(f));
  assert.ok(examples.length > 0);
  for (const f of ['config/staplerd.yaml', 'config/docker/staplerd.yaml', ...examples.map((e) => `config/examples/${e}`)]) {
    assert.doesNotThrow(() => loadConfigFile(repo(f), {}), f);
  }
  // What `npm start` serves must start on a fresh clone: its certificates (none) and directories load too.
  const cfg = loadConfigFile(repo('config/staplerd.yaml'), {});
  assert.deepEqual(cfg.listen, { host: '127.0.0.1', port: 8080 });
  assert.equal(cfg.dataDir, repo('config/var'));
  assert.deepEqual(cfg.directories.map((d) => d.path), [repo('config/certs')]);
  const records = await loadAllRecords(cfg, createLogger('silent'));
  assert.ok(Array.isArray(records));
  assert.match(read('.gitignore'), /^var\/$/m, 'config/var stays out of git');
});

test('the YAML config the README shows passes the schema', () => {
  const blocks = [...read('README.md').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length > 0);
  // Compose snippets (a top-level `services:`) are YAML too, but not staplerd configs.
  const configs = blocks.filter((b) => !('services' in ((parseYaml(b) as Record<string, unknown>) ?? {})));
  assert.ok(configs.length > 0);
  for (const b of configs) assert.doesNotThrow(() => parseConfig(parseYaml(b), '<inline>', {}), b);
});

test('config/staplerd.yaml documents every key of the schema', () => {
  const text = read('config/staplerd.yaml');
  const keys = new Set<string>();
  const walk = (node: unknown) => {
    const n = node as { properties?: Record<string, unknown>; items?: unknown };
    for (const [k, v] of Object.entries(n.properties ?? {})) {
      keys.add(k);
      walk(v);
    }
    if (n.items) walk(n.items);
  };
  walk(configSchema);
  assert.ok(keys.size > 20);
  const missing = [...keys].filter((k) => !new RegExp(`(^|[\\s{,#])${k}:`, 'm').test(text));
  assert.deepEqual(missing, [], `schema.ts keys not documented in config/staplerd.yaml (add each with what it does, its default and unit): ${missing.join(', ')}`);
});

/** Lines of the Markdown file's shell code blocks (```sh, ```bash, ```shell, ```console); output blocks are ```text. */
function codeLines(md: string): string[] {
  const out: string[] = [];
  let fence: string | undefined;
  for (const line of md.split('\n')) {
    const m = /^\s*```\s*(\w*)/.exec(line);
    if (m) fence = fence === undefined ? m[1]! : undefined;
    else if (fence !== undefined && ['sh', 'bash', 'shell', 'console'].includes(fence)) out.push(line.trim());
  }
  return out;
}

/** Splits a command line into words: quotes are honoured, a trailing `# comment` is dropped. */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(#.*$)|(\S+)/g;
  for (const m of line.matchAll(re)) {
    // A comment or a shell control operator ends the command (`staplerd check ... --out F || true`).
    if (m[3] !== undefined || /^(\|\||&&|;|\||>>?|2>&1|&)$/.test(m[4] ?? '')) break;
    out.push(m[1] ?? m[2] ?? m[4]!);
  }
  return out;
}

test('importing the CLI module does not run it (it runs only as cli.js or the staplerd bin)', async () => {
  assert.doesNotMatch(process.argv[1] ?? '', /cli\.js$|staplerd$/);
  const before = process.exitCode;
  const cli = await import('../../src/cli.js');
  assert.equal(typeof cli.parseCommand, 'function');
  assert.equal(process.exitCode, before);
});

test('every staplerd command the README shows is one the CLI understands', async () => {
  const { parseCommand } = await import('../../src/cli.js');
  const shown = codeLines(read('README.md'))
    .map((l) => words(l.replace(/^\$\s+/, '')))
    .map((w) => (w[0] === 'npx' ? w.slice(1) : w))
    .filter((w) => w[0] === 'staplerd' || (w[0] === 'node' && w[1]?.endsWith('cli.js')));
  assert.ok(shown.length >= 5, `found ${shown.length} staplerd command lines`);
  for (const w of shown) {
    const args = w.slice(w[0] === 'node' ? 2 : 1);
    assert.doesNotThrow(() => parseCommand(args), `README shows \`${w.join(' ')}\``);
  }
  assert.ok(shown.some((w) => w.includes('check')) && shown.some((w) => w.includes('validate')), 'check and config validate are shown');
});

test('every npm script the README relies on exists in package.json', () => {
  const readme = read('README.md');
  const inCode = codeLines(readme).join('\n');
  const required = ['demo', 'test', 'start', 'build'];
  const fromCode = [...inCode.matchAll(/\bnpm (?:run ([\w:-]+)|(test|start))\b/g)].map((m) => m[1] ?? m[2]!);
  for (const s of new Set([...required, ...fromCode])) {
    assert.ok(pkg.scripts[s], `package.json has script "${s}"`);
    if (required.includes(s)) assert.ok(readme.includes(s === 'test' || s === 'start' ? `npm ${s}` : `npm run ${s}`), `README mentions npm ${s}`);
  }
  assert.match(pkg.scripts.start!, /serve -c config\/staplerd\.yaml/, 'npm start serves config/staplerd.yaml');
});
