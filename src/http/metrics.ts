import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { servableUntil } from '../pki/freshness.js';
import { parseResponderUrl } from '../fetch/responder-client.js';
import type { CertificateView, EntryState } from '../service/staple.js';

/** What the scrape reads: the Stapler's list and readiness. */
export interface MetricsSource {
  list(): CertificateView[];
  readiness(): { ready: boolean; mustStapleMissingCount: number; store: { kind: string; connected: boolean } };
}

/** Outcomes of OCSP requests served (the `outcome` label). */
export type ServeOutcome = 'hit' | 'not_modified' | 'unknown' | 'try_later' | 'malformed' | 'too_large' | 'internal_error';

const STATES: EntryState[] = ['pending', 'good', 'revoked', 'unknown', 'failing', 'not_applicable', 'expired'];

/**
 * Per-certificate series stop here: 100,000 certificates times a few series each would make every scrape
 * megabytes long. Beyond it only the aggregates are exported (and `/v1/certificates` has the detail).
 */
export const PER_CERTIFICATE_SERIES_LIMIT = 10_000;

/**
 * Prometheus metrics, in a registry of their own (no global state). Counters are bumped where things happen;
 * per-certificate gauges are computed at scrape time from the Stapler, so idle costs nothing.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #served: Record<ServeOutcome, { inc(): void }>;
  readonly #fetches: Counter<'host' | 'result'>;
  readonly #latency: Histogram<'host'>;
  readonly #sinkPushes: Counter<'sink' | 'result'>;
  readonly #hooks: Counter<'event' | 'result'>;

  constructor(stapler: MetricsSource, o: { marginSeconds: number; defaultMetrics?: boolean }) {
    const r = this.registry;
    if (o.defaultMetrics !== false) collectDefaultMetrics({ register: r, prefix: 'staplerd_' });
    const served = new Counter({ name: 'staplerd_ocsp_requests_total', help: 'OCSP requests answered, by outcome', labelNames: ['outcome'] as const, registers: [r] });
    this.#served = Object.fromEntries((['hit', 'not_modified', 'unknown', 'try_later', 'malformed', 'too_large', 'internal_error'] as const).map((k) => [k, served.labels(k)])) as Record<ServeOutcome, { inc(): void }>;
    this.#fetches = new Counter({ name: 'staplerd_fetch_total', help: 'Upstream OCSP fetches, by responder host and result (ok or error code)', labelNames: ['host', 'result'] as const, registers: [r] });
    this.#latency = new Histogram({
      name: 'staplerd_upstream_request_duration_seconds',
      help: 'Upstream OCSP request duration, by responder host',
      labelNames: ['host'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    });
    this.#sinkPushes = new Counter({ name: 'staplerd_sink_push_total', help: 'Staple pushes to sinks, by sink and result', labelNames: ['sink', 'result'] as const, registers: [r] });
    this.#hooks = new Counter({ name: 'staplerd_hook_runs_total', help: 'Hook runs, by event and result', labelNames: ['event', 'result'] as const, registers: [r] });
    this.#scrapeGauges(stapler, o.marginSeconds);
  }

  served(outcome: ServeOutcome): void {
    this.#served[outcome].inc();
  }

  fetched(url: string, result: string, seconds: number): void {
    const host = hostOf(url);
    this.#fetches.labels(host, result).inc();
    this.#latency.labels(host).observe(seconds);
  }

  sinkPushed(sink: string, result: string): void {
    this.#sinkPushes.labels(sink, result).inc();
  }

  hookRan(event: string, result: string): void {
    this.#hooks.labels(event, result).inc();
  }

  #scrapeGauges(stapler: MetricsSource, marginSeconds: number): void {
    const r = this.registry;
    // One collect walks the certificates once per scrape and fills every gauge below. It is registered first
    // because the registry serialises metrics in registration order.
    new Gauge({
      name: 'staplerd_certificates',
      help: 'Certificates by state',
      labelNames: ['state'] as const,
      registers: [r],
      collect() {
        const now = Date.now();
        const views = stapler.list();
        const counts = Object.fromEntries(STATES.map((st) => [st, 0])) as Record<EntryState, number>;
        for (const g of [until, since, servable, state]) g.reset();
        const detail = views.length <= PER_CERTIFICATE_SERIES_LIMIT;
        for (const v of views) {
          counts[v.state]++;
          if (!detail) continue;
          state.labels(v.name, v.state, String(v.mustStaple)).set(1);
          if (v.nextUpdate && v.thisUpdate) {
            until.labels(v.name).set((Date.parse(v.nextUpdate) - now) / 1000);
            since.labels(v.name).set((now - Date.parse(v.thisUpdate)) / 1000);
            servable.labels(v.name).set(Math.max(0, (servableUntil(Date.parse(v.nextUpdate), marginSeconds, Date.parse(v.thisUpdate)) - now) / 1000));
          }
        }
        for (const st of STATES) this.labels(st).set(counts[st]);
        const rd = stapler.readiness();
        ready.set(rd.ready ? 1 : 0);
        mustStapleMissing.set(rd.mustStapleMissingCount);
        storeUp.set(rd.store.connected ? 1 : 0);
      },
    });
    const until = new Gauge({ name: 'staplerd_staple_seconds_until_next_update', help: 'Seconds until the staple nextUpdate, per certificate', labelNames: ['cert'] as const, registers: [r] });
    const since = new Gauge({ name: 'staplerd_staple_seconds_since_this_update', help: 'Seconds since the staple thisUpdate, per certificate', labelNames: ['cert'] as const, registers: [r] });
    const servable = new Gauge({ name: 'staplerd_staple_seconds_servable', help: 'Seconds the staple stays servable (nextUpdate minus margin), per certificate', labelNames: ['cert'] as const, registers: [r] });
    const state = new Gauge({ name: 'staplerd_certificate_state', help: 'Certificate state (1 for the current state), per certificate', labelNames: ['cert', 'state', 'must_staple'] as const, registers: [r] });
    const ready = new Gauge({ name: 'staplerd_ready', help: '1 when /readyz is 200', registers: [r] });
    const storeUp = new Gauge({ name: 'staplerd_shared_store_up', help: '1 when the shared store (fleet mode) is reachable, or when there is none', registers: [r] });
    const mustStapleMissing = new Gauge({ name: 'staplerd_must_staple_without_staple', help: 'Must-staple certificates without a servable staple', registers: [r] });
  }
}

/** The responder host label (the URL is parsed once, shared with the fetcher). */
function hostOf(url: string): string {
  try {
    return parseResponderUrl(url).host;
  } catch {
    return 'invalid';
  }
}
