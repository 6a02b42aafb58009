import { test } from 'node:test';
import assert from 'node:assert/strict';
import { releaseMemory } from '../../src/util/memory.js';

test('releaseMemory obtains V8 gc at run time and runs a full collection that frees garbage', async () => {
  let junk: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `garbage-${i}` }));
  const before = process.memoryUsage().heapUsed;
  junk = undefined;
  assert.equal(junk, undefined);
  assert.equal(await releaseMemory(), true, 'gc is available without --expose-gc on the command line');
  assert.ok(process.memoryUsage().heapUsed < before, `heap used ${process.memoryUsage().heapUsed} < ${before}`);
});
