/**
 * The demo CA files must be usable by openssl's own responder (`openssl ocsp -index`), so the demo and
 * e2e tests can run staplerd against an implementation that is not ours.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPki, writeDemoPki, type DemoPkiFiles } from '../../src/demo/index.js';
import { OPENSSL, ocspQuery } from './helpers.js';
import { freePort } from '../../src/util/net.js';

let dir: string;
let files: DemoPkiFiles;
let child: ChildProcess | undefined;
let url: string;


/** Start `openssl ocsp -index` and resolve once it prints ACCEPT (it is listening). */
function startOpensslResponder(port: number): Promise<ChildProcess> {
  const args = ['ocsp', '-index', files.index, '-port', String(port), '-rsigner', files.ocspSigner, '-rkey', files.ocspSignerKey, '-CA', files.issuer, '-nmin', '10', '-ignore_err'];
  const proc = spawn(OPENSSL, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`openssl ocsp did not print ACCEPT: ${output}`)), 10_000);
    const onData = (b: Buffer) => {
      output += b.toString();
      if (output.includes('ACCEPT')) {
        clearTimeout(timer);
        resolve(proc);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`openssl ocsp exited with ${String(code)}: ${output}`));
    });
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'staplerd-demo-test-'));
  const now = new Date();
  const port = await freePort();
  url = `http://127.0.0.1:${port}/`;
  files = await writeDemoPki(createDemoPki({ now, ocspUrl: url }), dir, now);
  child = await startOpensslResponder(port);
});

after(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await rm(dir, { recursive: true, force: true });
});

test('openssl ocsp -index serves the demo index: revoked leaf is revoked', async () => {
  const f = { issuer: files.issuer, cert: files.leaves.revoked.cert, root: files.root };
  const r = await ocspQuery(url, f);
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /revoked\.pem: revoked/);
  assert.match(r.stdout, /Reason: keyCompromise/);
  assert.match(r.out, /Response verify OK/);
});

test('openssl ocsp -index serves the demo index: good and must-staple leaves are good', async () => {
  for (const name of ['good', 'mustStaple'] as const) {
    const r = await ocspQuery(url, { issuer: files.issuer, cert: files.leaves[name].cert, root: files.root }, ['-no_nonce']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, new RegExp(`${name}\\.pem: good`));
    assert.match(r.out, /Response verify OK/);
  }
});
