/**
 * Issue 12 items 6 and 9: hooks are limited (learned certificates, a token bucket, a concurrency bound,
 * drops counted and logged once per interval) and their commands get no secrets and survive hostile
 * certificate fields.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import { issueCertificate } from '../../src/demo/ca.js';
import { parseCertificate, type CertInfo } from '../../src/pki/certificate.js';
import { certIdOf } from '../../src/pki/certid.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { Staple } from '../../src/service/staple.js';
import { childEnv, envValue } from '../../src/sinks/child-env.js';
import { DebouncedCommand } from '../../src/sinks/file-sink.js';
import { HookRunner } from '../../src/sinks/hooks.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
const dirs: string[] = [];
const servers: Server[] = [];
after(async () => {
  for (const s of servers) s.close().closeAllConnections();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'staplerd-hooks-'));
  dirs.push(d);
  return d;
}

const LIMITS = { maxPerMinute: 10, burst: 10, concurrency: 2, env: [] as string[] };

function revokedStaple(leaf: CertInfo = f.good): Staple {
  const thisUpdate = new Date(f.now.getTime() - 60_000);
  const der = buildSuccessfulResponse({
    responses: [{ certId: certIdOf(leaf, f.issuer, 'sha1'), status: { kind: 'revoked', at: new Date(f.now.getTime() - 600_000) }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 3600_000) }],
    signer: f.pki.ocspSigner,
    producedAt: f.now,
  });
  return new Staple(verifyOcspResponse({ der, leaf, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300 } }), f.now);
}
const rec = (name: string, o: Partial<CertRecord> = {}): CertRecord => ({ name, source: `/etc/ssl/${name}.pem`, leaf: f.good, issuer: f.issuer, url: 'http://127.0.0.1:9/', ...o });

/** A webhook receiver that holds each request `holdMs` and records the most it held at once. */
async function receiver(holdMs: number): Promise<{ url: string; names: string[]; maxAtOnce: () => number; close: () => void }> {
  const names: string[] = [];
  let open = 0;
  let max = 0;
  const server = createServer((req, res) => {
    open++;
    max = Math.max(max, open);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      names.push((JSON.parse(body) as { name: string }).name);
      setTimeout(() => {
        open--;
        res.writeHead(204).end();
      }, holdMs);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, names, maxAtOnce: () => max, close: () => server.close() };
}

/** A webhook receiver that records each request as it arrives and holds every answer until `release()`. */
async function gatedReceiver(): Promise<{ url: string; names: string[]; release: () => void }> {
  const names: string[] = [];
  const held: ServerResponse[] = [];
  let open = false;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      names.push((JSON.parse(body) as { name: string }).name);
      if (open) res.writeHead(204).end();
      else held.push(res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const release = () => {
    open = true;
    for (const res of held.splice(0)) res.writeHead(204).end();
  };
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, names, release };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hook limits', () => {
  test('a learned certificate turning revoked runs no hook unless learning.hooks is on', async () => {
    const r = await receiver(0);
    const opts = { log: captureLog().log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now };
    const off = new HookRunner({ ...opts, hooks: { revoked: { url: r.url, timeoutMs: 2000, ...LIMITS } } });
    off.onStaple(rec('learned-a', { learned: true }), revokedStaple(), 'fetched');
    off.onStaple(rec('configured'), revokedStaple(), 'fetched');
    await off.stop();
    assert.deepEqual(r.names, ['configured']);
    const on = new HookRunner({ ...opts, learned: true, hooks: { revoked: { url: r.url, timeoutMs: 2000, ...LIMITS } } });
    on.onStaple(rec('learned-b', { learned: true }), revokedStaple(), 'fetched');
    await on.stop();
    r.close();
    assert.deepEqual(r.names, ['configured', 'learned-b']);
  });

  test('a flood of revocations runs the hook at the configured rate; the rest are counted and logged once per interval', async () => {
    const r = await receiver(0);
    const clock = new FakeClock(f.now);
    const cap = captureLog();
    const results: string[] = [];
    const hooks = new HookRunner({
      hooks: { revoked: { url: r.url, timeoutMs: 2000, ...LIMITS, maxPerMinute: 6, burst: 3 } },
      log: cap.log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => clock.now(), clock, onResult: (_e, res) => results.push(res),
    });
    for (let i = 0; i < 50; i++) hooks.onStaple(rec(`c${i}`), revokedStaple(), 'fetched');
    await until(() => r.names.length === 3, 'the burst ran', 30_000);
    assert.equal(hooks.dropped('revoked'), 47);
    assert.equal(results.filter((x) => x === 'dropped').length, 47, 'every drop counted (metrics)');
    const dropLines = () => cap.lines.filter((l) => l.msg.startsWith('hook runs dropped'));
    assert.equal(dropLines().length, 1, 'the first drop is logged at once, the others wait for the interval');
    await clock.advance(60_000);
    assert.equal(dropLines().length, 2, 'one summary line after the interval');
    assert.equal(dropLines().reduce((n, l) => n + Number(l.dropped), 0), 47);
    hooks.onStaple(rec('later'), revokedStaple(), 'fetched');
    await until(() => r.names.includes('later'), 'tokens refilled after a minute', 30_000);
    await hooks.stop();
    r.close();
    assert.equal(r.names.length, 4);
  });

  test('stop() drops the runs still queued behind the concurrency limit and waits for the started one', async () => {
    const r = await gatedReceiver();
    const cap = captureLog();
    const results: string[] = [];
    const hooks = new HookRunner({
      hooks: { revoked: { url: r.url, timeoutMs: 10_000, ...LIMITS, concurrency: 1 } },
      log: cap.log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now, onResult: (_e, res) => results.push(res),
    });
    for (const name of ['c0', 'c1', 'c2']) hooks.onStaple(rec(name), revokedStaple(), 'fetched');
    await until(() => r.names.length === 1, 'the first run reached the receiver', 30_000);
    let stopped = false;
    const stopping = hooks.stop().then(() => (stopped = true));
    await sleep(100);
    assert.equal(stopped, false, 'stop() waits for the run that had started');
    r.release();
    await stopping;
    await sleep(300);
    assert.deepEqual(r.names, ['c0'], 'no queued run started after stop()');
    assert.deepEqual([...results].sort(), ['dropped', 'dropped', 'ok'], 'the queued runs are counted as dropped (metrics)');
    assert.equal(hooks.dropped('revoked'), 2);
    const stopLines = cap.lines.filter((l) => l.msg.startsWith('hook runs dropped at stop'));
    assert.equal(stopLines.length, 1);
    assert.equal(stopLines[0]!.dropped, 2);
  });

  test('a revocation after stop() runs no hook and counts nothing', async () => {
    const d = await tmp();
    const out = join(d, 'runs.out');
    const results: string[] = [];
    const hooks = new HookRunner({
      hooks: { revoked: { command: ['sh', '-c', `echo "$STAPLERD_NAME" >> ${out}`], timeoutMs: 5000, ...LIMITS } },
      log: captureLog().log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now, onResult: (_e, res) => results.push(res),
    });
    await hooks.stop();
    hooks.onStaple(rec('late'), revokedStaple(), 'fetched');
    await sleep(300);
    assert.equal(await readFile(out, 'utf8').catch(() => ''), '', 'the command never ran');
    assert.deepEqual(results, []);
    assert.equal(hooks.dropped('revoked'), 0);
  });

  test('runs at most `concurrency` hooks at once and queues the others', async () => {
    const r = await receiver(150);
    const hooks = new HookRunner({ hooks: { revoked: { url: r.url, timeoutMs: 5000, ...LIMITS, concurrency: 2 } }, log: captureLog().log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now });
    for (let i = 0; i < 6; i++) hooks.onStaple(rec(`c${i}`), revokedStaple(), 'fetched');
    await until(() => r.names.length === 6, 'all six delivered', 30_000);
    await hooks.stop();
    r.close();
    assert.equal(r.maxAtOnce(), 2);
  });
});

describe('hook environment', () => {
  test('a hook command gets no secrets from staplerd\'s environment, only the base set, its allow-list and the event', async () => {
    const d = await tmp();
    const out = join(d, 'env.out');
    const saved = { ...process.env };
    process.env.STAPLERD_ADMIN_TOKEN = 'admin-secret-1';
    process.env.STAPLERD_REDIS_PASSWORD = 'redis-secret-2';
    process.env.SOME_OTHER = 'other-3';
    process.env.ALLOWED_ONE = 'allowed-4';
    try {
      const hooks = new HookRunner({
        hooks: { revoked: { command: ['sh', '-c', `env > ${out}`], timeoutMs: 5000, ...LIMITS, env: ['ALLOWED_ONE', 'STAPLERD_ADMIN_TOKEN'] } },
        log: captureLog().log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now,
      });
      hooks.onStaple(rec('www'), revokedStaple(), 'fetched');
      await hooks.stop();
    } finally {
      for (const k of ['STAPLERD_ADMIN_TOKEN', 'STAPLERD_REDIS_PASSWORD', 'SOME_OTHER', 'ALLOWED_ONE']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
    const env = await readFile(out, 'utf8');
    assert.doesNotMatch(env, /admin-secret-1|redis-secret-2|other-3/, 'no secret, nothing not asked for (even an allow-listed secret)');
    assert.match(env, /^ALLOWED_ONE=allowed-4$/m);
    assert.match(env, /^PATH=/m);
    assert.match(env, /^STAPLERD_EVENT=revoked$/m);
    assert.match(env, /^STAPLERD_NAME=www$/m);
  });

  test('a certificate whose subject holds a NUL byte still runs its hook, with the control characters replaced', async () => {
    const leafCert = issueCertificate({ subjectCN: 'evil\u0000.example\u001b[31m', notBefore: new Date(f.now.getTime() - 3600_000), notAfter: new Date(f.now.getTime() + 86400_000) }, f.pki.issuer);
    const leaf = parseCertificate(leafCert.der);
    assert.ok(leaf.subject.includes('\u0000'), `the parsed subject holds the NUL: ${JSON.stringify(leaf.subject)}`);
    const d = await tmp();
    const out = join(d, 'subject.out');
    const results: string[] = [];
    const hooks = new HookRunner({
      hooks: { revoked: { command: ['sh', '-c', `printf '%s' "$STAPLERD_SUBJECT" > ${out}`], timeoutMs: 5000, ...LIMITS } },
      log: captureLog().log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now, onResult: (_e, r) => results.push(r),
    });
    hooks.onStaple(rec('evil', { leaf }), revokedStaple(leaf), 'fetched');
    await hooks.stop();
    assert.deepEqual(results, ['ok']);
    const got = await readFile(out, 'utf8');
    assert.match(got, /evil\?\.example\?\[31m/);
    assert.doesNotMatch(got, /[\u0000-\u001f]/);
  });

  test('a reload command gets no secrets from staplerd\'s environment', async () => {
    const d = await tmp();
    const out = join(d, 'reload.env');
    const saved = process.env.STAPLERD_ADMIN_TOKEN;
    process.env.STAPLERD_ADMIN_TOKEN = 'admin-secret-5';
    try {
      const reload = new DebouncedCommand({ command: ['sh', '-c', `env > ${out}`], debounceMs: 1, timeoutMs: 5000 }, captureLog().log);
      reload.kick();
      await reload.flush();
      await until(async () => (await readFile(out, 'utf8').catch(() => '')).includes('PATH='), 'the reload ran', 30_000);
    } finally {
      if (saved === undefined) delete process.env.STAPLERD_ADMIN_TOKEN;
      else process.env.STAPLERD_ADMIN_TOKEN = saved;
    }
    assert.doesNotMatch(await readFile(out, 'utf8'), /admin-secret-5/);
  });

  test('childEnv and envValue: base set, allow-list, no secrets, bounded values', () => {
    const env = childEnv(['X'], { STAPLERD_NAME: 'a\nb' }, { PATH: '/bin', X: '1', Y: '2', STAPLERD_REDIS_PASSWORD: 'p' });
    assert.deepEqual(env, { PATH: '/bin', X: '1', STAPLERD_NAME: 'a?b' });
    assert.equal(envValue('x'.repeat(5000)).length, 1024);
  });
});
