import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StaplerError } from '../errors.js';
import { atomicWrite, isAtomicTemp } from '../util/atomic-write.js';
import { isFingerprint, type StapleMeta, type StapleStore, type StoredStaple } from './store.js';

/**
 * Staples under `<dataDir>/staples/<fingerprint>.der` with a `.json` of metadata beside it. Each file is
 * written atomically; the DER is written first and is the only thing load decisions rest on, so a crash
 * between the two writes leaves a complete staple with stale metadata at worst.
 */
export class DiskStapleStore implements StapleStore {
  readonly #dir: string;

  constructor(dataDir: string) {
    if (!dataDir) throw new RangeError('DiskStapleStore: dataDir is required');
    this.#dir = join(dataDir, 'staples');
  }

  get dir(): string {
    return this.#dir;
  }

  /** Creates the directory and removes temp files a crash left behind. */
  async open(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o750 });
    for (const name of await readdir(this.#dir)) {
      if (isAtomicTemp(name)) await unlink(join(this.#dir, name)).catch(() => undefined);
    }
  }

  async get(fp: string, o: { meta?: boolean } = {}): Promise<StoredStaple | undefined> {
    this.#check(fp);
    let der: Buffer;
    try {
      der = await readFile(join(this.#dir, `${fp}.der`));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StaplerError('STORE_IO', `reading ${fp}.der`, { cause: e });
    }
    return { der: new Uint8Array(der), meta: o.meta ? await this.#meta(fp) : undefined };
  }

  async put(fp: string, s: StoredStaple): Promise<void> {
    this.#check(fp);
    try {
      await atomicWrite(join(this.#dir, `${fp}.der`), s.der, 0o640, { durable: false });
      // Metadata is informational (load decisions rest on the DER alone): atomic, but not fsynced.
      if (s.meta) await atomicWrite(join(this.#dir, `${fp}.json`), `${JSON.stringify(s.meta, null, 2)}\n`, 0o640, { durable: false, sync: false });
    } catch (e) {
      throw new StaplerError('STORE_IO', `writing ${fp}`, { cause: e });
    }
  }

  async delete(fp: string): Promise<void> {
    this.#check(fp);
    for (const ext of ['.der', '.json']) {
      await unlink(join(this.#dir, fp + ext)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw new StaplerError('STORE_IO', `deleting ${fp}${ext}`, { cause: e });
      });
    }
  }

  async keys(): Promise<Set<string>> {
    const out = new Set<string>();
    try {
      for (const name of await readdir(this.#dir)) {
        if (name.endsWith('.der') && isFingerprint(name.slice(0, -4))) out.add(name.slice(0, -4));
      }
    } catch (e) {
      throw new StaplerError('STORE_IO', `listing ${this.#dir}`, { cause: e });
    }
    return out;
  }

  async #meta(fp: string): Promise<StapleMeta | undefined> {
    try {
      return JSON.parse(await readFile(join(this.#dir, `${fp}.json`), 'utf8')) as StapleMeta;
    } catch {
      return undefined; // metadata is informational; a missing or torn one does not cost the staple
    }
  }

  #check(fp: string): void {
    // Keys become file names: refuse anything that is not a hex fingerprint (no path tricks).
    if (!isFingerprint(fp)) throw new StaplerError('STORE_IO', `bad key ${JSON.stringify(fp)}`);
  }
}
