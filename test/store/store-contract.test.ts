import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskStapleStore } from '../../src/store/disk-store.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import type { StapleStore } from '../../src/store/store.js';

const fp = (c: string) => c.repeat(64);
const meta = { name: 'www', fetchedAt: '2026-11-24T00:00:00.000Z', url: 'http://127.0.0.1:9/', status: 'good', thisUpdate: 'x', nextUpdate: 'y' };
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** One contract, run against every StapleStore implementation. */
function contract(name: string, make: () => Promise<StapleStore>) {
  describe(`StapleStore contract: ${name}`, () => {
    test('returns undefined for a fingerprint it never stored', async () => {
      assert.equal(await (await make()).get(fp('a')), undefined);
    });
    test('returns what was put, with its metadata', async () => {
      const s = await make();
      await s.put(fp('b'), { der: Uint8Array.from([1, 2, 3]), meta });
      const got = await s.get(fp('b'), { meta: true });
      assert.deepEqual([...got!.der], [1, 2, 3]);
      assert.deepEqual(got!.meta, meta);
    });
    test('a later put replaces an earlier one', async () => {
      const s = await make();
      await s.put(fp('c'), { der: Uint8Array.from([1]), meta });
      await s.put(fp('c'), { der: Uint8Array.from([2, 2]), meta });
      assert.deepEqual([...(await s.get(fp('c')))!.der], [2, 2]);
    });
    test('delete removes, and deleting twice is fine', async () => {
      const s = await make();
      await s.put(fp('d'), { der: Uint8Array.from([1]), meta });
      await s.delete(fp('d'));
      await s.delete(fp('d'));
      assert.equal(await s.get(fp('d')), undefined);
    });
    test('keys() lists exactly the fingerprints held', async () => {
      const s = await make();
      assert.deepEqual([...(await s.keys())], []);
      await s.put(fp('1'), { der: Uint8Array.from([1]), meta });
      await s.put(fp('2'), { der: Uint8Array.from([2]), meta: undefined });
      await s.delete(fp('1'));
      assert.deepEqual([...(await s.keys())].sort(), [fp('2')]);
    });
    test('stored bytes do not change when the caller mutates its buffer', async () => {
      const s = await make();
      const der = Uint8Array.from([7, 7]);
      await s.put(fp('e'), { der, meta });
      der[0] = 0;
      assert.deepEqual([...(await s.get(fp('e')))!.der], [7, 7]);
    });
  });
}

async function disk(): Promise<DiskStapleStore> {
  const d = await mkdtemp(join(tmpdir(), 'staplerd-store-'));
  dirs.push(d);
  const s = new DiskStapleStore(d);
  await s.open();
  return s;
}

contract('memory', async () => new MemoryStapleStore({ maxEntries: 100, maxBytes: 1 << 20 }));
contract('disk', disk);

describe('DiskStapleStore', () => {
  test('keys() ignores metadata, temp files and names that are not fingerprints', async () => {
    const s = await disk();
    await s.put(fp('f'), { der: Uint8Array.from([1]), meta });
    for (const name of [`${fp('0')}.json`, `.${fp('9')}.der.abc.tmp`, 'README.der', `${fp('A')}.der`]) await writeFile(join(s.dir, name), 'x');
    assert.deepEqual([...(await s.keys())], [fp('f')]);
  });

  test('refuses keys that are not fingerprints, so no path can escape the directory', async () => {
    const s = await disk();
    await assert.rejects(s.put('../../etc/passwd', { der: Uint8Array.from([1]), meta }), /bad key/);
  });
  test('keeps the staple when its metadata file is torn, and cleans crash leftovers on open', async () => {
    const s = await disk();
    await s.put(fp('f'), { der: Uint8Array.from([5]), meta });
    await writeFile(join(s.dir, `${fp('f')}.json`), '{"name": "ww');
    await writeFile(join(s.dir, `.${fp('f')}.der.abc123.tmp`), 'partial');
    const got = await s.get(fp('f'), { meta: true });
    assert.deepEqual([...got!.der], [5]);
    assert.equal(got!.meta, undefined);
    await s.open();
    assert.deepEqual((await readdir(s.dir)).sort(), [`${fp('f')}.der`, `${fp('f')}.json`]);
  });
});

describe('MemoryStapleStore', () => {
  test('is bounded by entries', async () => {
    const s = new MemoryStapleStore({ maxEntries: 2, maxBytes: 1 << 20 });
    for (const c of ['1', '2', '3']) await s.put(fp(c), { der: Uint8Array.from([1]), meta });
    assert.equal(await s.get(fp('1')), undefined);
    assert.ok(await s.get(fp('3')));
  });
});
