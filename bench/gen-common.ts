/**
 * What every load generator child shares: the result shape, percentiles, and the line protocol that
 * lets the parent read CPU counters exactly over the measured window:
 *   {"phase":"measure"} when measuring starts, {"phase":"done"} when it ends, then the LoadResult line;
 *   the child exits only when the parent closes its stdin (so /proc/<pid> is still readable).
 */
export interface LoadResult {
  requests: number;
  durationSec: number;
  rps: number;
  /** Latencies in ms. */
  p50: number;
  p99: number;
  /** HTTP status -> count; `errors` are connection errors, timeouts and unparsable answers. */
  statusCounts: Record<string, number>;
  errors: number;
}

export const say = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Builds the result from the measured window's latencies and statuses. */
export function resultOf(latencies: number[], statusCounts: Record<string, number>, errors: number, durationSec: number): LoadResult {
  const sorted = Float64Array.from(latencies).sort();
  return { requests: latencies.length, durationSec, rps: latencies.length / durationSec, p50: percentile(sorted, 50), p99: percentile(sorted, 99), statusCounts, errors };
}

/** Prints the result and exits once the parent has closed stdin. */
export function finish(result: LoadResult): void {
  say(result);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

/** Calls `onMeasure` and `onDone` at the window's edges, announcing them to the parent. */
export function window(warmupSec: number, durationSec: number, onMeasure: () => void, onDone: () => void): void {
  setTimeout(() => {
    say({ phase: 'measure' });
    onMeasure();
    setTimeout(() => {
      say({ phase: 'done' });
      onDone();
    }, durationSec * 1000);
  }, warmupSec * 1000);
}
