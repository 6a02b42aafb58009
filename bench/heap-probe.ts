/**
 * Where the memory of N held certificates goes: prefetch N, restart over the persisted staples with
 * --heapsnapshot-signal, write a heap snapshot once ready, and summarise it by constructor (self size and
 * count per certificate). Usage: node dist/bench/heap-probe.js [N] [OUT_DIR]
 * or node dist/bench/heap-probe.js --summarise FILE.heapsnapshot N
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnDaemon, waitPersisted, waitReady } from './daemon.js';
import { createFixture } from './fixture.js';
import { sleep } from './proc.js';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 10_000);
  const out = process.argv[3] ?? process.cwd();
  const fx = await createFixture({ label: 'heap', count: n, concurrency: 64, logLevel: 'info' });
  try {
    const first = await spawnDaemon(fx.configPath);
    await waitReady(first, 50, 600_000);
    await waitPersisted(fx.dataDir, n, 300_000);
    await first.child.stop();
    const d = await spawnDaemon(fx.configPath, ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${out}`]);
    const r = await waitReady(d, 50, 600_000);
    await sleep(2000);
    process.kill(d.child.pid, 'SIGUSR2');
    let file: string | undefined;
    for (let i = 0; i < 600 && !file; i++) {
      await sleep(500);
      file = (await readdir(out)).find((f) => f.endsWith('.heapsnapshot'));
    }
    // The file appears as soon as writing starts: wait until its size stops changing (a loaded machine
    // takes seconds to write 100 MB).
    for (let last = -1, size = 0; size !== last || size === 0; ) {
      await sleep(2000);
      last = size;
      size = (await stat(join(out, file!))).size;
    }
    await d.child.stop();
    console.log(`ready RSS ${r.rssMB.toFixed(1)} MB; snapshot ${file}`);
    await summarise(join(out, file!), n);
  } finally {
    await fx.cleanup();
  }
}

async function summarise(path: string, n: number): Promise<void> {
  {
    const snap = JSON.parse(await readFile(path, 'utf8')) as Snapshot;
    const f = snap.snapshot.meta.node_fields;
    const types = snap.snapshot.meta.node_types[0];
    const step = f.length;
    const iType = f.indexOf('type'), iName = f.indexOf('name'), iSize = f.indexOf('self_size');
    const by = new Map<string, { size: number; count: number }>();
    let total = 0;
    for (let i = 0; i < snap.nodes.length; i += step) {
      const type = types[snap.nodes[i + iType]!]!;
      const name = type === 'object' || type === 'native' ? snap.strings[snap.nodes[i + iName]!]! : `(${type})`;
      const size = snap.nodes[i + iSize]!;
      total += size;
      const e = by.get(name) ?? { size: 0, count: 0 };
      e.size += size;
      e.count++;
      by.set(name, e);
    }
    console.log(`heap total ${(total / 1e6).toFixed(1)} MB, ${(total / n).toFixed(0)} B per certificate`);
    for (const [name, e] of [...by].sort((a, b) => b[1].size - a[1].size).slice(0, 40)) {
      console.log(`${(e.size / 1e6).toFixed(2).padStart(8)} MB ${(e.size / n).toFixed(0).padStart(6)} B/cert ${(e.count / n).toFixed(2).padStart(6)}/cert  ${name.slice(0, 80)}`);
    }
  }
}

// `heap-probe.js --summarise FILE N`: only the summary of a snapshot already written.
if (process.argv[2] === '--summarise') void summarise(process.argv[3]!, Number(process.argv[4]));
else void main();
