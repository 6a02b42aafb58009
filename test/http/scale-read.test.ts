/**
 * The read side at thousands of certificates (issue 14): paged and filtered /v1/certificates, the status
 * page's size bound, problems first, /metrics under its cardinality cap, and `staplerd status` paging. One
 * in-process app over a real Stapler: a few certificates fetched from the demo responder (good, revoked,
 * failing), thousands more without an OCSP URL (never fetched) under synthetic names.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import { demoStatuses } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { buildApp } from '../../src/http/app.js';
import { decodeCursor, encodeCursor } from '../../src/http/catalog.js';
import { Metrics } from '../../src/http/metrics.js';
import { MAX_PAGE } from '../../src/http/api-routes.js';
import type { CertificateView } from '../../src/service/staple.js';
import { Stapler } from '../../src/service/stapler.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { runStatus } from '../../src/status.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
const SYNTHETIC = 3000;
let responder: DemoResponder;
let stapler: Stapler;
let app: FastifyInstance;
let url: string;
let allNames: string[];
let records: CertRecord[];
const cfg = parseConfig({}, '<inline>', {});

interface ListBody {
  certificates: CertificateView[];
  next: string | null;
  matched: number;
  total: number;
  counts: Record<string, number>;
}

before(async () => {
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now) });
  const log = captureLog('warn').log;
  const client = new HttpResponderClient({ timeoutMs: 1000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'test' });
  stapler = new Stapler({ clock: systemClock, client, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log, refresh: cfg.refresh, concurrency: 2, nonce: false });
  records = [
    { name: 'www.example', source: 'www.pem', leaf: f.good, issuer: f.issuer, url: responder.url },
    { name: 'gone.example', source: 'gone.pem', leaf: f.revoked, issuer: f.issuer, url: responder.url },
    { name: 'zz-broken<b>&"', source: 'broken.pem', leaf: f.mustStaple, issuer: f.issuer, url: 'http://127.0.0.1:1/' },
  ];
  // Synthetic names in no particular order (the map keeps insertion order; pages must not depend on it).
  for (let i = 0; i < SYNTHETIC; i++) {
    const n = (i * 7919) % SYNTHETIC;
    records.push({ name: `host-${String(n).padStart(5, '0')}.example`, source: `h${n}.pem`, leaf: n % 3 === 0 ? f.mustStaple : f.good, issuer: f.issuer, url: undefined });
  }
  allNames = records.map((r) => r.name).sort();
  await stapler.setRecords(records);
  await stapler.start();
  await until(() => [...stapler.briefs()].every((b) => b.state !== 'pending'), 'first fetches', 60_000);
  const metrics = new Metrics(stapler, { marginSeconds: cfg.refresh.marginSeconds, defaultMetrics: false, certificateSeriesLimit: 2, attentionHorizonSeconds: 7200 });
  app = buildApp({ stapler, metrics, version: 't', log, config: cfg });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
after(async () => {
  await app.close();
  await stapler.stop();
  await responder.close();
});

const list = async (qs: string): Promise<{ status: number; body: ListBody; link: string | undefined }> => {
  const r = await app.inject(`/v1/certificates${qs}`);
  return { status: r.statusCode, body: r.json() as ListBody, link: r.headers.link as string | undefined };
};

describe('GET /v1/certificates, paged', () => {
  test('a first page of 100 by name, with the counts of all and a cursor and Link to the next', async () => {
    const { status, body, link } = await list('');
    assert.equal(status, 200);
    assert.deepEqual(body.certificates.map((c) => c.name), allNames.slice(0, 100));
    assert.equal(body.total, SYNTHETIC + 3);
    assert.equal(body.matched, SYNTHETIC + 3);
    assert.equal(Object.values(body.counts).reduce((a, b) => a + b, 0), body.total);
    assert.deepEqual([body.counts.good, body.counts.revoked, body.counts.failing, body.counts.not_applicable], [1, 1, 1, SYNTHETIC]);
    assert.equal(decodeCursor(body.next!), allNames[99]);
    assert.equal(link, `</v1/certificates?cursor=${body.next}>; rel="next"`);
  });

  test('following the cursors visits every certificate once, in name order, and the last page has no next', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const { body } = await list(`?limit=${MAX_PAGE}${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(body.certificates.length <= MAX_PAGE);
      seen.push(...body.certificates.map((c) => c.name));
      cursor = body.next;
      pages++;
    } while (cursor && pages < 100);
    assert.deepEqual(seen, allNames);
    assert.equal(pages, Math.ceil(allNames.length / MAX_PAGE));
  });

  test('a page boundary holds when the certificate named by the cursor is removed meanwhile', async () => {
    const first = (await list('?limit=10')).body;
    const last = first.certificates.at(-1)!.name;
    stapler.remove(last);
    try {
      const second = (await list(`?limit=10&cursor=${first.next}`)).body;
      assert.deepEqual(second.certificates.map((c) => c.name), allNames.slice(10, 20));
    } finally {
      assert.equal((await list(`?prefix=${encodeURIComponent(last)}`)).body.matched, 0, 'removed');
      await stapler.setRecords(records);
    }
    assert.equal((await list('')).body.total, allNames.length, 'put back');
  });

  test('an invalid cursor or limit is a 400 with a code, not a 500 or an empty page', async () => {
    for (const bad of ['!!!', '_w', encodeCursor('x') + '=', 'QR', 'a'.repeat(2000)]) {
      const r = await app.inject(`/v1/certificates?cursor=${encodeURIComponent(bad)}`);
      assert.equal(r.statusCode, 400, bad);
      assert.ok(['BAD_CURSOR', 'FST_ERR_VALIDATION'].includes(r.json().error.code), `${bad}: ${r.body}`);
    }
    assert.equal((await app.inject('/v1/certificates?cursor=_w')).json().error.code, 'BAD_CURSOR', 'invalid UTF-8');
    for (const q of ['limit=0', `limit=${MAX_PAGE + 1}`, 'limit=ten', 'state=bogus', 'state=good,', 'mustStaple=maybe']) {
      assert.equal((await app.inject(`/v1/certificates?${q}`)).statusCode, 400, q);
    }
  });

  test('filters by state, by must-staple and by name prefix, and counts what matched', async () => {
    const revoked = (await list('?state=revoked')).body;
    assert.deepEqual(revoked.certificates.map((c) => c.name), ['gone.example']);
    assert.equal(revoked.matched, 1);
    assert.equal(revoked.next, null);
    const two = (await list('?state=failing,revoked')).body;
    assert.deepEqual(two.certificates.map((c) => [c.name, c.state]), [['gone.example', 'revoked'], ['zz-broken<b>&"', 'failing']]);
    const ms = (await list('?mustStaple=true&limit=500')).body;
    assert.equal(ms.matched, Math.ceil(SYNTHETIC / 3) + 1);
    assert.ok(ms.certificates.every((c) => c.mustStaple));
    const notMs = (await list('?mustStaple=false&state=good')).body;
    assert.deepEqual(notMs.certificates.map((c) => c.name), ['www.example']);
    const prefixed = (await list('?prefix=host-001')).body;
    assert.equal(prefixed.matched, 100);
    assert.ok(prefixed.certificates.every((c) => c.name.startsWith('host-001')));
    const combined = (await list('?prefix=host-001&mustStaple=true&limit=5')).body;
    assert.equal(combined.matched, 33);
    assert.match(combined.next!, /^[A-Za-z0-9_-]+$/);
    const next = await list(`?prefix=host-001&mustStaple=true&limit=5&cursor=${combined.next}`);
    assert.ok(next.body.certificates.every((c) => c.mustStaple && c.name.startsWith('host-001') && c.name > combined.certificates[4]!.name));
    assert.match(next.link!, /prefix=host-001/);
  });
});

describe('status page at thousands of certificates', () => {
  test('stays under 512 KB: counts by state, problems first, one page of rows and a link to the next', async () => {
    const r = await app.inject('/');
    assert.equal(r.statusCode, 200);
    assert.ok(r.body.length < 512 * 1024, `${r.body.length} bytes`);
    const problems = r.body.slice(r.body.indexOf('<table id="problems">'), r.body.indexOf('<table id="certificates">'));
    const order = [...problems.matchAll(/data-cert="([^"]*)" data-state="(\w+)"/g)].map((m) => [m[1], m[2]]);
    assert.deepEqual(order, [['zz-broken&lt;b&gt;&amp;&quot;', 'failing'], ['gone.example', 'revoked']]);
    const main = r.body.slice(r.body.indexOf('<table id="certificates">'));
    assert.equal([...main.matchAll(/<tr data-cert=/g)].length, 100);
    assert.match(r.body, /3000 not_applicable/);
    assert.ok(!r.body.includes('zz-broken<b>'), 'names stay escaped');
    const next = /<a href="([^"]+)" rel="next">/.exec(r.body)![1]!.replaceAll('&amp;', '&');
    const second = await app.inject(next);
    const rows = [...second.body.matchAll(/<tr data-cert="([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(rows, allNames.slice(100, 200));
    assert.ok(!second.body.includes('id="problems"'), 'problems only on the first page');
  });

  test('filters like the JSON API and rejects a bad cursor with a 400 page', async () => {
    const r = await app.inject('/?state=revoked');
    assert.deepEqual([...r.body.matchAll(/<tr data-cert="([^"]*)"/g)].map((m) => m[1]), ['gone.example']);
    assert.match(r.body, /<option value="revoked" selected>/);
    const ms = await app.inject('/?mustStaple=true&prefix=host-00');
    assert.ok([...ms.body.matchAll(/<tr data-cert="([^"]*)"/g)].every((m) => m[1]!.startsWith('host-00')));
    assert.equal((await app.inject('/?cursor=_w')).statusCode, 400);
  });
});

describe('certificates without an OCSP URL (issue 13 item 8)', () => {
  test('the status page says to turn stapling off for them and names their files, the first 50', async () => {
    const r = await app.inject('/');
    const section = r.body.slice(r.body.indexOf('id="no-ocsp-url"'), r.body.indexOf('<h2>Certificates'));
    assert.match(section, new RegExp(`No OCSP URL: ${SYNTHETIC} \\(the first 50; <a href="/\\?state=not_applicable">`));
    assert.match(section, /ssl_stapling off;/);
    assert.match(section, /SSLUseStapling off/);
    const files = [...section.matchAll(/<li><code>([^<]*)<\/code>: <code>([^<]*)<\/code><\/li>/g)];
    assert.equal(files.length, 50);
    const sources = new Map(records.map((x) => [x.name, x.source]));
    for (const [, name, source] of files) assert.equal(source, sources.get(name!), `${name} is listed with its own file`);
    assert.deepEqual(files.map((m) => m[1]), allNames.filter((n) => n.startsWith('host-')).slice(0, 50));
    const filtered = await app.inject('/?state=good');
    assert.ok(!filtered.body.includes('id="no-ocsp-url"'), 'only on the unfiltered first page');
  });

  test('staplerd status prints the same advice with their files after the table', async () => {
    const out: string[] = [];
    await runStatus(url, (x) => out.push(x), () => undefined);
    const at = out.findIndex((l) => l.includes('without an OCSP URL'));
    assert.ok(at > 0, out.slice(0, 3).join('\n'));
    assert.match(out[at]!, new RegExp(`^${SYNTHETIC} without an OCSP URL\\..*ssl_stapling off;`));
    assert.match(out[at + 1]!, /^ {2}host-00000\.example {2}h0\.pem$/);
    assert.match(out[out.length - 1]!, new RegExp(`… ${SYNTHETIC - 50} more: staplerd status --all --state not_applicable`));
    const failing: string[] = [];
    await runStatus(url, (x) => failing.push(x), () => undefined, { state: 'failing' });
    assert.ok(!failing.some((l) => l.includes('without an OCSP URL')), 'not when a state filter was asked for');
  });
});

describe('/metrics under its cardinality cap', () => {
  test('aggregates cover every certificate; the most pressing get series up to the cap; the rest are counted as dropped', async () => {
    const text = (await app.inject('/metrics')).body;
    const value = (re: RegExp) => Number(re.exec(text)?.[1]);
    const sum = [...text.matchAll(/^staplerd_certificates\{state="\w+"\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
    assert.equal(sum, SYNTHETIC + 3);
    // Attention: failing, revoked, the good staple (1 h window < 2 h horizon), and every must-staple one.
    const attention = 3 + Math.ceil(SYNTHETIC / 3);
    assert.equal(value(/^staplerd_certificates_attention (\d+)$/m), attention);
    const series = [...text.matchAll(/^staplerd_certificate_state\{cert="((?:[^"\\]|\\.)*)",state="(\w+)"/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(series, [['zz-broken<b>&\\"', 'failing'], ['gone.example', 'revoked']]);
    assert.equal(value(/^staplerd_certificate_series_dropped_total (\d+)$/m), attention - 2);
    // Two staples held (good and revoked); the histogram is a snapshot, so a second scrape counts them again.
    assert.equal(value(/^staplerd_staples_servable_seconds_count (\d+)$/m), 2);
    assert.equal(value(/^staplerd_staples_until_next_update_seconds_bucket\{le="7200"\} (\d+)$/m), 2);
    const again = (await app.inject('/metrics')).body;
    assert.match(again, /^staplerd_staples_servable_seconds_count 2$/m);
    assert.match(again, new RegExp(`^staplerd_certificate_series_dropped_total ${2 * (attention - 2)}$`, 'm'));
  });

  test('below the cap every certificate needing attention has its series, and no other does', async () => {
    const m = new Metrics(stapler, { marginSeconds: cfg.refresh.marginSeconds, defaultMetrics: false, certificateSeriesLimit: 5000, attentionHorizonSeconds: 7200 });
    const text = await m.render();
    const withSeries = new Set([...text.matchAll(/^staplerd_certificate_state\{cert="((?:[^"\\]|\\.)*)"/gm)].map((x) => x[1]));
    const expected = new Set([...stapler.briefs()].filter((b) => b.mustStaple || ['failing', 'revoked', 'good'].includes(b.state)).map((b) => b.name.replace(/["\\]/g, (c) => `\\${c}`)));
    assert.deepEqual(withSeries, expected);
    assert.match(text, /^staplerd_certificate_series_dropped_total 0$/m);
    assert.match(text, /^staplerd_staple_seconds_until_next_update\{cert="www\.example"\} \d/m);
    assert.ok(!/cert="host-00001\.example"/.test(text), 'a quiet certificate has no series');
    assert.ok(text.length < 1024 * 1024, `${text.length} bytes`);
  });

  test('the horizon decides whether a healthy staple gets series', async () => {
    const m = new Metrics(stapler, { marginSeconds: cfg.refresh.marginSeconds, defaultMetrics: false, certificateSeriesLimit: 5000, attentionHorizonSeconds: 60 });
    const text = await m.render();
    assert.ok(!/cert="www\.example"/.test(text), 'www has most of an hour left: outside a 60 s horizon');
    assert.match(text, /cert="gone\.example"/);
  });
});

describe('staplerd status, paged', () => {
  test('prints the first page with a hint, exits on the counts of all; --all and --state fetch what they say', async () => {
    const out: string[] = [];
    assert.equal(await runStatus(url, (s) => out.push(s), () => undefined), 1, 'failing and revoked exist, beyond the first page');
    assert.equal(out[0]!.split('\n').length, 101);
    assert.match(out[1]!, new RegExp(`${SYNTHETIC + 3 - 100} more .*--all`));
    const all: string[] = [];
    await runStatus(url, (s) => all.push(s), () => undefined, { all: true });
    assert.ok(!all.some((l) => /more \(.*--all/.test(l)), 'no hint');
    assert.deepEqual(all[0]!.split('\n').slice(1).map((l) => l.split(/\s{2,}/)[0]), allNames);
    const some: string[] = [];
    await runStatus(url, (s) => some.push(s), () => undefined, { state: 'failing,revoked' });
    assert.deepEqual(some[0]!.split('\n').slice(1).map((l) => l.split(/\s{2,}/)[0]), ['gone.example', 'zz-broken<b>&"']);
    const errs: string[] = [];
    assert.equal(await runStatus(url, () => undefined, (s) => errs.push(s), { state: 'bogus' }), 2);
    assert.match(errs[0]!, /HTTP 400/);
  });
});
