import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes `data` to `path` so that a reader (nginx, HAProxy, our own restart) sees either the old or the
 * new complete file, never a partial one, even across SIGKILL or power loss: temp file in the same
 * directory, fsync, rename over. `durable` also fsyncs the directory so that the rename itself survives
 * a power loss; without it a crash may bring back the old file, never a torn one. Staples skip it: an older
 * staple after a power loss is re-verified and refreshed at start, and 10,000 directory fsyncs at start-up
 * cost seconds.
 */
export async function atomicWrite(path: string, data: Uint8Array | string, mode = 0o644, o: { durable?: boolean; sync?: boolean } = {}): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    if (o.sync !== false) await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  if (o.durable !== false) await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Temp files left behind by a crash between open and rename: safe to delete at start. */
export function isAtomicTemp(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp');
}
