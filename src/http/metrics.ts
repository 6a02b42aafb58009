import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { servableUntil } from '../pki/freshness.js';
import { parseResponderUrl } from '../fetch/responder-client.js';
import type { CertBrief } from '../service/staple.js';
import { systemClock, type Clock } from '../util/clock.js';
import { Smallest } from './catalog.js';
import { STATE_INFO, STATES, zeroCounts } from './states.js';

/** What the scrape reads: a walk over the certificates, and readiness. */
export interface MetricsSource {
  briefs(): Iterable<CertBrief>;
  readiness(): { ready: boolean; mustStapleMissingCount: number; store: { kind: string; connected: boolean } };
}

export interface MetricsOptions {
  marginSeconds: number;
  /** Certificates that get series of their own (up to four each), at most; the rest are counted as dropped. */
  certificateSeriesLimit: number;
  /** A staple servable for less than this puts its certificate among those with series of their own. */
  attentionHorizonSeconds: number;
  defaultMetrics?: boolean;
  clock?: Clock;
}

/** Outcomes of OCSP requests served (the `outcome` label). */
const OUTCOMES = ['hit', 'not_modified', 'unknown', 'try_later', 'malformed', 'too_large', 'internal_error'] as const;
export type ServeOutcome = (typeof OUTCOMES)[number];

/** Certificates walked between two turns of the event loop during a scrape (~1 ms of work each). */
const SLICE = 4096;
/** Buckets of the staple-time histograms, seconds: 10 min, 1 h, 2 h, 6 h, 12 h, 1 d, 2 d, 4 d, 7 d, 14 d. */
const TIME_BUCKETS = [0, 600, 3600, 7200, 21600, 43200, 86400, 172800, 345600, 604800, 1209600];

/**
 * Why a certificate gets series of its own, most pressing first: failing, revoked, unknown (the problem
 * states, STATE_INFO), a staple that runs out within the horizon, must-staple. Undefined: aggregates only.
 */
function attentionRank(b: CertBrief, servableSec: number | undefined, horizonSec: number): number | undefined {
  const problem = STATE_INFO[b.state].problem;
  if (problem !== null) return problem;
  if (b.state === 'good' && servableSec !== undefined && servableSec < horizonSec) return 10;
  return b.mustStaple ? 11 : undefined;
}

interface Attention {
  b: CertBrief;
  rank: number;
  servableSec: number;
}

/**
 * Prometheus metrics, in a registry of their own (no global state). Counters are bumped where things happen.
 * Certificate gauges are computed at scrape time from one walk over the certificates (in slices, so a scrape
 * of 200,000 does not hold up the OCSP routes), then set in one synchronous step: aggregates for every
 * certificate, series of their own for those that need attention, up to a cap. Use render() (or collect()
 * before reading the registry).
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #source: MetricsSource;
  readonly #o: Required<Omit<MetricsOptions, 'defaultMetrics'>>;
  readonly #served: Record<ServeOutcome, number>;
  readonly #fetches: Counter<'host' | 'result'>;
  readonly #latency: Histogram<'host'>;
  readonly #sinkPushes: Counter<'sink' | 'result'>;
  readonly #hooks: Counter<'event' | 'result'>;
  readonly #g: ReturnType<typeof certificateMetrics>;
  #collecting: Promise<void> | undefined;

  constructor(source: MetricsSource, o: MetricsOptions) {
    if (!Number.isInteger(o.certificateSeriesLimit) || o.certificateSeriesLimit < 0) throw new RangeError(`Metrics: certificateSeriesLimit must be a non-negative integer, got ${o.certificateSeriesLimit}`);
    if (!(o.attentionHorizonSeconds >= 0)) throw new RangeError(`Metrics: attentionHorizonSeconds must be >= 0, got ${o.attentionHorizonSeconds}`);
    this.#source = source;
    this.#o = { marginSeconds: o.marginSeconds, certificateSeriesLimit: o.certificateSeriesLimit, attentionHorizonSeconds: o.attentionHorizonSeconds, clock: o.clock ?? systemClock };
    const r = this.registry;
    // Registration order is the order of the scrape: the certificate metrics first.
    this.#g = certificateMetrics(r);
    if (o.defaultMetrics !== false) collectDefaultMetrics({ register: r, prefix: 'staplerd_' });
    // Counted in plain numbers on the hot path and handed to prom-client at scrape time: its inc() builds a
    // label hash string and validates the labels on every call, per OCSP request served.
    const served = (this.#served = Object.fromEntries(OUTCOMES.map((k) => [k, 0])) as Record<ServeOutcome, number>);
    new Counter({
      name: 'staplerd_ocsp_requests_total',
      help: 'OCSP requests answered, by outcome',
      labelNames: ['outcome'] as const,
      registers: [r],
      collect() {
        this.reset();
        for (const k of OUTCOMES) this.inc({ outcome: k }, served[k]);
      },
    });
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
  }

  served(outcome: ServeOutcome): void {
    this.#served[outcome]++;
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

  /** The scrape: certificate gauges brought up to date, then the text format. */
  async render(): Promise<string> {
    await this.collect();
    return this.registry.metrics();
  }

  /** Brings the certificate gauges up to date; concurrent scrapes share one walk. */
  collect(): Promise<void> {
    return (this.#collecting ??= this.#collect().finally(() => (this.#collecting = undefined)));
  }

  async #collect(): Promise<void> {
    const { marginSeconds, attentionHorizonSeconds: horizon, certificateSeriesLimit: cap } = this.#o;
    const now = this.#o.clock.now().getTime();
    const counts = zeroCounts();
    const untilNext = new BucketCounts(TIME_BUCKETS);
    const servable = new BucketCounts(TIME_BUCKETS);
    // Most pressing first, then the staple that runs out soonest, then by name: the cap keeps the top ones.
    const picked = cap > 0 ? new Smallest<Attention>(cap, (a, b) => a.rank - b.rank || a.servableSec - b.servableSec || (a.b.name < b.b.name ? -1 : a.b.name > b.b.name ? 1 : 0)) : undefined;
    let attention = 0;
    let i = 0;
    for (const b of this.#source.briefs()) {
      counts[b.state]++;
      let servableSec: number | undefined;
      if (b.nextUpdateMs !== undefined) {
        untilNext.observe((b.nextUpdateMs - now) / 1000);
        servableSec = Math.max(0, (servableUntil(b.nextUpdateMs, marginSeconds, b.thisUpdateMs) - now) / 1000);
        servable.observe(servableSec);
      }
      const rank = attentionRank(b, servableSec, horizon);
      if (rank !== undefined) {
        attention++;
        picked?.offer({ b, rank, servableSec: servableSec ?? -1 });
      }
      if (++i % SLICE === 0) await yieldToLoop();
    }
    // One synchronous step from here: a concurrent registry read sees the old set or the new, never half.
    const g = this.#g;
    for (const s of STATES) g.certificates.labels(s).set(counts[s]);
    g.untilNextUpdate.set(untilNext);
    g.servable.set(servable);
    for (const x of [g.state, g.until, g.since, g.servableCert]) x.reset();
    for (const { b } of picked?.items ?? []) {
      g.state.labels(b.name, b.state, String(b.mustStaple)).set(1);
      if (b.nextUpdateMs === undefined || b.thisUpdateMs === undefined) continue;
      g.until.labels(b.name).set((b.nextUpdateMs - now) / 1000);
      g.since.labels(b.name).set((now - b.thisUpdateMs) / 1000);
      g.servableCert.labels(b.name).set(Math.max(0, (servableUntil(b.nextUpdateMs, marginSeconds, b.thisUpdateMs) - now) / 1000));
    }
    const shown = picked?.items.length ?? 0;
    g.attention.set(attention);
    g.dropped.inc(attention - shown);
    const rd = this.#source.readiness();
    g.ready.set(rd.ready ? 1 : 0);
    g.mustStapleMissing.set(rd.mustStapleMissingCount);
    g.storeUp.set(rd.store.connected ? 1 : 0);
  }
}

function certificateMetrics(r: Registry) {
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers: [r] });
  const histogram = (name: string, help: string) => {
    const h = new SnapshotHistogram(name, help);
    r.registerMetric(h as unknown as Metric);
    return h;
  };
  return {
    certificates: gauge('staplerd_certificates', 'Certificates by state', ['state'] as const),
    attention: gauge('staplerd_certificates_attention', 'Certificates that need attention (failing, revoked, unknown, staple running out within metrics.attentionHorizon, must-staple): the ones that get per-certificate series, up to metrics.certificateSeriesLimit'),
    dropped: new Counter({ name: 'staplerd_certificate_series_dropped_total', help: 'Certificates that needed attention but got no series of their own because of metrics.certificateSeriesLimit, summed over scrapes', registers: [r] }),
    untilNextUpdate: histogram('staplerd_staples_until_next_update_seconds', 'Staples held, by seconds until their nextUpdate (at scrape time)'),
    servable: histogram('staplerd_staples_servable_seconds', 'Staples held, by seconds they stay servable (nextUpdate minus margin; 0 once past it), at scrape time'),
    until: gauge('staplerd_staple_seconds_until_next_update', 'Seconds until the staple nextUpdate, per certificate needing attention', ['cert'] as const),
    since: gauge('staplerd_staple_seconds_since_this_update', 'Seconds since the staple thisUpdate, per certificate needing attention', ['cert'] as const),
    servableCert: gauge('staplerd_staple_seconds_servable', 'Seconds the staple stays servable (nextUpdate minus margin), per certificate needing attention', ['cert'] as const),
    state: gauge('staplerd_certificate_state', 'Certificate state (1 for the current state), per certificate needing attention', ['cert', 'state', 'must_staple'] as const),
    ready: gauge('staplerd_ready', '1 when /readyz is 200'),
    storeUp: gauge('staplerd_shared_store_up', '1 when the shared store (fleet mode) is reachable, or when there is none'),
    mustStapleMissing: gauge('staplerd_must_staple_without_staple', 'Must-staple certificates without a servable staple'),
  };
}

/** Cumulative bucket counts of one walk (Prometheus histogram buckets are `le`: value <= bound). */
class BucketCounts {
  readonly bounds: readonly number[];
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const i = this.bounds.findIndex((b) => v <= b);
    if (i !== -1) this.counts[i]!++;
  }
}

/**
 * A histogram that is a snapshot, not a running total (what Prometheus calls a gauge histogram, exposed as
 * a histogram so histogram_quantile() and `le` work): how many staples are how far from running out, now.
 * prom-client's Histogram only adds observations, and 200,000 observe() calls per scrape would cost more
 * than the walk itself.
 */
class SnapshotHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: string[] = [];
  #data: BucketCounts | undefined;

  constructor(readonly name: string, readonly help: string) {}

  set(d: BucketCounts): void {
    this.#data = d;
  }

  reset(): void {
    this.#data = undefined;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> } {
    const d = this.#data ?? new BucketCounts(TIME_BUCKETS);
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    let cumulative = 0;
    d.bounds.forEach((b, i) => {
      cumulative += d.counts[i]!;
      values.push({ labels: { le: b }, value: cumulative, metricName: `${this.name}_bucket` });
    });
    values.push({ labels: { le: '+Inf' }, value: d.count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: d.sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: d.count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
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
