/**
 * The command line as an operator meets it: `node dist/src/cli.js ...` as a child process, asserting exit
 * codes (0 good / OK, 1 revoked or unknown, 2 error or bad config) and what is printed where.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, demoStatuses, writeDemoPki, type DemoPkiFiles } from '../../src/demo/ca.js';
import { startResponder, type DemoResponder } from '../../src/demo/responder.js';
import { canConnect, freePort, REPO_ROOT, run, runCli, tempDir, type RunResult } from '../helpers/processes.js';

const show = (r: RunResult): string => `exit ${String(r.code)}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

describe('staplerd command line', { timeout: 120_000 }, () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let responder: DemoResponder | undefined;
  let files: DemoPkiFiles;
  let pkiOf: ReturnType<typeof createDemoPki>;
  let goodConfig: string;

  before(async () => {
    tmp = await tempDir('cli');
    const port = await freePort();
    const now = new Date();
    const pki = createDemoPki({ now, ocspUrl: `http://127.0.0.1:${port}/` });
    pkiOf = pki;
    files = await writeDemoPki(pki, join(tmp.dir, 'pki'), now);
    responder = await startResponder({ issuer: pki.issuer, signer: pki.ocspSigner, statuses: demoStatuses(pki, now), port });
    goodConfig = join(tmp.dir, 'good.yaml');
    // Real YAML as an operator writes it, with a path relative to the config file.
    await writeFile(goodConfig, [
      'listen: { host: 127.0.0.1, port: 0 }',
      'dataDir: ./var',
      'logLevel: warn',
      'certificates:',
      '  - name: www',
      '    chain: pki/good.chain.pem',
      '  - name: revoked',
      `    chain: ${files.leaves.revoked.chain}`,
      '',
    ].join('\n'));
  });

  after(async () => {
    await responder?.close();
    await tmp?.cleanup();
  });

  /** A copy of the good config with `edit` applied to its text. */
  async function variant(name: string, edit: (text: string) => string): Promise<string> {
    const path = join(tmp.dir, `${name}.yaml`);
    await writeFile(path, edit(await readFile(goodConfig, 'utf8')));
    return path;
  }

  test('--version prints the version in package.json', async () => {
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), pkg.version);
  });

  test('--help prints the usage of every command', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0, show(r));
    for (const cmd of ['Usage:', 'staplerd serve', 'staplerd check', 'staplerd config validate', 'staplerd demo']) assert.ok(r.stdout.includes(cmd), `usage lacks "${cmd}"\n${r.stdout}`);
  });

  test('an unknown command or option exits 2 with the usage on stderr', async () => {
    for (const args of [['frobnicate'], ['serve', '--no-such-option']]) {
      const r = await runCli(args);
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, /Usage:/);
    }
  });

  test('check on a good certificate exits 0 and prints good', async () => {
    const r = await runCli(['check', files.leaves.good.chain]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Cert Status: good/);
    assert.match(r.stdout, /Response verify OK/);
    assert.match(r.stdout, /: good\b/);
  });

  test('check on a revoked certificate exits 1 and prints revoked', async () => {
    const r = await runCli(['check', files.leaves.revoked.chain]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /Cert Status: revoked/);
    assert.match(r.stdout, /Revocation Time: /);
  });

  test('check exits 2 when the responder is down', async () => {
    const down = await freePort();
    assert.equal(await canConnect(down), false);
    const r = await runCli(['check', files.leaves.good.chain, '--url', `http://127.0.0.1:${down}/`, '--timeout', '3s']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /Error: FETCH_/);
    assert.doesNotMatch(r.stdout, /Cert Status/);
  });

  test('check exits 2 when the chain file does not exist', async () => {
    const missing = join(tmp.dir, 'nope.pem');
    const r = await runCli(['check', missing]);
    assert.equal(r.code, 2, show(r));
    assert.ok(r.stderr.includes(missing), show(r));
  });

  /** What `openssl ocsp` (an independent parser) reads in a response file: its Cert Status line. */
  async function opensslStatus(path: string): Promise<string | undefined> {
    const r = await run('openssl', ['ocsp', '-respin', path, '-resp_text', '-noverify']);
    return /Cert Status: (\w+)/.exec(r.stdout)?.[1];
  }

  test('check --out writes the verified good response atomically for a deploy hook', async () => {
    const out = join(tmp.dir, 'good.ocsp');
    const r = await runCli(['check', files.leaves.good.chain, '--out', out]);
    assert.equal(r.code, 0, show(r));
    assert.equal(await opensslStatus(out), 'good');
    assert.deepEqual((await readdir(tmp.dir)).filter((f) => f.endsWith('.tmp')), [], 'no temp file left behind');
  });

  test('check --out writes a revoked response too (it is the signed truth) and exits 1', async () => {
    const out = join(tmp.dir, 'revoked.ocsp');
    const r = await runCli(['check', files.leaves.revoked.chain, '-o', out]);
    assert.equal(r.code, 1, show(r));
    assert.equal(await opensslStatus(out), 'revoked');
  });

  test('check --out leaves an existing file untouched when the responder is down', async () => {
    const out = join(tmp.dir, 'kept-down.ocsp');
    await writeFile(out, 'previous staple');
    const down = await freePort();
    const r = await runCli(['check', files.leaves.good.chain, '--url', `http://127.0.0.1:${down}/`, '--timeout', '3s', '--out', out]);
    assert.equal(r.code, 2, show(r));
    assert.equal(await readFile(out, 'utf8'), 'previous staple');
  });

  test('check --out leaves an existing file untouched on an unknown answer (unknown is not a staple)', async () => {
    const out = join(tmp.dir, 'kept-unknown.ocsp');
    await writeFile(out, 'previous staple');
    // A second responder of the same CA that knows no serial: it signs `unknown`, as CAs do for new certificates.
    const port = await freePort();
    const blank = await startResponder({ issuer: pkiOf.issuer, signer: pkiOf.ocspSigner, statuses: new Map(), port });
    try {
      const r = await runCli(['check', files.leaves.good.chain, '--url', `http://127.0.0.1:${port}/`, '--out', out]);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stdout, /Cert Status: unknown/);
      assert.equal(await readFile(out, 'utf8'), 'previous staple');
    } finally {
      await blank.close();
    }
  });

  test('check --out into a directory that does not exist exits 2 and names the file', async () => {
    const out = join(tmp.dir, 'no-such-dir', 'x.ocsp');
    const r = await runCli(['check', files.leaves.good.chain, '--out', out]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /SINK_WRITE/);
    assert.ok(r.stderr.includes(out), show(r));
  });

  test('config validate accepts a good config', async () => {
    const r = await runCli(['config', 'validate', '-c', goodConfig]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /OK \(2 certificates/);
  });

  test('config validate rejects an unknown key with exit 2, naming the file and the key path', async () => {
    const bad = await variant('typo', (t) => t.replace('port: 0', 'prot: 0'));
    const r = await runCli(['config', 'validate', '-c', bad]);
    assert.equal(r.code, 2, show(r));
    assert.ok(r.stderr.includes(bad), `stderr does not name ${bad}\n${r.stderr}`);
    assert.match(r.stderr, /listen\.prot: unknown key/);
  });

  test('config validate rejects a wrong type with exit 2, naming the key path', async () => {
    const bad = await variant('type', (t) => t.replace('port: 0', 'port: eighty'));
    const r = await runCli(['config', 'validate', '-c', bad]);
    assert.equal(r.code, 2, show(r));
    assert.ok(r.stderr.includes(bad), r.stderr);
    assert.match(r.stderr, /listen\.port/);
  });

  test('config validate rejects a missing chain file with exit 2, naming the file', async () => {
    const missing = join(tmp.dir, 'pki', 'missing.chain.pem');
    const bad = await variant('missing-chain', (t) => t.replace('pki/good.chain.pem', 'pki/missing.chain.pem'));
    const r = await runCli(['config', 'validate', '-c', bad]);
    assert.equal(r.code, 2, show(r));
    assert.ok(r.stderr.includes(missing), `stderr does not name ${missing}\n${r.stderr}`);
  });

  test('config validate rejects a chain without its issuer with exit 2, naming the config and the chain', async () => {
    const bad = await variant('leaf-only', (t) => t.replace('pki/good.chain.pem', 'pki/good.pem'));
    const r = await runCli(['config', 'validate', '-c', bad]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /ISSUER_NOT_FOUND/);
    assert.ok(r.stderr.includes(bad) && r.stderr.includes(files.leaves.good.cert), show(r));
  });

  test('check with a malformed --timeout exits 2 (a usage error)', async () => {
    const r = await runCli(['check', files.leaves.good.chain, '--timeout', 'soon']);
    assert.equal(r.code, 2, show(r));
  });

  test('config validate rejects a missing config file and unparsable YAML with exit 2', async () => {
    const absent = join(tmp.dir, 'absent.yaml');
    const r1 = await runCli(['config', 'validate', '-c', absent]);
    assert.equal(r1.code, 2, show(r1));
    assert.ok(r1.stderr.includes(absent), r1.stderr);
    const broken = await variant('broken', (t) => `${t}\nlisten: [unclosed\n`);
    const r2 = await runCli(['config', 'validate', '-c', broken]);
    assert.equal(r2.code, 2, show(r2));
    assert.ok(r2.stderr.includes(broken), r2.stderr);
  });

  test('serve with a bad config exits 2 without listening', async () => {
    const bad = await variant('serve-typo', (t) => t.replace('port: 0', 'prot: 0'));
    const r = await runCli(['serve', '-c', bad], { timeoutMs: 10_000 });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /listen\.prot: unknown key/);
  });

  test('demo --once --port 0 exits 0 after printing ready', async () => {
    const r = await runCli(['demo', '--once', '--port', '0', '--dir', join(tmp.dir, 'demo')], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /staplerd demo: ready, serving on http:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stdout, /good\s+good/);
    assert.match(r.stdout, /revoked\s+revoked/);
  });
});
