import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs, isServable, nextRefreshAt, servableUntil, unknownRetryMs, type RefreshPolicy } from '../../src/pki/freshness.js';

const p: RefreshPolicy = { fraction: 0.5, jitter: 0.1, minIntervalSeconds: 60, backoffInitialSeconds: 30, backoffMaxSeconds: 3600, marginSeconds: 300 };
const H = 3600_000;
const t0 = Date.UTC(2026, 10, 24, 0, 0, 0);
const w = { thisUpdate: new Date(t0), nextUpdate: new Date(t0 + 24 * H) };

test('refreshes at half the validity window, minus up to the jitter fraction', () => {
  const now = new Date(t0 + H);
  assert.equal(nextRefreshAt(w, now, p, () => 0).getTime(), t0 + 12 * H);
  const early = nextRefreshAt(w, now, p, () => 0.999).getTime();
  assert.ok(early < t0 + 12 * H && early > t0 + 12 * H - 0.1 * 24 * H, new Date(early).toISOString());
});

test('never schedules sooner than the floor, even for an old staple', () => {
  const now = new Date(t0 + 20 * H);
  assert.equal(nextRefreshAt(w, now, p, () => 0).getTime(), now.getTime() + 60_000);
});

test('waits out max-age but leaves a retry interval before the staple stops being servable', () => {
  const now = new Date(t0 + H);
  assert.equal(nextRefreshAt(w, now, p, () => 0, 14 * 3600).getTime(), now.getTime() + 14 * H);
  const capped = nextRefreshAt(w, now, p, () => 0, 48 * 3600).getTime();
  assert.equal(capped, t0 + 24 * H - 300_000 - 30_000);
});

test('backs off exponentially with jitter up to the cap, and honours Retry-After', () => {
  const lo = () => 0;
  const hi = () => 0.999999;
  assert.equal(backoffMs(1, p, lo), 15_000);
  assert.ok(Math.abs(backoffMs(1, p, hi) - 30_000) < 5);
  assert.equal(backoffMs(3, p, lo), 60_000);
  assert.ok(backoffMs(20, p, hi) <= 3_600_000);
  assert.equal(backoffMs(200, p, lo), 1_800_000);
  assert.equal(backoffMs(1, p, lo, 600), 600_000);
  assert.equal(backoffMs(1, p, lo, 99_999), 3_600_000);
});

test('a staple is servable only while now < nextUpdate − margin', () => {
  assert.equal(isServable(w.nextUpdate, new Date(t0 + 24 * H - 301_000), 300), true);
  assert.equal(isServable(w.nextUpdate, new Date(t0 + 24 * H - 300_000), 300), false);
});

test('the margin is at most a tenth of a short validity window, and the full margin for a long one', () => {
  const short = { thisUpdate: new Date(t0), nextUpdate: new Date(t0 + 4 * 60_000) };
  assert.equal(servableUntil(short.nextUpdate, 300, short.thisUpdate), t0 + 240_000 - 24_000);
  assert.equal(isServable(short.nextUpdate, new Date(t0 + 60_000), 300, short.thisUpdate), true, 'a 4-minute response is servable');
  assert.equal(servableUntil(w.nextUpdate, 300, w.thisUpdate), t0 + 24 * H - 300_000);
  assert.equal(servableUntil(w.nextUpdate, 300), t0 + 24 * H - 300_000, 'without thisUpdate: the configured margin');
  const at = nextRefreshAt(short, new Date(t0 + 10_000), { ...p, minIntervalSeconds: 0 }, () => 0).getTime();
  assert.equal(at, t0 + 120_000, 'refreshed at half its window, well before it stops being servable');
});

test('after an unknown answer: asks again at 1, 2, 4, 8 minutes, then at the failure cap', () => {
  const lo = () => 0;
  assert.deepEqual([1, 2, 3, 4].map((n) => unknownRetryMs(n, p, lo)), [60_000, 120_000, 240_000, 480_000]);
  assert.equal(unknownRetryMs(10, p, lo), 3_600_000);
  assert.equal(unknownRetryMs(1000, p, lo), 3_600_000);
  const jittered = unknownRetryMs(1, p, () => 0.999);
  assert.ok(jittered > 54_000 && jittered < 60_000, String(jittered));
});
