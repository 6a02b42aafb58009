import type { Logger } from 'pino';
import { StaplerError } from '../errors.js';
import type { Config } from '../config/schema.js';
import { loadRecord, ParseCache, scanDirectory, type CertRecord } from './certificates.js';

/**
 * Every certificate the config names. A broken explicitly configured certificate is a config error
 * (thrown, exit 2 at start); a broken file in a watched directory is skipped with a warning, since it may
 * be half-written and will be picked up by the next scan once it is whole.
 */
export async function loadAllRecords(
  cfg: Pick<Config, 'certificates' | 'directories' | 'limits' | 'source'>,
  log: Logger,
  /** The records in use: a watched file that no longer loads (half-written) keeps its previous version. */
  previous: readonly CertRecord[] = [],
): Promise<CertRecord[]> {
  const records: CertRecord[] = [];
  const cache = new ParseCache();
  for (const [i, c] of cfg.certificates.entries()) {
    try {
      records.push(await loadRecord(c, cache));
    } catch (e) {
      if (e instanceof StaplerError) throw e.within(`${cfg.source}: certificates[${i}] (${c.name})`);
      throw e;
    }
  }
  const names = new Set(records.map((r) => r.name));
  for (const [i, d] of cfg.directories.entries()) {
    let scan;
    try {
      scan = await scanDirectory(d, cache);
    } catch (e) {
      if (e instanceof StaplerError) throw e.within(`${cfg.source}: directories[${i}]`);
      throw e;
    }
    const kept: CertRecord[] = [];
    for (const r of scan.rejected) {
      const old = previous.find((p) => p.source === r.file && !p.learned);
      if (old) kept.push(old);
      log.warn({ file: r.file, code: r.error.code, error: r.error.message }, old ? 'skipping certificate file: keeping its previous version' : 'skipping certificate file');
    }
    for (const r of [...scan.records, ...kept]) {
      if (names.has(r.name)) {
        log.warn({ file: r.source, cert: r.name }, 'skipping certificate file: name already used');
        continue;
      }
      names.add(r.name);
      records.push(r);
    }
  }
  if (records.length > cfg.limits.maxCertificates) {
    throw new StaplerError('CONFIG_INVALID', `${cfg.source}: limits.maxCertificates: ${records.length} certificates found, limit is ${cfg.limits.maxCertificates}`);
  }
  return records;
}
