import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfig, seconds } from '../../src/config/load.js';
import { isStaplerError, type ErrorCode } from '../../src/errors.js';
import { issueCertificate } from '../../src/demo/ca.js';
import { loadAllRecords } from '../../src/sources/load-all.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'staplerd-config-'));
  await writeFile(join(dir, 'www.pem'), f.pki.leaves.good.pem + f.pki.issuer.pem);
  await writeFile(join(dir, 'leaf-only.pem'), f.pki.leaves.good.pem);
  await writeFile(join(dir, 'issuer.pem'), f.pki.issuer.pem);
  await writeFile(join(dir, 'wrong-issuer.pem'), f.pki.root.pem);
});
after(() => rm(dir, { recursive: true, force: true }));

async function cfgFile(yaml: string): Promise<string> {
  const p = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(p, yaml);
  return p;
}

function throwsCode(fn: () => unknown, code: ErrorCode, ...mustMention: string[]) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isStaplerError(e), String(e));
    assert.equal(e.code, code, e.message);
    for (const m of mustMention) assert.ok(e.message.includes(m), `"${e.message}" should mention "${m}"`);
    return true;
  });
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, ...mustMention: string[]) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isStaplerError(e), String(e));
    assert.equal(e.code, code, e.message);
    for (const m of mustMention) assert.ok(e.message.includes(m), `"${e.message}" should mention "${m}"`);
    return true;
  });
}

describe('config', () => {
  test('issue 2 example loads, with defaults filled and paths resolved against the file', async () => {
    const p = await cfgFile(`listen: { host: 127.0.0.1, port: 8080 }
dataDir: ./var
certificates:
  - name: www
    chain: www.pem
  - name: api
    chain: leaf-only.pem
    issuer: issuer.pem
    responder: http://127.0.0.1:8889/
directories:
  - { path: ., pattern: "*.pem" }
`);
    const c = loadConfigFile(p, {});
    assert.equal(c.dataDir, join(dir, 'var'));
    assert.equal(c.certificates[0]!.chain, join(dir, 'www.pem'));
    assert.equal(c.certificates[1]!.issuer, join(dir, 'issuer.pem'));
    assert.equal(c.fetch.timeoutMs, 10_000);
    assert.equal(c.fetch.maxResponseBytes, 65536);
    assert.equal(c.refresh.marginSeconds, 300);
    assert.equal(c.ocsp.pathPrefix, '/ocsp');
    assert.equal(c.adminToken, '');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.refresh), 'validated once, then frozen');
  });

  test('names the file and the key path of what is wrong', async () => {
    const p = await cfgFile('listen: { host: 127.0.0.1, prot: 8080 }\ncertificates:\n  - { name: www, chain: 5 }\nfetch: { timeout: soon }\n');
    throwsCode(() => loadConfigFile(p, {}), 'CONFIG_INVALID', p, 'listen.prot: unknown key', 'certificates[0].chain: must be string', 'fetch.timeout: must be a duration');
  });

  test('rejects YAML syntax errors, a missing file and duplicate names', async () => {
    throwsCode(() => loadConfigFile(join(dir, 'nope.yaml'), {}), 'CONFIG_FILE', 'nope.yaml');
    throwsCode(() => loadConfigFile(dir, {}), 'CONFIG_FILE', dir);
    const bad = await cfgFile('listen: [1, 2\n');
    throwsCode(() => loadConfigFile(bad, {}), 'CONFIG_INVALID', bad, 'YAML');
    throwsCode(() => parseConfig({ certificates: [{ name: 'a', chain: 'x' }, { name: 'a', chain: 'y' }] }, '/x.yaml'), 'CONFIG_INVALID', 'certificates[1].name', 'duplicate');
  });

  test('takes the admin token from STAPLERD_ADMIN_TOKEN over the file', () => {
    assert.equal(parseConfig({ adminToken: 'file' }, '<inline>', { STAPLERD_ADMIN_TOKEN: 'env' }).adminToken, 'env');
    assert.equal(parseConfig({ adminToken: 'file' }, '<inline>', {}).adminToken, 'file');
  });

  test('refresh.assumeValidity is off by default, parsed as a duration, and bounded to 1m..7d', () => {
    assert.equal(parseConfig({}, '<inline>').refresh.assumeValiditySeconds, undefined);
    assert.equal(parseConfig({ refresh: { assumeValidity: '12h' } }, '<inline>').refresh.assumeValiditySeconds, 43200);
    throwsCode(() => parseConfig({ refresh: { assumeValidity: '30d' } }, '/x.yaml'), 'CONFIG_INVALID', 'refresh.assumeValidity');
    throwsCode(() => parseConfig({ refresh: { assumeValidity: 'soon' } }, '/x.yaml'), 'CONFIG_INVALID', 'refresh.assumeValidity');
  });

  test('durations', () => {
    assert.equal(seconds('250ms'), 0.25);
    assert.equal(seconds('5m'), 300);
    assert.equal(seconds('1h'), 3600);
    assert.equal(seconds(42), 42);
    assert.equal(seconds('42'), 42);
  });
});

describe('certificates from config', () => {
  const base = { directories: [], limits: parseConfig({}, '<inline>').limits, source: '/etc/staplerd.yaml' };

  test('finds the issuer in the chain or in the issuer file, with the AIA URL or the override', async () => {
    const recs = await loadAllRecords({ ...base, certificates: [{ name: 'www', chain: join(dir, 'www.pem') }, { name: 'api', chain: join(dir, 'leaf-only.pem'), issuer: join(dir, 'issuer.pem'), responder: 'http://127.0.0.1:1/' }] }, captureLog().log);
    assert.equal(recs[0]!.issuer.fingerprint, f.issuer.fingerprint);
    assert.equal(recs[0]!.url, 'http://127.0.0.1:9/');
    assert.equal(recs[1]!.url, 'http://127.0.0.1:1/');
  });

  test('a leaf without its issuer, or with the wrong one, is an error naming the file', async () => {
    await rejectsCode(loadAllRecords({ ...base, certificates: [{ name: 'x', chain: join(dir, 'leaf-only.pem') }] }, captureLog().log), 'ISSUER_NOT_FOUND', 'leaf-only.pem', 'certificates[0]');
    await rejectsCode(loadAllRecords({ ...base, certificates: [{ name: 'x', chain: join(dir, 'leaf-only.pem'), issuer: join(dir, 'wrong-issuer.pem') }] }, captureLog().log), 'ISSUER_NOT_FOUND', 'wrong-issuer.pem');
    await rejectsCode(loadAllRecords({ ...base, certificates: [{ name: 'x', chain: join(dir, 'missing.pem') }] }, captureLog().log), 'CERT_FILE', 'missing.pem');
  });

  test('an impostor issuer with the right name but another key is ISSUER_MISMATCH', async () => {
    const impostor = issueCertificate({ subjectCN: 'staplerd demo issuing CA', isCA: true, notBefore: new Date(f.now.getTime() - 86400_000), notAfter: new Date(f.now.getTime() + 86400_000) }, 'self');
    await writeFile(join(dir, 'impostor.pem'), impostor.pem);
    await rejectsCode(loadAllRecords({ ...base, certificates: [{ name: 'x', chain: join(dir, 'leaf-only.pem'), issuer: join(dir, 'impostor.pem') }] }, captureLog().log), 'ISSUER_MISMATCH', 'impostor.pem');
  });

  test('a directory yields one certificate per matching bundle and skips broken ones with a warning', async () => {
    const d = join(dir, 'watched');
    await mkdir(d);
    await writeFile(join(d, 'a.pem'), f.pki.leaves.good.pem + f.pki.issuer.pem);
    await writeFile(join(d, 'b.pem'), f.pki.leaves.revoked.pem);
    await writeFile(join(d, 'c.pem'), '-----BEGIN CERTIFICATE-----\nMIIB');
    await writeFile(join(d, 'd.txt'), 'ignored');
    const cap = captureLog();
    const recs = await loadAllRecords({ ...base, certificates: [], directories: [{ path: d, pattern: '*.pem', issuer: undefined as never }] }, cap.log);
    assert.deepEqual(recs.map((r) => r.name), ['a']);
    assert.deepEqual(cap.atLeast(40).map((l) => String(l.file).split('/').pop()).sort(), ['b.pem', 'c.pem']);
    const withIssuer = await loadAllRecords({ ...base, certificates: [], directories: [{ path: d, pattern: '*.pem', issuer: join(dir, 'issuer.pem') }] }, captureLog().log);
    assert.deepEqual(withIssuer.map((r) => r.name), ['a', 'b']);
  });
});

describe('URLs staplerd connects to (issue 12 item 2)', () => {
  test('a responder URL with CR/LF, a space or a non-http scheme is CONFIG_INVALID naming the key and file', async () => {
    const crlf = await cfgFile('certificates:\n  - name: www\n    chain: www.pem\n    responder: "http://127.0.0.1:6379/\\r\\nSET k v\\r\\n"\n');
    throwsCode(() => loadConfigFile(crlf, {}), 'CONFIG_INVALID', crlf, 'certificates[0].responder', 'control character');
    throwsCode(() => parseConfig({ directories: [{ path: '.', responder: 'http://ca.example/a b' }] }, '/x.yaml'), 'CONFIG_INVALID', '/x.yaml', 'directories[0].responder');
    throwsCode(() => parseConfig({ learning: { issuers: [{ certificate: 'i.pem', responder: 'http://ca.example/\t' }] } }, '/x.yaml'), 'CONFIG_INVALID', 'learning.issuers[0].responder');
    throwsCode(() => parseConfig({ certificates: [{ name: 'a', chain: 'x', responder: 'ldap://ca.example/' }] }, '/x.yaml'), 'CONFIG_INVALID', 'certificates[0].responder');
    assert.equal(parseConfig({ certificates: [{ name: 'a', chain: 'x', responder: 'http://ca.example/ocsp' }] }, '/x.yaml').certificates[0]!.responder, 'http://ca.example/ocsp');
  });

  test('fetch.proxy is an http URL; its credentials never appear in a config error', () => {
    const c = parseConfig({ fetch: { proxy: 'http://127.0.0.1:3128', proxyAuthFile: 'proxy-auth' } }, '/etc/staplerd/x.yaml');
    assert.equal(c.fetch.proxy, 'http://127.0.0.1:3128');
    assert.equal(c.fetch.proxyAuthFile, '/etc/staplerd/proxy-auth');
    assert.equal(parseConfig({}, '/x.yaml').fetch.proxy, undefined);
    for (const proxy of ['socks5://user:s3cret@127.0.0.1:1080', 'http://user:s3cret@127.0.0.1:3128/\r\n']) {
      assert.throws(() => parseConfig({ fetch: { proxy } }, '/x.yaml'), (e: unknown) => isStaplerError(e) && e.code === 'CONFIG_INVALID' && e.message.includes('fetch.proxy') && !e.message.includes('s3cret'));
    }
    throwsCode(() => parseConfig({ fetch: { proxy: 'http://u:p@127.0.0.1:3128', proxyAuthFile: 'f' } }, '/x.yaml'), 'CONFIG_INVALID', 'fetch.proxyAuthFile');
    throwsCode(() => parseConfig({ fetch: { proxyAuthFile: 'f' } }, '/x.yaml'), 'CONFIG_INVALID', 'fetch.proxyAuthFile');
  });
});
