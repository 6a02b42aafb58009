import { createHash } from 'node:crypto';
import type { ErrorCode } from '../errors.js';
import { isServable } from '../pki/freshness.js';
import type { CertStatus } from '../pki/response.js';
import type { VerifiedResponse } from '../pki/verify.js';
import type { CertRecord } from '../sources/certificates.js';

/**
 * A verified OCSP response ready to serve. Dates are held as numbers and the constant response headers
 * (RFC 5019 §6.2) are computed when first served: 100,000 staples would otherwise hold four Dates and
 * three strings each, most of them for certificates nobody asks about between two refreshes.
 */
export class Staple {
  readonly body: Buffer;
  readonly status: CertStatus;
  readonly singleCount: number;
  readonly thisUpdateMs: number;
  readonly nextUpdateMs: number;
  /** The response has no nextUpdate; nextUpdate is thisUpdate + refresh.assumeValidity (never sent to HAProxy). */
  readonly nextUpdateAssumed: boolean;
  readonly #producedAtMs: number;
  readonly #fetchedAtMs: number;
  #headers: { etag: string; lastModified: string; expires: string } | undefined;

  constructor(v: VerifiedResponse, fetchedAt: Date) {
    // An exact-size buffer of its own: Buffer.from() would copy into node's shared 8 KiB pool, where every
    // long-lived staple pins the slab it shares with short-lived garbage (about 1.6x the body per staple).
    this.body = Buffer.allocUnsafeSlow(v.der.byteLength);
    this.body.set(v.der);
    this.status = shared(v.status);
    this.singleCount = v.singleCount;
    this.thisUpdateMs = v.thisUpdate.getTime();
    this.nextUpdateMs = v.nextUpdate.getTime();
    this.nextUpdateAssumed = v.nextUpdateAssumed === true;
    this.#producedAtMs = v.producedAt.getTime();
    this.#fetchedAtMs = fetchedAt.getTime();
    Object.freeze(this);
  }

  get thisUpdate(): Date {
    return new Date(this.thisUpdateMs);
  }
  get nextUpdate(): Date {
    return new Date(this.nextUpdateMs);
  }
  get producedAt(): Date {
    return new Date(this.#producedAtMs);
  }
  get fetchedAt(): Date {
    return new Date(this.#fetchedAtMs);
  }
  /** Strong validator of the exact bytes (RFC 9110 §8.8.3). */
  get etag(): string {
    return this.#servingHeaders().etag;
  }
  get lastModified(): string {
    return this.#servingHeaders().lastModified;
  }
  get expires(): string {
    return this.#servingHeaders().expires;
  }

  #servingHeaders(): { etag: string; lastModified: string; expires: string } {
    return (this.#headers ??= {
      etag: `"${createHash('sha256').update(this.body).digest('hex')}"`,
      lastModified: this.thisUpdate.toUTCString(),
      expires: this.nextUpdate.toUTCString(),
    });
  }
}

const GOOD: CertStatus = Object.freeze({ kind: 'good' });
const UNKNOWN: CertStatus = Object.freeze({ kind: 'unknown' });

/** One status object for every good (or unknown) staple; revoked ones carry their own time and reason. */
function shared(s: CertStatus): CertStatus {
  return s.kind === 'good' ? GOOD : s.kind === 'unknown' ? UNKNOWN : s;
}

export type EntryState = 'pending' | 'good' | 'revoked' | 'unknown' | 'failing' | 'not_applicable' | 'expired';

export interface LastError {
  code: ErrorCode;
  message: string;
  at: Date;
}

/** Mutable per-certificate state, owned by Stapler and changed only in synchronous commit steps. */
export interface Entry {
  record: CertRecord;
  /** CertID map keys (SHA-1 and SHA-256) under which requests find this entry. */
  keys: string[];
  staple: Staple | undefined;
  failures: number;
  lastError: LastError | undefined;
  /** Bumped when the record is replaced; a fetch that started under an older generation is discarded. */
  generation: number;
  /**
   * The same status with a SHA-256 CertID, fetched only once a client asked in that form: a response must
   * carry the CertID the request used (RFC 6960 §4.2.1), and nearly every client (nginx, HAProxy, Apache
   * through OpenSSL) uses SHA-1. Memory only; it does not decide the state.
   */
  alt: Staple | undefined;
  altFailures: number;
  /**
   * The CA's latest answer when it was `unknown` (verified, never served, persisted or passed to sinks: nginx
   * and HAProxy refuse it, browsers may fail the handshake on it); cleared by the next good or revoked one.
   */
  unknown: Staple | undefined;
  /** `unknown` answers in a row, for the short retry schedule (unknownRetryMs). */
  unknownCount: number;
  /**
   * The state last written to the log. States also change silently with time (a staple ages out), so
   * transitions are logged against this, not against the state just before a commit.
   */
  reported: EntryState;
}

/** The state is derived, never stored: a staple that aged past nextUpdate − margin stops counting by itself. */
export function stateOf(e: Entry, now: Date, marginSeconds: number): EntryState {
  if (!e.record.url) return 'not_applicable';
  if (e.record.leaf.notAfterMs <= now.getTime()) return 'expired';
  const s = servableStaple(e, now, marginSeconds);
  if (s) return s.status.kind;
  if (e.unknown) return 'unknown';
  return e.failures > 0 ? 'failing' : 'pending';
}

/** The held staple while it may be served; an `unknown` one never is (commits never hold one, this makes sure). */
export function servableStaple(e: Entry, now: Date, marginSeconds: number): Staple | undefined {
  const s = e.staple;
  return s && s.status.kind !== 'unknown' && isServable(s.nextUpdateMs, now, marginSeconds, s.thisUpdateMs) ? s : undefined;
}

/**
 * What aggregates need of one certificate (metrics, counts by state, paging filters), without the strings
 * of a full view: walking 200,000 of these per scrape must stay cheap.
 */
export interface CertBrief {
  name: string;
  state: EntryState;
  mustStaple: boolean;
  /** Of the staple held, servable or not; undefined without one. */
  thisUpdateMs: number | undefined;
  nextUpdateMs: number | undefined;
}

export function briefOf(e: Entry, now: Date, marginSeconds: number): CertBrief {
  const s = e.staple;
  return { name: e.record.name, state: stateOf(e, now, marginSeconds), mustStaple: e.record.leaf.mustStaple, thisUpdateMs: s?.thisUpdateMs, nextUpdateMs: s?.nextUpdateMs };
}

export interface CertificateView {
  name: string;
  source: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  mustStaple: boolean;
  ocspUrl: string | null;
  state: EntryState;
  /** The OCSP certStatus of the held staple (RFC 6960 §4.2.1), times as ISO strings. */
  status: { kind: 'good' } | { kind: 'revoked'; at: string; reason?: number } | { kind: 'unknown' } | null;
  thisUpdate: string | null;
  nextUpdate: string | null;
  producedAt: string | null;
  fetchedAt: string | null;
  nextRefresh: string | null;
  failures: number;
  lastError: { code: ErrorCode; message: string; at: string } | null;
}

function statusView(st: CertStatus): NonNullable<CertificateView['status']> {
  if (st.kind !== 'revoked') return { kind: st.kind };
  return { kind: 'revoked', at: st.at.toISOString(), ...(st.reason !== undefined && { reason: st.reason }) };
}

export function viewOf(e: Entry, now: Date, marginSeconds: number, nextRefresh: Date | undefined): CertificateView {
  const { leaf, issuer } = e.record;
  const state = stateOf(e, now, marginSeconds);
  // In state `unknown` the view shows the CA's answer (its thisUpdate, when it was checked) and no
  // nextUpdate: nothing is served until the CA knows the certificate.
  const s = state === 'unknown' ? e.unknown : e.staple;
  const iso = (d: Date | undefined) => (d ? d.toISOString() : null);
  return {
    name: e.record.name,
    source: e.record.source,
    subject: leaf.subject,
    issuer: issuer.subject,
    serial: leaf.serialHex,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    mustStaple: leaf.mustStaple,
    ocspUrl: e.record.url ?? null,
    state,
    status: s ? statusView(s.status) : null,
    thisUpdate: iso(s?.thisUpdate),
    nextUpdate: state === 'unknown' ? null : iso(s?.nextUpdate),
    producedAt: iso(s?.producedAt),
    fetchedAt: iso(s?.fetchedAt),
    nextRefresh: iso(nextRefresh),
    failures: e.failures,
    lastError: e.lastError ? { code: e.lastError.code, message: e.lastError.message, at: e.lastError.at.toISOString() } : null,
  };
}
