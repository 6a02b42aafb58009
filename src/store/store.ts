/** Informational metadata kept beside a persisted staple; everything that decides is re-derived from the DER. */
export interface StapleMeta {
  name: string;
  fetchedAt: string;
  url: string;
  status: string;
  thisUpdate: string;
  nextUpdate: string;
}

export interface StoredStaple {
  der: Uint8Array;
  meta: StapleMeta | undefined;
}

/**
 * Where staples survive restarts. Keyed by the certificate's SHA-256 fingerprint, so a renewed certificate
 * never picks up its predecessor's staple. Contents are never trusted: the caller re-verifies on load.
 */
export interface StapleStore {
  /** The staple; its metadata only when asked for (start-up reads 10,000s of staples and needs none). */
  get(fingerprint: string, o?: { meta?: boolean }): Promise<StoredStaple | undefined>;
  put(fingerprint: string, staple: StoredStaple): Promise<void>;
  delete(fingerprint: string): Promise<void>;
  /** The fingerprints held, listed at once: start-up reads only what exists. */
  keys(): Promise<Set<string>>;
}

export function isFingerprint(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
