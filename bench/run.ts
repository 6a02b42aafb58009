/**
 * `npm run bench [-- --quick] [-- --only serve,wrk,prefetch,scale,fleet] [-- --scale-large] [-- --cpu-prof] [-- --strict]`
 *
 * Measures staplerd against references taken in the same run (issue 5) and prints a table; the same
 * figures go to bench/results/latest.json. Every server, responder and load generator is its own process.
 *   --quick     smoke run for CI: 0.5 s warm-up + 1 s per load (full: 2 alternating runs of 2 s + 5 s), 500 certificates for
 *               prefetch/start-up, 2,000 for scale, 3 s idle window: about 45 s while loading a certificate costs ~1.5 ms
 *               (fleet: 200 certificates, full 2,000)
 *   --prefetch-certs N, --scale-certs N[,N...], --fleet-certs N   override the sizes of cases 3-4, 5 and 6
 *   --scale-large  the scale case at 100,000 certificates too (after 20,000; adds ~3 min)
 *   --only      run some of the cases: serve (1, 2, and the wrk pairs), wrk (the wrk pairs alone), prefetch (3, 4),
 *               scale (5), fleet (6; skipped, and said so, without redis-server)
 *   --cpu-prof  run every daemon with node --cpu-prof; each case's top self-time functions are printed
 *               (profiles stay in $TMPDIR/staplerd-bench-prof-*; summarise one with node dist/bench/profile.js DIR)
 *   --strict    exit 1 when a target is missed (a case that fails to run always exits 1)
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fleetCase } from './fleet.js';
import { prefetchAndStartup } from './prefetch.js';
import { summariseProfiles, type ProfileLine } from './profile.js';
import { judge, render, type Results } from './report.js';
import { scaleCase } from './scale.js';
import { serveCases } from './serve.js';

interface Sizes {
  connections: number;
  warmupSec: number;
  /** Window of one run; each serve row alternates `rounds` runs per server (ABBA), summed. */
  durationSec: number;
  rounds: number;
  serveCerts: number;
  prefetchCerts: number;
  /** The scale case runs once per size. */
  scaleCerts: number[];
  /** wrk pairs per serve row (alternating), and each run's window. */
  wrkPairs: number;
  /** Certificates of the fleet case (1 node, then 5 sharing Redis). */
  fleetCerts: number;
  idleSec: number;
  restarts: number;
  /** fetch.concurrency = fetch.perHostConcurrency = plain client concurrency. */
  fetchConcurrency: number;
}

const FULL: Sizes = {
  connections: 50, warmupSec: 2, durationSec: 5, rounds: 2, wrkPairs: 5, serveCerts: 1000, prefetchCerts: 10_000, scaleCerts: [20_000], fleetCerts: 2000, idleSec: 15, restarts: 3, fetchConcurrency: 64,
};
const QUICK: Sizes = { ...FULL, warmupSec: 0.5, durationSec: 1, rounds: 1, wrkPairs: 2, prefetchCerts: 500, scaleCerts: [2000], fleetCerts: 200, idleSec: 3, restarts: 1 };

/** The daemon's log level in every case: the shipped default, so per-certificate log lines count. */
const LOG_LEVEL = 'info';

const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' }, only: { type: 'string' }, 'cpu-prof': { type: 'boolean' }, strict: { type: 'boolean' },
      'prefetch-certs': { type: 'string' }, 'scale-certs': { type: 'string' }, 'fleet-certs': { type: 'string' }, 'scale-large': { type: 'boolean' },
    },
  });
  const sizes = { ...(values.quick ? QUICK : FULL) };
  if (values['prefetch-certs']) sizes.prefetchCerts = Number(values['prefetch-certs']);
  if (values['scale-certs']) sizes.scaleCerts = values['scale-certs'].split(',').map(Number);
  if (values['scale-large']) sizes.scaleCerts = [...sizes.scaleCerts, 100_000];
  if (values['fleet-certs']) sizes.fleetCerts = Number(values['fleet-certs']);
  const only = new Set((values.only ?? 'serve,prefetch,scale,fleet').split(','));
  // The command that reproduces this run's figures, printed with them.
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim().replace(/ --$/, '');
  const started = new Date();
  const results: Results = {};
  const errors: Record<string, string> = {};
  const say = (s: string): void => void process.stderr.write(`[bench ${((Date.now() - started.getTime()) / 1000).toFixed(0)}s] ${s}\n`);
  const attempt = async (name: string, fn: () => Promise<void>): Promise<void> => {
    if (!only.has(name)) return;
    say(`${name}...`);
    try {
      await fn();
    } catch (e) {
      errors[name] = e instanceof Error ? (e.stack ?? e.message) : String(e);
      say(`${name} FAILED: ${errors[name]}`);
    }
  };
  const profRoot = values['cpu-prof'] ? await mkdtemp(join(tmpdir(), 'staplerd-bench-prof-')) : undefined;
  /** Daemon environment for one case: with --cpu-prof, a .cpuprofile per daemon process in <root>/<case>. */
  const argsFor = (name: string): string[] => (profRoot ? ['--cpu-prof', `--cpu-prof-dir=${join(profRoot, name)}`] : []);
  const timing = { connections: sizes.connections, durationSec: sizes.durationSec, warmupSec: sizes.warmupSec };

  const wrk = { pairs: sizes.wrkPairs, durationSec: sizes.durationSec, warmupSec: sizes.warmupSec };
  await attempt('serve', async () => {
    results.serve = await serveCases({ certs: sizes.serveCerts, timing, rounds: sizes.rounds, logLevel: LOG_LEVEL, nodeArgs: argsFor('serve'), bareNodeArgs: argsFor('serve-bare'), wrk });
  });
  if (!only.has('serve')) {
    await attempt('wrk', async () => {
      results.serve = await serveCases({ certs: sizes.serveCerts, timing, rounds: sizes.rounds, logLevel: LOG_LEVEL, nodeArgs: argsFor('serve'), bareNodeArgs: argsFor('serve-bare'), wrk, wrkOnly: true });
    });
  }
  await attempt('prefetch', async () => {
    const r = await prefetchAndStartup({
      certs: sizes.prefetchCerts, concurrency: sizes.fetchConcurrency, restarts: sizes.restarts, logLevel: LOG_LEVEL,
      prefetchNodeArgs: argsFor('prefetch'), startupNodeArgs: argsFor('startup'),
    });
    results.prefetch = r.prefetch;
    results.startup = r.startup;
  });
  await attempt('scale', async () => {
    results.scale = [];
    for (const certs of sizes.scaleCerts) {
      say(`scale: ${certs} certificates`);
      results.scale.push(await scaleCase({ certs, idleSec: sizes.idleSec, concurrency: sizes.fetchConcurrency, logLevel: LOG_LEVEL, nodeArgs: argsFor(`scale-${certs}`) }));
    }
  });
  await attempt('fleet', async () => {
    results.fleet = await fleetCase({ certs: sizes.fleetCerts, concurrency: sizes.fetchConcurrency, logLevel: LOG_LEVEL, nodeArgs: argsFor('fleet') });
    if (results.fleet.kind === 'skipped') say(`fleet case skipped: ${results.fleet.reason}`);
  });

  const targets = judge(results);
  const mode = values.quick ? 'quick (smoke sizes; targets are stated for the full sizes)' : 'full';
  const header = `staplerd bench, ${mode}: ${started.toISOString()}, node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ` +
    `${sizes.connections} connections, serve rows ${sizes.rounds} x (${sizes.warmupSec} s warm-up + ${sizes.durationSec} s) per server, fetch concurrency ${sizes.fetchConcurrency}`;
  const profiles: Record<string, ProfileLine[]> = {};
  let text = render(results, targets, `${header}\ncommand: ${command}`);
  for (const name of profRoot ? ['serve', 'serve-bare', 'prefetch', 'startup', ...sizes.scaleCerts.map((n) => `scale-${n}`), 'fleet'] : []) {
    const window = name.startsWith('serve') ? results.serve?.loadWindowUs : undefined;
    const p = await summariseProfiles(join(profRoot!, name), 25, window).catch(() => undefined);
    if (!p) continue;
    profiles[name] = p.top;
    // The bare server's profile, taken in the same windows, is the reference for the serve case's.
    const who = name === 'serve-bare' ? 'bare node server (reference), serve case' : `staplerd, ${name} case`;
    text += `\n\nCPU profile of the ${who}, self time:\n${p.text}`;
  }
  process.stdout.write(`${text}\n`);
  for (const [name, err] of Object.entries(errors)) process.stdout.write(`\ncase ${name} FAILED: ${err.split('\n')[0]}\n`);

  await mkdir(RESULTS_DIR, { recursive: true });
  const json = { mode: values.quick ? 'quick' : 'full', startedAt: started.toISOString(), finishedAt: new Date().toISOString(), node: process.version, cpus: cpus().length, sizes, results, targets, errors, profiles };
  await writeFile(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`\nwritten: ${join(RESULTS_DIR, 'latest.json')}\n`);
  if (Object.keys(errors).length > 0) return 1;
  return values.strict && targets.some((t) => !t.pass) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
