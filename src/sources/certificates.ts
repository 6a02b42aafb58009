import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { StaplerError } from '../errors.js';
import { bytesEqual } from '../pki/bytes.js';
import { compactLeaf, isIssuedBy, parseCertificate, type CertInfo } from '../pki/certificate.js';
import { certificatesFromPem } from '../pki/pem.js';
import type { DirectoryConfig } from '../config/schema.js';
import { forEachLimited } from '../util/pool.js';

/** A certificate staplerd keeps a staple for, with everything needed to fetch and check it. */
export interface CertRecord {
  name: string;
  /** Where it came from, for messages. */
  source: string;
  leaf: CertInfo;
  issuer: CertInfo;
  /** The responder to ask: configured override, else the first AIA OCSP URL; undefined means not applicable. */
  url: string | undefined;
  /** Learned from a request (learning mode), not from the config: kept across rescans, dropped when idle. */
  learned?: true;
}

async function readCerts(path: string, what: string): Promise<Uint8Array[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    throw new StaplerError('CERT_FILE', `${what} ${path}: ${(cause as Error).message}`, { cause });
  }
  return certificatesFromPem(new Uint8Array(bytes), path);
}

/**
 * Parsed issuer certificates by DER, shared across one load: 10,000 bundles from one CA carry the same
 * issuer 10,000 times, and one CertInfo (with its public key) serves them all.
 */
export class ParseCache {
  readonly #byDer = new Map<string, CertInfo>();

  parse(der: Uint8Array, source: string): CertInfo {
    const k = Buffer.from(der).toString('base64');
    let c = this.#byDer.get(k);
    if (!c) this.#byDer.set(k, (c = parseCertificate(der, source)));
    return c;
  }
}

/**
 * Builds the record for one bundle: leaf first, its issuer found among the rest of the bundle or in the
 * separate issuer file, and proven to have signed the leaf (RFC 5280 §6.1.3).
 */
export async function loadRecord(
  c: { name: string; chain: string; issuer?: string | undefined; responder?: string | undefined },
  cache = new ParseCache(),
): Promise<CertRecord> {
  const chain = await readCerts(c.chain, 'chain');
  const leaf = parseCertificate(chain[0]!, c.chain);
  const candidates = c.issuer ? await readCerts(c.issuer, 'issuer') : chain.slice(1);
  const parsed = candidates.map((d, i) => cache.parse(d, `${c.issuer ?? c.chain} #${i + 1}`));
  const issuer = parsed.find((p) => isIssuedBy(leaf, p));
  if (!issuer) {
    const named = parsed.some((p) => bytesEqual(p.subjectNameDer, leaf.issuerNameDer));
    throw new StaplerError(
      named ? 'ISSUER_MISMATCH' : 'ISSUER_NOT_FOUND',
      `${c.chain}: ${named ? 'the certificate named as issuer did not sign' : 'no issuer for'} ${leaf.subject}` +
        (c.issuer ? ` in ${c.issuer}` : ' (add the issuer to the chain or set `issuer:`)'),
    );
  }
  const compact = compactLeaf(leaf, issuer);
  return { name: c.name, source: c.chain, leaf: compact, issuer, url: c.responder ?? compact.ocspUrls[0] };
}

/** `*.pem`, `fullchain-?.crt`: shell-style file name patterns, no path separators. */
export function globToRegExp(pattern: string): RegExp {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${re}$`);
}

export interface DirectoryScan {
  records: CertRecord[];
  /** Files that matched but could not be used (half-written, no issuer, ...): skipped, retried next scan. */
  rejected: Array<{ file: string; error: StaplerError }>;
}

/** Longest certificate name (the config's name rule). */
const NAME_MAX = 128;

/**
 * A name held to the config's name rule (letters, digits, `._-`, at most 128, starting alphanumeric).
 * Sanitising is lossy (`-www` and `www`, `a b` and `a-b`, two long names with one prefix): so a name that
 * had to change gets a hash of the original appended, and can never take over a name that was valid as
 * it was (issue 12 item 10). Valid names are kept exactly.
 */
export function boundedName(raw: string): string {
  const n = raw.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  if (n === raw && n.length <= NAME_MAX) return n;
  const tag = createHash('sha256').update(raw).digest('hex').slice(0, 12);
  return `${(n || 'cert').slice(0, NAME_MAX - tag.length - 1)}-${tag}`;
}

/** A certificate name from a file name (without extension), see boundedName. */
export function nameFromFile(file: string): string {
  return boundedName(basename(file, extname(file)));
}

/** Files read at once while scanning: enough to hide disk latency, bounded for file descriptors. */
const SCAN_CONCURRENCY = 16;

/** Every matching bundle in `d.path` becomes a certificate named after its file (without extension). */
export async function scanDirectory(d: DirectoryConfig, cache = new ParseCache()): Promise<DirectoryScan> {
  const re = globToRegExp(d.pattern);
  let names: string[];
  try {
    names = (await readdir(d.path)).filter((n) => re.test(n) && !n.startsWith('.')).sort();
  } catch (cause) {
    throw new StaplerError('CERT_FILE', `directory ${d.path}: ${(cause as Error).message}`, { cause });
  }
  const results: Array<CertRecord | { file: string; error: StaplerError }> = new Array(names.length);
  await forEachLimited(names, SCAN_CONCURRENCY, async (n, i) => {
    const file = join(d.path, n);
    try {
      results[i] = await loadRecord({ name: nameFromFile(n), chain: file, issuer: d.issuer, responder: d.responder }, cache);
    } catch (e) {
      if (!(e instanceof StaplerError)) throw e;
      results[i] = { file, error: e };
    }
  });
  const out: DirectoryScan = { records: [], rejected: [] };
  for (const r of results) {
    if ('leaf' in r) out.records.push(r);
    else out.rejected.push(r);
  }
  return out;
}
