import { certIdKey, certIdOf } from '../pki/certid.js';
import type { CertRecord } from '../sources/certificates.js';
import type { Entry } from './staple.js';

/** An entry taken out of the index, and the persisted staple (by fingerprint) nothing uses any more. */
export interface Removed {
  entry: Entry;
  /** Set when no remaining entry has this leaf and the replacement (if any) is another leaf. */
  dropPersisted: string | undefined;
}

/** What `sync` changed: the caller unschedules the removed and primes the added. */
export interface IndexDiff {
  added: Entry[];
  removed: Removed[];
}

/**
 * The certificate entries, found by name, by CertID key (SHA-1 and SHA-256, RFC 6960 §4.1.1) and by leaf
 * fingerprint. Synchronous, no I/O: the service's one source of truth for "which certificates exist".
 *
 * The same leaf can be configured under two names (two watched files holding one certificate): both are
 * entries of their own, one of them answers for the CertID, and removing either leaves the other one
 * answering (issue 12 item 10).
 */
export class CertIndex {
  readonly #byName = new Map<string, Entry>();
  readonly #byCertId = new Map<string, Entry>();
  /** The entry itself, or a Set when the same certificate is configured under two names (rare: no Set per entry). */
  readonly #byFingerprint = new Map<string, Entry | Set<Entry>>();

  get size(): number {
    return this.#byName.size;
  }

  get(name: string): Entry | undefined {
    return this.#byName.get(name);
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The entry that answers requests with this CertID key. */
  byKey(key: string): Entry | undefined {
    return this.#byCertId.get(key);
  }

  withFingerprint(fp: string): Entry[] {
    const same = this.#byFingerprint.get(fp);
    return same === undefined ? [] : same instanceof Set ? [...same] : [same];
  }

  hasFingerprint(fp: string): boolean {
    return this.#byFingerprint.has(fp);
  }

  values(): IterableIterator<Entry> {
    return this.#byName.values();
  }

  /** Whether `e` is still the entry under its name, in the generation a fetch started in (else discard). */
  isCurrent(e: Entry, generation: number): boolean {
    return this.#byName.get(e.record.name) === e && e.generation === generation;
  }

  /** Adds a record under its name (which must be free). */
  add(r: CertRecord): Entry {
    if (this.#byName.has(r.name)) throw new RangeError(`CertIndex.add: ${r.name} is already indexed`);
    const keys = r.url ? (['sha1', 'sha256'] as const).map((a) => certIdKey(certIdOf(r.leaf, r.issuer, a))) : [];
    const e: Entry = { record: r, keys, staple: undefined, alt: undefined, altFailures: 0, unknown: undefined, unknownCount: 0, failures: 0, lastError: undefined, generation: 0, reported: 'pending' };
    this.#byName.set(r.name, e);
    const fp = r.leaf.fingerprint;
    const same = this.#byFingerprint.get(fp);
    if (!same) this.#byFingerprint.set(fp, e);
    else if (same instanceof Set) same.add(e);
    else this.#byFingerprint.set(fp, new Set([same, e]));
    // The first entry keeps answering for a CertID it shares with a later one: its staple is as good.
    for (const k of keys) if (!this.#byCertId.has(k)) this.#byCertId.set(k, e);
    return e;
  }

  /**
   * Removes an entry; its generation is bumped so a fetch under way for it is discarded. `replacement`
   * is the leaf fingerprint that takes its name (a renewal keeps nothing, a URL change keeps the staple).
   */
  remove(name: string, replacement?: string): Removed | undefined {
    const e = this.#byName.get(name);
    if (!e) return undefined;
    e.generation++;
    this.#byName.delete(name);
    const fp = e.record.leaf.fingerprint;
    const same = this.#byFingerprint.get(fp);
    if (same === e) this.#byFingerprint.delete(fp);
    else if (same instanceof Set) {
      same.delete(e);
      if (same.size === 1) this.#byFingerprint.set(fp, [...same][0]!);
    }
    for (const k of e.keys) {
      if (this.#byCertId.get(k) !== e) continue;
      // Another name for the same leaf and issuer has the same CertID: it answers from now on.
      const heir = this.withFingerprint(fp).find((o) => o.keys.includes(k));
      if (heir) this.#byCertId.set(k, heir);
      else this.#byCertId.delete(k);
    }
    const dropPersisted = replacement === fp || this.#byFingerprint.has(fp) ? undefined : fp;
    return { entry: e, dropPersisted };
  }

  /**
   * Replaces the configured records: unchanged ones keep their entry (and so their staple and schedule),
   * a changed one (renewed, new issuer or URL) is removed and added afresh. Learned entries are not part
   * of the configured set and stay.
   */
  sync(records: readonly CertRecord[]): IndexDiff {
    const next = new Map(records.map((r) => [r.name, r]));
    const removed: Removed[] = [];
    for (const [name, e] of this.#byName) {
      if (e.record.learned) continue;
      const r = next.get(name);
      if (r && sameCertificate(e.record, r)) e.record = r;
      else removed.push(this.remove(name, r?.leaf.fingerprint)!);
    }
    const added: Entry[] = [];
    for (const r of records) if (!this.#byName.has(r.name)) added.push(this.add(r));
    // A leaf that moved to another name (a renamed file) keeps its persisted staple.
    for (const x of removed) if (x.dropPersisted !== undefined && this.#byFingerprint.has(x.dropPersisted)) x.dropPersisted = undefined;
    return { added, removed };
  }
}

function sameCertificate(a: CertRecord, b: CertRecord): boolean {
  return a.leaf.fingerprint === b.leaf.fingerprint && a.issuer.fingerprint === b.issuer.fingerprint && a.url === b.url;
}
