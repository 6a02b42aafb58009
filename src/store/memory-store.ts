import { LRUCache } from 'lru-cache';
import type { StapleStore, StoredStaple } from './store.js';

/** Bounded in-memory store (entries and bytes), for runs without a dataDir and as a test double. */
export class MemoryStapleStore implements StapleStore {
  readonly #cache: LRUCache<string, StoredStaple>;

  constructor(o: { maxEntries: number; maxBytes: number }) {
    if (!(o.maxEntries > 0) || !(o.maxBytes > 0)) throw new RangeError('MemoryStapleStore: maxEntries and maxBytes must be > 0');
    this.#cache = new LRUCache({ max: o.maxEntries, maxSize: o.maxBytes, sizeCalculation: (s) => s.der.byteLength + 256 });
  }

  async get(fp: string): Promise<StoredStaple | undefined> {
    return this.#cache.get(fp);
  }

  async put(fp: string, s: StoredStaple): Promise<void> {
    this.#cache.set(fp, { der: s.der.slice(), meta: s.meta ? { ...s.meta } : undefined });
  }

  async delete(fp: string): Promise<void> {
    this.#cache.delete(fp);
  }

  async keys(): Promise<Set<string>> {
    return new Set(this.#cache.keys());
  }
}
