import type { RefreshConfig } from '../config/schema.js';
import { algOfKey } from '../pki/certid.js';
import { servableUntil } from '../pki/freshness.js';
import type { CertRecord } from '../sources/certificates.js';
import type { Clock } from '../util/clock.js';
import type { CertIndex } from './cert-index.js';
import type { Form } from './refresher.js';
import { briefOf, servableStaple, stateOf, viewOf, type CertBrief, type CertificateView, type Entry, type Staple } from './staple.js';

/**
 * What the OCSP routes answer for a CertID: the staple, or why not (mapped to OCSP statuses in http/).
 * `unknown` here means a certificate staplerd does not know (answered `unauthorized`), not the OCSP status.
 * `wait`: a fetch that will settle it is under way; ask again when `until` resolves (bounded by the fetch
 * timeout) rather than send tryLater to a client that asked at start-up or in a new form.
 */
export type Answer =
  | { kind: 'staple'; staple: Staple; maxAgeSeconds: number }
  | { kind: 'unknown' }
  | { kind: 'tryLater' }
  | { kind: 'wait'; until: Promise<void> };

/** The refresh jobs as the answers see them: when due, whether running, start one. */
export interface Jobs {
  dueAt(name: string, form?: Form): Date | undefined;
  dueMs(name: string, form: Form): number | undefined;
  running(name: string, form: Form): Promise<void> | undefined;
  runNow(name: string, form: Form): Promise<void>;
}

export interface StapleAnswersOptions {
  clock: Clock;
  index: CertIndex;
  jobs: Jobs;
  refresh: Pick<RefreshConfig, 'marginSeconds'>;
  /** False until start: no fetch is started for a client before the persisted staples are loaded. */
  started: () => boolean;
}

/** Names listed per kind by readiness() (the counts are whole). */
const READINESS_NAMES = 100;

export interface Readiness {
  ready: boolean;
  waiting: string[];
  waitingCount: number;
  mustStapleMissing: string[];
  mustStapleMissingCount: number;
}

/** Read-only answers for the routes, the fast path, the API and the sinks. Nothing here changes an entry. */
export class StapleAnswers {
  readonly #o: StapleAnswersOptions;

  constructor(o: StapleAnswersOptions) {
    this.#o = o;
  }

  /** Hot path: a map lookup and a time comparison. */
  answer(key: string): Answer {
    const e = this.#o.index.byKey(key);
    if (!e) return { kind: 'unknown' };
    const form = algOfKey(key);
    const nowMs = this.#o.clock.nowMs();
    const s = form === 'sha1' ? e.staple : e.alt;
    const until = s ? servableUntil(s.nextUpdateMs, this.#o.refresh.marginSeconds, s.thisUpdateMs) : 0;
    if (s && nowMs < until) {
      const due = this.#o.jobs.dueMs(e.record.name, form) ?? Infinity;
      return { kind: 'staple', staple: s, maxAgeSeconds: Math.max(0, Math.floor((Math.min(due, until) - nowMs) / 1000)) };
    }
    return this.#whenMissing(e, form);
  }

  /** No servable staple in the asked form: join a fetch under way, start the SHA-256 form's first one, or tryLater. */
  #whenMissing(e: Entry, form: Form): Answer {
    const name = e.record.name;
    const running = this.#o.jobs.running(name, form);
    if (running) return { kind: 'wait', until: running };
    if (form === 'sha256' && e.record.url && this.#o.jobs.dueAt(name, form) === undefined && this.#o.started()) {
      return { kind: 'wait', until: this.#o.jobs.runNow(name, form) };
    }
    return { kind: 'tryLater' };
  }

  list(): CertificateView[] {
    return [...this.#o.index.values()].map((e) => this.view(e));
  }

  /**
   * Every certificate's brief, in no set order, built as the reader goes: a reader may pause between items
   * (a Map iteration survives changes: removed entries are skipped, added ones come later).
   */
  *briefs(): IterableIterator<CertBrief> {
    const now = this.#o.clock.now();
    for (const e of this.#o.index.values()) yield briefOf(e, now, this.#o.refresh.marginSeconds);
  }

  view(e: Entry): CertificateView {
    return viewOf(e, this.#o.clock.now(), this.#o.refresh.marginSeconds, this.#o.jobs.dueAt(e.record.name));
  }

  /** The servable staple of a certificate, by name. */
  staple(name: string): Staple | undefined {
    const e = this.#o.index.get(name);
    return e && servableStaple(e, this.#o.clock.now(), this.#o.refresh.marginSeconds);
  }

  /** Every certificate with a servable staple now (for a sink that must be given everything again). */
  current(): Array<[CertRecord, Staple]> {
    const now = this.#o.clock.now();
    const out: Array<[CertRecord, Staple]> = [];
    for (const e of this.#o.index.values()) {
      const s = servableStaple(e, now, this.#o.refresh.marginSeconds);
      if (s) out.push([e.record, s]);
    }
    return out;
  }

  /**
   * Ready when every certificate with a responder has a servable staple or has failed its first fetch,
   * and no must-staple certificate lacks a servable staple (clients hard-fail without one, RFC 7633 §4.2).
   * One pass, no allocation per certificate (/readyz is polled while 100,000 are still pending); names are
   * listed up to READINESS_NAMES of each kind, the counts are whole.
   */
  readiness(): Readiness {
    const now = this.#o.clock.now();
    const waiting: string[] = [];
    const mustStapleMissing: string[] = [];
    let waitingCount = 0;
    let mustStapleMissingCount = 0;
    for (const e of this.#o.index.values()) {
      const st = stateOf(e, now, this.#o.refresh.marginSeconds);
      if (st === 'pending' && ++waitingCount <= READINESS_NAMES) waiting.push(e.record.name);
      if (e.record.leaf.mustStaple && e.record.url && (st === 'pending' || st === 'failing' || st === 'unknown') && ++mustStapleMissingCount <= READINESS_NAMES) mustStapleMissing.push(e.record.name);
    }
    const ready = this.#o.started() && waitingCount === 0 && mustStapleMissingCount === 0;
    return { ready, waiting, waitingCount, mustStapleMissing, mustStapleMissingCount };
  }
}
