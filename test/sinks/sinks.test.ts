import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { Staple, briefOf, viewOf, type Entry } from '../../src/service/staple.js';
import { FileSink, stapleFilePath } from '../../src/sinks/file-sink.js';
import { HaproxySink, processIdentity, socketTarget } from '../../src/sinks/haproxy-sink.js';
import { HookRunner } from '../../src/sinks/hooks.js';
import { SinkRunner } from '../../src/sinks/runner.js';
import type { StapleSink } from '../../src/sinks/sink.js';
import type { CertRecord } from '../../src/sources/certificates.js';
import { isStaplerError } from '../../src/errors.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

const f = fixture();
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'staplerd-sinks-'));
  dirs.push(d);
  return d;
}

function stapleFor(leaf = f.good, offsetMs = 0, status: 'good' | 'revoked' | 'unknown' = 'good'): Staple {
  const thisUpdate = new Date(f.now.getTime() - 60_000 + offsetMs);
  const st = status === 'revoked' ? { kind: 'revoked' as const, at: new Date(f.now.getTime() - 600_000) } : { kind: status };
  const der = buildSuccessfulResponse({ responses: [{ certId: f.certId(leaf), status: st, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 3600_000) }], signer: f.pki.ocspSigner, producedAt: f.now });
  return new Staple(verifyOcspResponse({ der, leaf, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300 } }), f.now);
}
/** The schema's default hook limits. */
const LIMITS = { maxPerMinute: 10, burst: 10, concurrency: 2, env: [] as string[] };
const rec = (name: string, source = `/etc/ssl/${name}.pem`): CertRecord => ({ name, source, leaf: f.good, issuer: f.issuer, url: 'http://127.0.0.1:9/' });

/** A must-staple staple verified now, from a minute ago until `nextUpdateInMs` from now. */
function stapleUntil(nextUpdateInMs: number, status: 'good' | 'revoked' = 'good', leaf = f.mustStaple): Staple {
  const thisUpdate = new Date(f.now.getTime() - 60_000);
  const st = status === 'revoked' ? { kind: 'revoked' as const, at: new Date(f.now.getTime() - 600_000) } : { kind: status };
  const der = buildSuccessfulResponse({ responses: [{ certId: f.certId(leaf), status: st, thisUpdate, nextUpdate: new Date(f.now.getTime() + nextUpdateInMs) }], signer: f.pki.ocspSigner, producedAt: f.now });
  return new Staple(verifyOcspResponse({ der, leaf, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300 } }), f.now);
}
/** A service entry as CertIndex.add makes it (a must-staple leaf unless `r` says otherwise), with `o` applied. */
function entry(name: string, o: Partial<Entry>, r: Partial<CertRecord> = {}): Entry {
  const record: CertRecord = { name, source: `/etc/ssl/${name}.pem`, leaf: f.mustStaple, issuer: f.issuer, url: 'http://127.0.0.1:9/', ...r };
  return { record, keys: [], staple: undefined, alt: undefined, altFailures: 0, unknown: undefined, unknownCount: 0, failures: 0, lastError: undefined, generation: 0, reported: 'pending', ...o };
}
/** What the service answers about `entries` at f.now (margin 300 s), as StapleAnswers does; names the views built. */
function catalog(entries: Entry[]) {
  const viewed: string[] = [];
  return {
    viewed,
    *briefs() {
      for (const e of entries) yield briefOf(e, f.now, 300);
    },
    view(name: string) {
      viewed.push(name);
      const e = entries.find((x) => x.record.name === name);
      return e && viewOf(e, f.now, 300, undefined);
    },
  };
}

/** A HookRunner with only the must-staple expiry hook (within an hour), over `certs`, at f.now. */
function mustStapleRunner(command: string[], certs: ReturnType<typeof catalog>, results: string[]): HookRunner {
  return new HookRunner({
    hooks: { mustStapleExpiring: { command, timeoutMs: 5000, withinSeconds: 3600, ...LIMITS } },
    log: captureLog().log,
    briefs: () => certs.briefs(),
    view: (name) => certs.view(name),
    marginSeconds: 300,
    now: () => f.now,
    onResult: (_e, r) => results.push(r),
  });
}

describe('FileSink', () => {
  test('writes the DER atomically, only when it changed, and runs the reload once per burst', async () => {
    const d = await tmp();
    const marker = join(d, 'reloads');
    const sink = new FileSink({ path: join(d, '{name}.der'), createEmpty: false, reload: { command: ['sh', '-c', `echo x >> ${marker}`], debounceMs: 100, timeoutMs: 5000 } }, captureLog().log);
    const s1 = stapleFor();
    await sink.push(rec('www'), s1);
    await sink.push(rec('www'), s1);
    await sink.push(rec('api'), stapleFor(f.good, 1000));
    assert.ok((await readFile(join(d, 'www.der'))).equals(s1.body));
    await until(async () => (await readFile(marker, 'utf8').catch(() => '')).length > 0, 'reload ran');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await readFile(marker, 'utf8')).trim().split('\n').length, 1, 'a burst of writes ran the reload once');
    const before = (await stat(join(d, 'www.der'))).mtimeMs;
    await sink.push(rec('www'), s1);
    assert.equal((await stat(join(d, 'www.der'))).mtimeMs, before, 'unchanged content is not rewritten');
    await sink.close();
  });

  test('expands {chain} and creates missing files empty without touching existing ones', async () => {
    const d = await tmp();
    assert.equal(stapleFilePath('{chain}.ocsp', rec('www', '/etc/haproxy/www.pem')), '/etc/haproxy/www.pem.ocsp');
    const sink = new FileSink({ path: '{chain}.ocsp', createEmpty: true }, captureLog().log);
    await writeFile(join(d, 'b.pem.ocsp'), 'keep');
    const made = await sink.createMissing([rec('a', join(d, 'a.pem')), rec('b', join(d, 'b.pem')), { ...rec('c', join(d, 'c.pem')), url: undefined }]);
    assert.deepEqual(made, [join(d, 'a.pem.ocsp')]);
    assert.equal((await readFile(join(d, 'a.pem.ocsp'))).length, 0);
    assert.equal(await readFile(join(d, 'b.pem.ocsp'), 'utf8'), 'keep');
    const plain = new FileSink({ path: '{chain}.ocsp', createEmpty: false }, captureLog().log);
    assert.deepEqual(await plain.createMissing([rec('z', join(d, 'z.pem'))]), [], 'only sinks with createEmpty create files');
  });

  test('removing a certificate deletes its staple file, unless its replacement writes the same path', async () => {
    const d = await tmp();
    const sink = new FileSink({ path: join(d, '{name}-{fingerprint}.der'), createEmpty: false }, captureLog().log);
    await sink.push(rec('www'), stapleFor());
    await sink.push(rec('api'), stapleFor());
    const www = stapleFilePath(join(d, '{name}-{fingerprint}.der'), rec('www'));
    const api = stapleFilePath(join(d, '{name}-{fingerprint}.der'), rec('api'));
    await sink.remove(rec('api'), rec('api'));
    assert.ok((await stat(api)).isFile(), 'replaced by a certificate with the same path: kept');
    await sink.remove(rec('www'), undefined);
    await assert.rejects(stat(www), /ENOENT/);
    await sink.remove(rec('www'), undefined); // already gone: not an error
    const renewed = { ...rec('api'), leaf: f.revoked };
    await sink.remove(rec('api'), renewed);
    await assert.rejects(stat(api), /ENOENT/, 'renewed under another fingerprint: the old path goes');
  });

  test('{chain} is skipped for learned certificates (they have no chain file), with one log line', async () => {
    const cap = captureLog();
    const sink = new FileSink({ path: '{chain}.ocsp', createEmpty: false }, cap.log);
    const learned = { ...rec('learned-a', 'learned from a request (issuer CN=x)'), learned: true as const };
    assert.equal(sink.accepts(learned, stapleFor()), false);
    assert.equal(sink.accepts({ ...learned, name: 'learned-b' }, stapleFor()), false);
    assert.equal(sink.accepts(rec('www'), stapleFor()), true, 'configured certificates have a chain file');
    assert.equal(cap.lines.filter((l) => /\{chain\}/.test(l.msg)).length, 1);
    const byName = new FileSink({ path: '/x/{name}.ocsp', createEmpty: false }, cap.log);
    assert.equal(byName.accepts(learned, stapleFor()), true);
  });

  test('takes good and revoked staples, not unknown ones (HAProxy refuses those)', () => {
    const sink = new FileSink({ path: '/x/{name}', createEmpty: false, certificates: ['www'] }, captureLog().log);
    assert.equal(sink.accepts(rec('www'), stapleFor()), true);
    assert.equal(sink.accepts(rec('www'), stapleFor(f.good, 0, 'unknown')), false);
    assert.equal(sink.accepts(rec('other'), stapleFor()), false, 'certificate filter');
  });
});

/** A stats socket that answers like HAProxy 2.6 (one command per connection, then close). */
async function fakeHaproxy(answer: (cmd: string) => string): Promise<{ server: Server; path: string; commands: string[] }> {
  const path = join(await tmp(), 'admin.sock');
  const commands: string[] = [];
  const server = createServer((c) => {
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.endsWith('\n')) {
        commands.push(buf.trim());
        c.end(answer(buf.trim()));
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, path, commands };
}

describe('HaproxySink', () => {
  test('keeps HAProxy\'s own rule: nothing with 300 s or less to nextUpdate, nothing without nextUpdate', () => {
    const at = (ms: number) => ({ now: () => new Date(ms), nowMs: () => ms, setTimer: () => ({ cancel() {} }) });
    const s = stapleFor();
    const sinkAt = (ms: number) => new HaproxySink({ socket: '/nonexistent', timeoutMs: 1000, checkIntervalMs: 60_000 }, captureLog().log, at(ms));
    assert.equal(sinkAt(s.nextUpdateMs - 301_000).accepts(rec('www'), s), true);
    assert.equal(sinkAt(s.nextUpdateMs - 300_000).accepts(rec('www'), s), false, 'HAProxy refuses within 300 s');
    const der = buildSuccessfulResponse({ responses: [{ certId: f.certId(f.good), status: { kind: 'good' }, thisUpdate: new Date(f.now.getTime() - 60_000) }], signer: f.pki.ocspSigner, producedAt: f.now });
    const assumed = new Staple(verifyOcspResponse({ der, leaf: f.good, issuer: f.issuer, now: f.now, policy: { skewSeconds: 300, marginSeconds: 300, assumeValiditySeconds: 43200 } }), f.now);
    assert.equal(assumed.nextUpdateAssumed, true);
    assert.equal(sinkAt(f.now.getTime()).accepts(rec('www'), assumed), false, 'HAProxy refuses a response without nextUpdate');
  });

  test('pushes base64 DER and succeeds only on "OCSP Response updated!"', async () => {
    let reply = 'OCSP Response updated!\n\n';
    const h = await fakeHaproxy(() => reply);
    const sink = new HaproxySink({ socket: h.path, timeoutMs: 1000, checkIntervalMs: 60_000 }, captureLog().log);
    const s = stapleFor();
    await sink.push(rec('www'), s);
    assert.equal(h.commands[0], `set ssl ocsp-response ${s.body.toString('base64')}`);
    reply = 'OCSP single response: Certificate ID does not match any certificate or issuer.\n\n';
    await assert.rejects(sink.push(rec('www'), s), (e: unknown) => isStaplerError(e) && e.code === 'HAPROXY_CERTID_MISMATCH');
    reply = 'Unable to parse OCSP response.\n\n';
    await assert.rejects(sink.push(rec('www'), s), (e: unknown) => isStaplerError(e) && e.code === 'HAPROXY_REJECTED');
    h.server.close();
    await assert.rejects(sink.push(rec('www'), s), (e: unknown) => isStaplerError(e) && e.code === 'HAPROXY_UNREACHABLE');
  });

  test('notices a restart through show info and asks for a full push', async () => {
    let pid = 100;
    const h = await fakeHaproxy((cmd) => (cmd === 'show info' ? `Name: HAProxy\nPid: ${pid}\nStart_time_sec: ${pid * 10}\n` : 'OCSP Response updated!\n'));
    const sink = new HaproxySink({ socket: h.path, timeoutMs: 1000, checkIntervalMs: 50 }, captureLog().log);
    let resets = 0;
    const stop = sink.watch(() => resets++);
    await until(() => h.commands.filter((c) => c === 'show info').length >= 2, 'two checks');
    assert.equal(resets, 0);
    pid = 200;
    await until(() => resets === 1, 'reset after restart');
    stop();
    h.server.close();
  });

  test('parses socket targets and process identities', () => {
    assert.deepEqual(socketTarget('/run/haproxy/admin.sock'), { path: '/run/haproxy/admin.sock' });
    assert.deepEqual(socketTarget('127.0.0.1:9999'), { host: '127.0.0.1', port: 9999 });
    assert.deepEqual(socketTarget('[::1]:9999'), { host: '::1', port: 9999 });
    assert.equal(processIdentity('Pid: 7\nStart_time_sec: 99\n'), '7@99');
    assert.equal(processIdentity('nothing'), undefined);
  });
});

describe('SinkRunner', () => {
  function recordingSink(failTimes: number): StapleSink & { pushed: string[]; attempts: number } {
    const s = {
      name: 'test',
      pushed: [] as string[],
      attempts: 0,
      accepts: () => true,
      async push(r: CertRecord, st: Staple) {
        s.attempts++;
        if (s.attempts <= failTimes) throw new Error('down');
        s.pushed.push(`${r.name}@${st.thisUpdate.getTime()}`);
      },
    };
    return s;
  }

  test('retries a failing sink with backoff and delivers only the newest staple per certificate', async () => {
    const sink = recordingSink(2);
    const cap = captureLog();
    const runner = new SinkRunner({ sinks: [sink], log: cap.log, retryInitialMs: 20, retryMaxMs: 100, current: () => [] });
    const old = stapleFor();
    const newer = stapleFor(f.good, 5000);
    runner.offer(rec('www'), old);
    runner.offer(rec('www'), newer);
    await until(() => sink.pushed.length === 1, 'delivered');
    assert.deepEqual(sink.pushed, [`www@${newer.thisUpdate.getTime()}`]);
    assert.equal(cap.atLeast(40).length, 1, 'one warning for repeated failures');
    await runner.stop();
  });

  test('learned certificates go to the sinks only when learning.sinks is on', async () => {
    const learned = { ...rec('learned-x'), learned: true as const };
    const off = recordingSink(0);
    const runner = new SinkRunner({ sinks: [off], log: captureLog().log, retryInitialMs: 20, retryMaxMs: 100, current: () => [[learned, stapleFor()]] });
    runner.offer(learned, stapleFor());
    runner.offer(rec('www'), stapleFor());
    runner.resync();
    await runner.idle();
    assert.deepEqual(off.pushed.map((p) => p.split('@')[0]), ['www']);
    await runner.stop();
    const on = recordingSink(0);
    const runner2 = new SinkRunner({ sinks: [on], log: captureLog().log, retryInitialMs: 20, retryMaxMs: 100, current: () => [], learned: true });
    runner2.offer(learned, stapleFor());
    await runner2.idle();
    assert.deepEqual(on.pushed.map((p) => p.split('@')[0]), ['learned-x']);
    await runner2.stop();
  });

  test('a failing push stops retrying once its certificate is removed', async () => {
    const sink = recordingSink(Infinity);
    const runner = new SinkRunner({ sinks: [sink], log: captureLog().log, retryInitialMs: 10, retryMaxMs: 10, current: () => [] });
    const r = rec('gone');
    runner.offer(r, stapleFor());
    await until(() => sink.attempts >= 3, 'retrying', 30_000);
    await runner.forget(r);
    await runner.idle();
    const after = sink.attempts;
    await new Promise((res) => setTimeout(res, 200)); // twenty retry intervals
    assert.ok(sink.attempts <= after + 1, `still retrying after removal: ${after} then ${sink.attempts}`);
    await runner.stop();
  });

  test('resync pushes every current staple again', async () => {
    const sink = recordingSink(0);
    const runner = new SinkRunner({ sinks: [sink], log: captureLog().log, retryInitialMs: 20, retryMaxMs: 100, current: () => [[rec('a'), stapleFor()], [rec('b'), stapleFor()]] });
    runner.resync();
    await runner.idle();
    assert.deepEqual(sink.pushed.map((p) => p.split('@')[0]).sort(), ['a', 'b']);
    await runner.stop();
  });
});

describe('HookRunner', () => {
  test('runs the revoked hook once per transition to revoked, with details in the environment', async () => {
    const d = await tmp();
    const out = join(d, 'hook.out');
    const hooks = new HookRunner({
      hooks: { revoked: { command: ['sh', '-c', `echo "$STAPLERD_EVENT $STAPLERD_NAME $STAPLERD_SERIAL" >> ${out}`], timeoutMs: 5000, ...LIMITS } },
      log: captureLog().log,
      briefs: () => [], view: () => undefined,
      marginSeconds: 300,
      now: () => f.now,
    });
    hooks.onStaple(rec('www'), stapleFor(), 'fetched');
    hooks.onStaple(rec('www'), stapleFor(f.good, 0, 'revoked'), 'fetched');
    hooks.onStaple(rec('www'), stapleFor(f.good, 1000, 'revoked'), 'fetched');
    hooks.onStaple(rec('api'), stapleFor(f.good, 0, 'revoked'), 'loaded');
    await hooks.stop();
    assert.equal((await readFile(out, 'utf8')).trim(), `revoked www ${f.good.serialHex}`);
  });

  test('posts JSON to the webhook URL, and reports a failing one', async () => {
    const got: Array<Record<string, string>> = [];
    const server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const event = JSON.parse(body) as Record<string, string>;
        got.push({ ...event, contentType: req.headers['content-type'] ?? '' });
        res.writeHead(event.name === 'api' ? 500 : 204).end(); // the receiver fails for one certificate
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
    const results: string[] = [];
    const hooks = new HookRunner({ hooks: { revoked: { url, timeoutMs: 2000, ...LIMITS } }, log: captureLog().log, briefs: () => [], view: () => undefined, marginSeconds: 300, now: () => f.now, onResult: (_e, r) => results.push(r) });
    hooks.onStaple(rec('www'), stapleFor(), 'fetched');
    hooks.onStaple(rec('www'), stapleFor(f.good, 0, 'revoked'), 'fetched');
    hooks.onStaple(rec('api'), stapleFor(), 'fetched');
    hooks.onStaple(rec('api'), stapleFor(f.good, 0, 'revoked'), 'fetched');
    await hooks.stop();
    server.close();
    assert.equal(got.length, 2);
    const www = got.find((g) => g.name === 'www')!;
    assert.equal(www.event, 'revoked');
    assert.equal(www.serial, f.good.serialHex);
    assert.equal(www.contentType, 'application/json');
    assert.deepEqual(results.sort(), ['error', 'ok']);
  });

  test('fires must_staple_expiring once per staple when a must-staple staple nears its end or is missing', async () => {
    const d = await tmp();
    const out = join(d, 'expiring.out');
    const results: string[] = [];
    const line = '$STAPLERD_EVENT|$STAPLERD_NAME|$STAPLERD_SERIAL|$STAPLERD_SUBJECT|$STAPLERD_STATE|$STAPLERD_NEXT_UPDATE|$STAPLERD_LAST_ERROR';
    const soon = stapleUntil(20 * 60_000);
    const failing = entry('failing', { failures: 2, lastError: { code: 'FETCH_HTTP_STATUS', message: 'HTTP 503', at: f.now } });
    const unknown = entry('unknown', { unknown: stapleFor(f.mustStaple, 0, 'unknown'), unknownCount: 1 });
    const soonEntry = entry('soon', { staple: soon });
    const entries = [
      soonEntry,
      entry('soon-revoked', { staple: stapleUntil(20 * 60_000, 'revoked') }),
      entry('fine', { staple: stapleUntil(5 * 3600_000) }),
      failing,
      unknown,
      entry('pending', {}),
      entry('plain', { staple: stapleFor(f.good, 0) }, { leaf: f.good }),
      entry('no-url', {}, { url: undefined }),
    ];
    const certs = catalog(entries);
    const hooks = mustStapleRunner(['sh', '-c', `echo "${line}" >> ${out}`], certs, results);
    hooks.check();
    hooks.check();
    // A newer unknown answer, then a staple that failed before: each is a staple not warned about yet.
    unknown.unknown = stapleFor(f.mustStaple, 1000, 'unknown');
    failing.staple = stapleUntil(10 * 60_000);
    hooks.check();
    hooks.check();
    // A certificate that went away and came back is warned about again, its staple unchanged.
    entries.splice(entries.indexOf(soonEntry), 1);
    hooks.check();
    entries.push(soonEntry);
    hooks.check();
    // stop() drops runs still queued behind the concurrency limit: wait for all eight first.
    await until(() => results.length === 8, 'eight runs finished', 30_000);
    await hooks.stop();
    const subject = f.mustStaple.subject;
    const serial = f.mustStaple.serialHex;
    const soonEnds = soon.nextUpdate.toISOString(); // soon-revoked's too
    assert.deepEqual((await readFile(out, 'utf8')).trim().split('\n').sort(), [
      `must_staple_expiring|failing|${serial}|${subject}|failing||FETCH_HTTP_STATUS`,
      `must_staple_expiring|failing|${serial}|${subject}|good|${failing.staple.nextUpdate.toISOString()}|FETCH_HTTP_STATUS`,
      `must_staple_expiring|pending|${serial}|${subject}|pending||`,
      `must_staple_expiring|soon-revoked|${serial}|${subject}|revoked|${soonEnds}|`,
      `must_staple_expiring|soon|${serial}|${subject}|good|${soonEnds}|`,
      `must_staple_expiring|soon|${serial}|${subject}|good|${soonEnds}|`,
      `must_staple_expiring|unknown|${serial}|${subject}|unknown||`,
      `must_staple_expiring|unknown|${serial}|${subject}|unknown||`,
    ]);
  });

  test('the must-staple check walks the briefs and builds a full view only for the certificates whose hook fires', async () => {
    const plainSoon = stapleFor(f.good, 0); // ends within the hour, but the certificate is not must-staple
    const fine = stapleUntil(5 * 3600_000);
    const entries = Array.from({ length: 998 }, (_, i) => (i % 2 ? entry(`fine-${i}`, { staple: fine }) : entry(`plain-${i}`, { staple: plainSoon }, { leaf: f.good })));
    entries.splice(300, 0, entry('expiring', { staple: stapleUntil(20 * 60_000) }));
    entries.push(entry('none-held', { failures: 1 }));
    const certs = catalog(entries);
    const results: string[] = [];
    const hooks = mustStapleRunner(['true'], certs, results);
    hooks.check();
    assert.deepEqual(certs.viewed, ['expiring', 'none-held'], 'one view per firing certificate, none for the other 998');
    hooks.check();
    assert.deepEqual(certs.viewed, ['expiring', 'none-held'], 'already warned: decided from the brief, no view built');
    await until(() => results.length === 2, 'both runs finished', 30_000);
    await hooks.stop();
    assert.deepEqual(results, ['ok', 'ok']);
  });
});

