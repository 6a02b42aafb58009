import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../../src/fetch/scheduler.js';
import { FakeClock, settle } from '../helpers/clock.js';

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

test('runs a job when due and reschedules it at the time the job returns', async () => {
  const clock = new FakeClock(0);
  const runs: Array<[string, number]> = [];
  const s = new Scheduler({ clock, concurrency: 4, run: async (k) => (runs.push([k, clock.now().getTime()]), new Date(clock.now().getTime() + 1000)) });
  s.schedule('a', new Date(500));
  await clock.advance(499);
  assert.deepEqual(runs, []);
  await clock.advance(1);
  assert.deepEqual(runs, [['a', 500]]);
  assert.equal(s.dueAt('a')?.getTime(), 1500);
  await clock.advance(1000);
  assert.deepEqual(runs.map((r) => r[1]), [500, 1500]);
  await s.stop();
});

test('keeps one timer for any number of keys', async () => {
  const clock = new FakeClock(0);
  const s = new Scheduler({ clock, concurrency: 2, run: async () => null });
  for (let i = 0; i < 10_000; i++) s.schedule(`k${i}`, new Date(1000 + i));
  assert.equal(clock.pending, 1);
  assert.equal(s.size, 10_000);
  await s.stop();
  assert.equal(clock.pending, 0);
});

test('never runs more jobs at once than its concurrency', async () => {
  const clock = new FakeClock(0);
  let active = 0;
  let peak = 0;
  let done = 0;
  const g = gate();
  const s = new Scheduler({
    clock,
    concurrency: 3,
    run: async () => {
      active++;
      peak = Math.max(peak, active);
      await g.p;
      active--;
      done++;
      return null;
    },
  });
  for (let i = 0; i < 20; i++) s.schedule(`k${i}`, new Date(0));
  await clock.advance(0);
  assert.equal(active, 3);
  g.open();
  for (let i = 0; i < 50 && done < 20; i++) await clock.advance(10);
  assert.equal(done, 20);
  assert.equal(peak, 3);
  await s.stop();
});

test('runNow joins a job already running instead of starting another', async () => {
  const clock = new FakeClock(0);
  let calls = 0;
  const g = gate();
  const s = new Scheduler({ clock, concurrency: 4, run: async () => (calls++, await g.p, null) });
  const all = Array.from({ length: 5 }, () => s.runNow('x'));
  await settle();
  g.open();
  await Promise.all(all);
  assert.equal(calls, 1);
  await s.stop();
});

test('a removed key does not run; a rescheduled key runs at its new time only', async () => {
  const clock = new FakeClock(0);
  const runs: string[] = [];
  const s = new Scheduler({ clock, concurrency: 1, run: async (k) => (runs.push(`${k}@${clock.now().getTime()}`), null) });
  s.schedule('gone', new Date(100));
  s.schedule('moved', new Date(100));
  s.remove('gone');
  s.schedule('moved', new Date(300));
  await clock.advance(1000);
  assert.deepEqual(runs, ['moved@300']);
  await s.stop();
});

test('a job that throws is reported and dropped, the scheduler keeps going', async () => {
  const clock = new FakeClock(0);
  const errors: string[] = [];
  const runs: string[] = [];
  const s = new Scheduler({
    clock,
    concurrency: 1,
    run: async (k) => {
      runs.push(k);
      if (k === 'bad') throw new Error('boom');
      return null;
    },
    onError: (k) => errors.push(k),
  });
  s.schedule('bad', new Date(10));
  s.schedule('good', new Date(20));
  await clock.advance(100);
  assert.deepEqual(errors, ['bad']);
  assert.deepEqual(runs, ['bad', 'good']);
  await s.stop();
});

test('stop waits for running jobs and schedules nothing afterwards', async () => {
  const clock = new FakeClock(0);
  const g = gate();
  let finished = false;
  const s = new Scheduler({ clock, concurrency: 1, run: async () => (await g.p, (finished = true), new Date(5)) });
  s.schedule('a', new Date(0));
  await clock.advance(0);
  const stopped = s.stop();
  g.open();
  await stopped;
  assert.equal(finished, true);
  assert.equal(s.size, 0);
  assert.equal(clock.pending, 0);
});

test('busy while every slot is taken (a burst), not otherwise', async () => {
  const clock = new FakeClock(0);
  const g = gate();
  const s = new Scheduler({ clock, concurrency: 2, run: async () => (await g.p, null) });
  assert.equal(s.busy, false);
  const one = s.runNow('a');
  assert.equal(s.busy, false, 'one of two slots');
  const two = s.runNow('b');
  assert.equal(s.busy, true, 'both slots');
  g.open();
  await Promise.all([one, two]);
  await settle();
  assert.equal(s.busy, false);
  await s.stop();
});
