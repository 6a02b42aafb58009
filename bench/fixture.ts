/**
 * The world each case runs in: a temp dir, a demo CA, the project's responder in a child process,
 * N leaves written as PEM bundles into a watched directory, and a staplerd config pointing at them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPki } from '../src/demo/index.js';
import { createMinter, writeBundles, writeSerials, type Leaf, type Minter } from './certs.js';
import { writeDaemonConfig } from './daemon.js';
import { benchScript, epochMs, spawnNode, type Child } from './proc.js';
import { toPkiEntry, type PkiFile } from './pki-file.js';

export interface FixtureOptions {
  label: string;
  count: number;
  /** Leaves minted but not configured: staplerd does not know them (answers unauthorized). */
  unknown?: number;
  concurrency: number;
  logLevel: string;
}

export interface Fixture {
  tmp: string;
  minter: Minter;
  upstream: Child;
  upstreamUrl: string;
  leaves: Leaf[];
  unknown: Leaf[];
  configPath: string;
  certsDir: string;
  dataDir: string;
  /** Setup cost: minting (signing) and writing the bundles, ms. */
  mintMs: number;
  writeMs: number;
  cleanup(): Promise<void>;
}

export async function createFixture(o: FixtureOptions): Promise<Fixture> {
  const tmp = await mkdtemp(join(tmpdir(), `staplerd-bench-${o.label}-`));
  const now = new Date();
  const pki = createDemoPki({ now, ocspUrl: 'http://127.0.0.1:9/unused' });
  const pkiFile: PkiFile = { issuer: toPkiEntry(pki.issuer), signer: toPkiEntry(pki.ocspSigner), validitySeconds: 3600 };
  await writeFile(join(tmp, 'pki.json'), JSON.stringify(pkiFile));
  const upstream = spawnNode(benchScript('responder-child'), [join(tmp, 'pki.json')]);
  const cleanup = async (): Promise<void> => {
    await upstream.stop();
    await rm(tmp, { recursive: true, force: true });
  };
  try {
    const { url } = await upstream.waitLine<{ url: string }>((l) => typeof l.url === 'string', 30_000);
    const minter = createMinter({ pki, now, ocspUrl: url });
    let t = epochMs();
    const leaves = Array.from({ length: o.count }, (_, i) => minter.mint(i));
    const unknown = Array.from({ length: o.unknown ?? 0 }, (_, i) => minter.mint(o.count + i));
    const mintMs = epochMs() - t;
    t = epochMs();
    const certsDir = join(tmp, 'certs');
    await writeBundles(certsDir, leaves, pki.issuer.pem);
    const writeMs = epochMs() - t;
    await writeSerials(join(tmp, 'serials.txt'), leaves);
    await upstream.ask(`serials ${join(tmp, 'serials.txt')}`);
    const dataDir = join(tmp, 'var');
    const configPath = await writeDaemonConfig({ dir: tmp, certsDir, dataDir, concurrency: o.concurrency, logLevel: o.logLevel });
    return { tmp, minter, upstream, upstreamUrl: url, leaves, unknown, configPath, certsDir, dataDir, mintMs, writeMs, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** RFC 6960 OCSPResponseStatus of a response body, or -1 when it is not an OCSPResponse. */
export function ocspStatusOf(body: Uint8Array): number {
  if (body.length < 5 || body[0] !== 0x30) return -1;
  const lenBytes = body[1]! < 0x80 ? 0 : body[1]! & 0x7f;
  const at = 2 + lenBytes;
  return body[at] === 0x0a && body[at + 1] === 0x01 ? body[at + 2]! : -1;
}
