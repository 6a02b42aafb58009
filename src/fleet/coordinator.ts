import type { Staple } from '../service/staple.js';

/** A fetched (or shared) staple ready to commit, with what the upstream said about caching it. */
export interface Obtained {
  staple: Staple;
  maxAge: number | undefined;
  /** `shared`: another node fetched it (verified here all the same). */
  source: 'fetched' | 'shared';
}

export interface ObtainRequest {
  /** The certificate's fingerprint: the key in any shared store. */
  fingerprint: string;
  name: string;
  /** The staple held now, if any: a shared one is used only when it is at least as new. */
  held: Staple | undefined;
  /** Fetch from the CA and verify. */
  direct: () => Promise<{ staple: Staple; maxAge: number | undefined }>;
  /** Verify bytes from elsewhere exactly as a fetched response (the shared store is never trusted). */
  verify: (der: Uint8Array) => Promise<Staple>;
}

/**
 * The seam between the Stapler and "how a staple is obtained". The local coordinator fetches; a fleet one
 * (Redis) first looks for a staple another node fetched, takes a lease so one node per certificate asks the
 * CA, and shares what it fetched.
 */
export interface FetchCoordinator {
  obtain(r: ObtainRequest): Promise<Obtained>;
  /** Called with a fingerprint when another node published a new staple for it. */
  onShared(listener: (fingerprint: string) => void): void;
  /** A staple another node published (unverified bytes), for `onShared`. */
  shared(fingerprint: string): Promise<Uint8Array | undefined>;
  status(): { kind: 'local' | 'redis'; connected: boolean };
  close(): Promise<void>;
}

export class LocalCoordinator implements FetchCoordinator {
  async obtain(r: ObtainRequest): Promise<Obtained> {
    return { ...(await r.direct()), source: 'fetched' };
  }

  onShared(): void {}

  async shared(): Promise<undefined> {
    return undefined;
  }

  status(): { kind: 'local'; connected: boolean } {
    return { kind: 'local', connected: true };
  }

  async close(): Promise<void> {}
}
