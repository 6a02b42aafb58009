/**
 * Summary of V8 .cpuprofile files (node --cpu-prof): self time per function, highest first, and per
 * package/area, so a missed serve target comes with where the time went.
 * Also runnable: node dist/bench/profile.js DIR [TOP]
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileLine {
  fn: string;
  where: string;
  selfMs: number;
  pct: number;
}

function whereOf(url: string, line: number): string {
  if (!url) return '';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url);
  const short = m ? `${m[1]}:${m[2]}` : url.replace(/^file:\/\/.*?\/dist\//, 'dist/').replace(/^node:/, 'node:');
  return `${short}:${line + 1}`;
}

/** "fastify", "node:internal", "staplerd", "(garbage collector)", ... */
function areaOf(p: ProfileLine): string {
  if (!p.where) return p.fn;
  const m = /^((?:@[^/]+\/)?[^/:]+):/.exec(p.where);
  if (p.where.startsWith('dist/')) return 'staplerd (dist/)';
  if (p.where.startsWith('node:')) return 'node: internals';
  return m ? m[1]! : p.where;
}

/** CLOCK_MONOTONIC in µs: the clock of .cpuprofile timestamps (V8 TimeTicks) on Linux. */
export const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n);

/** `window` ([from, to] in monotonicMicros) keeps only the samples taken inside it. */
export async function summariseProfiles(dir: string, top: number, window?: [number, number]): Promise<{ top: ProfileLine[]; text: string } | undefined> {
  const files = (await readdir(dir)).filter((n) => n.endsWith('.cpuprofile'));
  if (files.length === 0) return undefined;
  const self = new Map<string, ProfileLine>();
  let total = 0;
  for (const file of files) {
    const prof = JSON.parse(await readFile(join(dir, file), 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    let at = prof.startTime;
    prof.samples.forEach((id, i) => {
      const delta = prof.timeDeltas[i] ?? 0;
      at += delta;
      if (window && (at < window[0] || at > window[1])) return;
      const ms = delta / 1000;
      const cf = byId.get(id)?.callFrame;
      if (!cf) return;
      const where = whereOf(cf.url, cf.lineNumber);
      const key = `${cf.functionName}|${where}`;
      const e = self.get(key) ?? { fn: cf.functionName || '(anonymous)', where, selfMs: 0, pct: 0 };
      e.selfMs += ms;
      total += ms;
      self.set(key, e);
    });
  }
  const lines = [...self.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const l of lines) l.pct = (l.selfMs / total) * 100;
  const areas = new Map<string, number>();
  for (const l of lines) areas.set(areaOf(l), (areas.get(areaOf(l)) ?? 0) + l.selfMs);
  const busy = total - (self.get('(idle)|')?.selfMs ?? 0);
  const fmt = (ms: number): string => `${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%`;
  const text = [
    `  ${files.length} profile(s) in ${dir}${window ? ' (load windows only)' : ''}; ${total.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms not idle`,
    '  by area:',
    ...[...areas.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([a, ms]) => `    ${fmt(ms)}  ${a}`),
    '  by function:',
    ...lines.slice(0, top).map((l) => `    ${fmt(l.selfMs)}  ${l.fn}  ${l.where}`),
  ].join('\n');
  return { top: lines.slice(0, top), text };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: node dist/bench/profile.js DIR [TOP]');
  void summariseProfiles(dir, Number(process.argv[3] ?? '30')).then((s) => process.stdout.write(`${s?.text ?? 'no .cpuprofile files'}\n`));
}
