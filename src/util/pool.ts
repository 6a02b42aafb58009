/**
 * Runs `fn` over `items` with at most `limit` calls in flight, in order of start; resolves when all are
 * done. `fn` must not throw (each caller records its own failures).
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  if (!(limit >= 1)) throw new RangeError('forEachLimited: limit must be >= 1');
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i]!, i);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
