import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { errorCode } from '../errors.js';
import type { RefreshConfig } from '../config/schema.js';
import type { ResponderClient } from '../fetch/responder-client.js';
import { certIdOf, type HashName } from '../pki/certid.js';
import { buildOcspRequest } from '../pki/request.js';
import { verifyOcspResponseAsync, type SignerMemo } from '../pki/verify.js';
import type { CertRecord } from '../sources/certificates.js';
import type { Clock } from '../util/clock.js';
import { Staple } from './staple.js';

export interface StapleFetcherOptions {
  clock: Clock;
  client: ResponderClient;
  refresh: Pick<RefreshConfig, 'skewSeconds' | 'marginSeconds' | 'assumeValiditySeconds'>;
  /** Send a nonce upstream (off by default, RFC 9919 §2.1). */
  nonce: boolean;
  /** Told of every upstream fetch: responder URL, `ok` or the error code, seconds taken (metrics). */
  onFetch?: ((url: string, result: string, seconds: number) => void) | undefined;
}

/** A verified response and what the upstream said about caching it. */
export interface Fetched {
  staple: Staple;
  maxAge: number | undefined;
}

/**
 * Builds the request, fetches, verifies. Commits nothing: the caller decides what a verified response
 * replaces. Every byte from the CA, a peer or the disk goes through `verify` before it becomes a Staple.
 */
export class StapleFetcher {
  readonly #o: StapleFetcherOptions;
  readonly #memo: SignerMemo = new Map();
  /** Aborted at close: a hung upstream must not hold up a SIGTERM (containers get ~10 s). */
  readonly #abort = new AbortController();

  constructor(o: StapleFetcherOptions) {
    this.#o = o;
    // Every fetch in flight listens on this one signal (up to fetch.concurrency of them): not a leak.
    setMaxListeners(0, this.#abort.signal);
  }

  /** Full verification; the signature is checked off the event loop (see verifySignatureAsync). */
  async verify(record: CertRecord, der: Uint8Array, nonce?: Uint8Array): Promise<Staple> {
    const now = this.#o.clock.now();
    const { skewSeconds, marginSeconds, assumeValiditySeconds } = this.#o.refresh;
    const policy = { skewSeconds, marginSeconds, assumeValiditySeconds };
    const v = await verifyOcspResponseAsync({ der, leaf: record.leaf, issuer: record.issuer, now, policy, nonce, memo: this.#memo });
    return new Staple(v, now);
  }

  /** Request and verify one form (SHA-1 or SHA-256 CertID) of a certificate's staple. */
  async fetch(record: CertRecord, url: string, alg: HashName): Promise<Fetched> {
    const nonce = this.#o.nonce ? new Uint8Array(randomBytes(16)) : undefined;
    const request = buildOcspRequest([certIdOf(record.leaf, record.issuer, alg)], { nonce });
    const started = performance.now();
    try {
      const res = await this.#o.client.fetch(url, request, this.#abort.signal);
      const staple = await this.verify(record, res.body, nonce);
      this.#o.onFetch?.(url, 'ok', (performance.now() - started) / 1000);
      return { staple, maxAge: res.maxAgeSeconds };
    } catch (err) {
      this.#o.onFetch?.(url, errorCode(err, 'FETCH_CONNECT'), (performance.now() - started) / 1000);
      throw err;
    }
  }

  /** Aborts fetches under way. */
  abort(): void {
    this.#abort.abort();
  }

  close(): void {
    this.#o.client.close();
  }
}
