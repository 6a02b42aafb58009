import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import { demoStatuses } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { buildApp } from '../../src/http/app.js';
import { Metrics } from '../../src/http/metrics.js';
import { escapeHtml, relative, renderStatusPage } from '../../src/http/status-page.js';
import { zeroCounts } from '../../src/http/states.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { Stapler } from '../../src/service/stapler.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { runStatus, statusTable } from '../../src/status.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
let responder: DemoResponder;
let app: FastifyInstance;
let stapler: Stapler;
let url: string;

before(async () => {
  responder = await startResponder({ issuer: f.pki.issuer, signer: f.pki.ocspSigner, statuses: demoStatuses(f.pki, f.now) });
  const cfg = parseConfig({}, '<inline>', {});
  const log = captureLog().log;
  const client = new HttpResponderClient({ timeoutMs: 1000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'test' });
  let metrics!: Metrics;
  stapler = new Stapler({ clock: systemClock, client, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log, refresh: cfg.refresh, concurrency: 2, nonce: false, onFetch: (u, r, s) => metrics.fetched(u, r, s) });
  metrics = new Metrics(stapler, { marginSeconds: 300, defaultMetrics: false, certificateSeriesLimit: 100, attentionHorizonSeconds: 7200 });
  const records: CertRecord[] = [
    { name: 'www', source: 'www.pem', leaf: f.good, issuer: f.issuer, url: responder.url },
    { name: 'gone', source: 'gone.pem', leaf: f.revoked, issuer: f.issuer, url: responder.url },
    { name: 'broken<b>', source: 'broken.pem', leaf: f.mustStaple, issuer: f.issuer, url: 'http://127.0.0.1:1/' },
    { name: 'quiet', source: 'quiet.pem', leaf: f.good, issuer: f.issuer, url: undefined },
  ];
  await stapler.setRecords(records);
  await stapler.start();
  await until(() => stapler.list().every((c) => c.state !== 'pending'), 'first fetches');
  app = buildApp({ stapler, metrics, version: '9.9.9', log, config: cfg });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
after(async () => {
  await app.close();
  await stapler.stop();
  await responder.close();
});

describe('/metrics', () => {
  test('exports states, staple ages, fetch results by code, latency and served outcomes', async () => {
    await app.inject({ method: 'POST', url: '/ocsp', payload: Buffer.from(buildOcspRequest([f.certId(f.good)])) });
    await app.inject({ method: 'POST', url: '/ocsp', payload: Buffer.from('junk') });
    const r = await app.inject('/metrics');
    assert.match(r.headers['content-type'] as string, /^text\/plain/);
    const m = r.body;
    assert.match(m, /^staplerd_certificates\{state="good"\} 1$/m);
    assert.match(m, /^staplerd_certificates\{state="revoked"\} 1$/m);
    assert.match(m, /^staplerd_certificates\{state="failing"\} 1$/m);
    assert.match(m, /^staplerd_certificates\{state="not_applicable"\} 1$/m);
    assert.match(m, /^staplerd_must_staple_without_staple 1$/m);
    assert.match(m, /^staplerd_ready 0$/m);
    const until = Number(/^staplerd_staple_seconds_until_next_update\{cert="www"\} (\S+)$/m.exec(m)?.[1]);
    assert.ok(until > 3000 && until <= 3600, String(until));
    assert.match(m, /^staplerd_fetch_total\{host="127\.0\.0\.1:\d+",result="ok"\} 2$/m);
    assert.match(m, /^staplerd_fetch_total\{host="127\.0\.0\.1:1",result="FETCH_CONNECT"\} 1$/m);
    assert.match(m, /^staplerd_upstream_request_duration_seconds_count\{host="127\.0\.0\.1:\d+"\} 2$/m);
    assert.match(m, /^staplerd_ocsp_requests_total\{outcome="hit"\} 1$/m);
    assert.match(m, /^staplerd_ocsp_requests_total\{outcome="malformed"\} 1$/m);
    assert.match(m, /^staplerd_certificate_state\{cert="gone",state="revoked",must_staple="false"\} 1$/m);
  });
});

describe('status page', () => {
  test('lists every certificate with its state, and a failing one with its error, escaped', async () => {
    const r = await app.inject('/');
    assert.equal(r.statusCode, 200);
    assert.match(r.headers['content-type'] as string, /text\/html/);
    for (const name of ['www', 'gone', 'quiet']) assert.match(r.body, new RegExp(`data-cert="${name}"`));
    assert.match(r.body, /data-cert="broken&lt;b&gt;" data-state="failing"/);
    assert.ok(!r.body.includes('broken<b>'), 'names are escaped');
    assert.match(r.body, /<code>FETCH_CONNECT<\/code>/);
    assert.match(r.body, /version 9\.9\.9/);
  });

  test('relative times and escaping', () => {
    const now = Date.UTC(2026, 0, 1);
    assert.equal(relative(new Date(now + 3600_000).toISOString(), now), 'in 60m');
    assert.equal(relative(new Date(now - 30_000).toISOString(), now), '30s ago');
    assert.equal(relative(new Date(now + 3 * 86400_000).toISOString(), now), 'in 3d');
    assert.equal(relative(null, now), '–');
    assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const empty = { next: null, matched: 0, total: 0, counts: zeroCounts() };
    assert.match(renderStatusPage({ views: [], page: empty, query: { limit: 100 }, now: new Date(now), ready: true, version: '1' }), /no certificates/);
  });
});

describe('staplerd status', () => {
  test('prints the table from a running daemon and exits 1 when something is failing or revoked', async () => {
    const lines: string[] = [];
    const code = await runStatus(url, (s) => lines.push(s), () => undefined);
    assert.equal(code, 1);
    const text = lines.join('\n');
    assert.match(text, /^CERTIFICATE\s+STATE/m);
    assert.match(text, /^broken<b>\s+failing\s+yes\s+.*FETCH_CONNECT$/m);
    assert.match(text, /^www\s+good\s/m);
  });

  test('exits 2 when the daemon cannot be reached', async () => {
    const errs: string[] = [];
    assert.equal(await runStatus('http://127.0.0.1:1', () => undefined, (s) => errs.push(s)), 2);
    assert.match(errs[0]!, /cannot read/);
  });

  test('the table has a header and aligned columns', () => {
    const t = statusTable(stapler.list(), new Date()).split('\n');
    assert.equal(t.length, 5);
    assert.equal(t[0]!.indexOf('STATE'), t[1]!.indexOf(t[1]!.split(/\s+/)[1]!));
  });
});

describe('fast path over a real socket', () => {
  test('a hit is served with the staple; If-None-Match still gets its 304 (through the Fastify route)', async () => {
    const path = `${url}/ocsp/${encodeURIComponent(Buffer.from(buildOcspRequest([f.certId(f.good)])).toString('base64'))}`;
    const hit = await fetch(path);
    assert.equal(hit.status, 200);
    assert.equal(hit.headers.get('content-type'), 'application/ocsp-response');
    const etag = hit.headers.get('etag')!;
    assert.match(etag, /^"[0-9a-f]{64}"$/);
    assert.ok((await hit.arrayBuffer()).byteLength > 100);
    const again = await fetch(path, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
  });
});

