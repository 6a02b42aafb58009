#!/usr/bin/env node
// Runs every compiled test file with node's own test runner.
// Node 20 has no glob support in `node --test`, and later versions stopped searching directories,
// so the file list is built here and passed explicitly: the same command works on Node 20 and the LTS.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const filter = process.argv.slice(2);

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

let files = collect(root);
if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('run-tests: no test files found under dist/test (did the build run?)');
  process.exit(1);
}
// Which Node ran the suite, in the TAP output itself: CI runs it on more than one (.ci/run).
console.log(`# run-tests: Node ${process.version} (${process.execPath}), ${files.length} test file(s)`);
// No --test-force-exit: with file concurrency it silently drops verdicts (nodejs/node#64833: a Node 24 CI
// run here reported 539 of 558 tests, exit 0). A file that leaves a handle open after a failure (a failed
// fleet test's Redis clients) is bounded by .ci/run's timeout around the whole run instead.
const args = ['--test', '--test-concurrency=3', ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
