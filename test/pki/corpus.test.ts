/**
 * Real OCSP responses collected by OpenSSL's and Go's test suites (test/pki/corpus/manifest.json names
 * each source repository, path and commit), verified at a time inside their window. Each must reach the
 * verdict the manifest records; for OpenSSL's files that verdict must also agree with OpenSSL's own test
 * (test/recipes/80-test_ocsp.t), which is run again here with the openssl binary as a differential check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCertificate, type CertInfo } from '../../src/pki/certificate.js';
import { certificatesFromPem } from '../../src/pki/pem.js';
import { verifyOcspResponse } from '../../src/pki/verify.js';
import { learnedLeaf } from '../../src/service/learner.js';
import { isStaplerError } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/processes.js';

interface Case {
  name: string;
  description: string;
  response: string;
  encoding: 'base64' | 'der';
  issuer: string;
  leaf?: string;
  /** A leaf known only by its serial (hex), as learning mode knows it. */
  serial?: string;
  at: string;
  expect: string;
  openssl?: 'accept' | 'reject';
}

const DIR = join(REPO_ROOT, 'test/pki/corpus');
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as { cases: Case[] };

function certFile(rel: string): CertInfo {
  const raw = readFileSync(join(DIR, rel));
  return parseCertificate(rel.endsWith('.pem') ? certificatesFromPem(raw.toString('latin1'), rel)[0]! : new Uint8Array(raw), rel);
}

function responseOf(c: Case): Uint8Array {
  const raw = readFileSync(join(DIR, c.response));
  return new Uint8Array(c.encoding === 'base64' ? Buffer.from(raw.toString('latin1'), 'base64') : raw);
}

/** "good" / "revoked" / "unknown", or the error code verification stopped with. */
export function verdict(c: Case): string {
  const issuer = certFile(c.issuer);
  const leaf = c.leaf ? certFile(c.leaf) : learnedLeaf(issuer, new Uint8Array(Buffer.from(c.serial!, 'hex')));
  try {
    const v = verifyOcspResponse({ der: responseOf(c), leaf, issuer, now: new Date(c.at), policy: { skewSeconds: 300, marginSeconds: 300 } });
    return v.status.kind;
  } catch (e) {
    if (isStaplerError(e)) return e.code;
    throw e;
  }
}

test('the corpus holds real responses of both kinds from more than one project', () => {
  assert.ok(manifest.cases.length >= 50);
  assert.ok(manifest.cases.some((c) => c.expect === 'good') && manifest.cases.some((c) => c.expect.startsWith('OCSP_')));
  assert.deepEqual(new Set(manifest.cases.map((c) => c.name.split(' ')[0])), new Set(['openssl', 'go']));
});

for (const c of manifest.cases) {
  test(`corpus: ${c.name} (${c.description}) -> ${c.expect}`, () => {
    assert.equal(verdict(c), c.expect);
    if (c.openssl) assert.equal(['good', 'revoked', 'unknown'].includes(c.expect) ? 'accept' : 'reject', c.openssl, 'agrees with OpenSSL\'s own test');
  });
}

test('openssl ocsp reaches the verdicts its test suite records on the same files (the differential baseline)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'staplerd-corpus-'));
  try {
    for (const c of manifest.cases.filter((x) => x.openssl)) {
      const der = join(tmp, 'r.der');
      writeFileSync(der, responseOf(c));
      const issuer = join(DIR, c.issuer);
      const r = spawnSync('openssl', ['ocsp', '-respin', der, '-partial_chain', '-attime', String(Math.floor(Date.parse(c.at) / 1000)), '-CAfile', issuer, '-verify_other', issuer, '-no-CApath', '-no-CAstore'], { encoding: 'utf8' });
      assert.equal(r.status === 0 ? 'accept' : 'reject', c.openssl, `${c.name}: ${r.stderr}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});


