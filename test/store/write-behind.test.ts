import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { WriteBehind } from '../../src/store/write-behind.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('writes after the delay, once per key with the latest operation', async () => {
  const done: string[] = [];
  const w = new WriteBehind({ delayMs: 30, concurrency: 2, log });
  w.enqueue('a', async () => void done.push('a1'));
  w.enqueue('a', async () => void done.push('a2'));
  w.enqueue('b', async () => void done.push('b1'));
  assert.equal(done.length, 0);
  await sleep(120);
  assert.deepEqual(done.sort(), ['a2', 'b1']);
});

test('while defer() is true writes wait, but never longer than maxDelayMs after the oldest', async () => {
  const done: number[] = [];
  let busy = true;
  const w = new WriteBehind({ delayMs: 20, maxDelayMs: 200, defer: () => busy, concurrency: 2, log });
  const t0 = performance.now();
  w.enqueue('a', async () => void done.push(performance.now() - t0));
  await sleep(100);
  assert.equal(done.length, 0, 'held back while busy');
  await sleep(250);
  assert.equal(done.length, 1, 'written once maxDelayMs had passed although still busy');
  assert.ok(done[0]! >= 150, `written at ${done[0]} ms`);
  busy = false;
  const t1 = performance.now();
  w.enqueue('b', async () => void done.push(performance.now() - t1));
  await sleep(100);
  assert.equal(done.length, 2, 'written after delayMs once no longer busy');
  assert.ok(done[1]! < 90, `written at ${done[1]} ms`);
});

test('flush writes what is pending at once, even while deferred', async () => {
  const done: string[] = [];
  const w = new WriteBehind({ delayMs: 10_000, maxDelayMs: 60_000, defer: () => true, concurrency: 1, log });
  w.enqueue('a', async () => void done.push('a'));
  await w.flush();
  assert.deepEqual(done, ['a']);
});

test('onDrained reports how many writes a drain ran', async () => {
  const drained: number[] = [];
  const w = new WriteBehind({ delayMs: 10, concurrency: 4, onDrained: (n) => drained.push(n), log });
  for (let i = 0; i < 25; i++) w.enqueue(`k${i}`, async () => undefined);
  w.enqueue('k0', async () => undefined);
  await sleep(80);
  assert.deepEqual(drained, [25]);
});
