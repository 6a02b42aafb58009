import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildSuccessfulResponse, issueCertificate, startResponder } from '../../src/demo/index.js';
import { computeCertId } from '../../src/pki/certid.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { httpRequest, judgeResponse, ocspQuery, startDemo, type DemoEnv } from './helpers.js';

let env: DemoEnv;
before(async () => {
  env = await startDemo({ maxAgeHeader: true });
});
after(() => env.close());

test('openssl ocsp gets good for the good leaf, verifies the delegated signature and gets its nonce back', async () => {
  const r = await ocspQuery(env.responder.url, env.leaf('good'), ['-resp_text']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /good\.pem: good/);
  assert.match(r.out, /Response verify OK/);
  assert.match(r.stdout, /OCSP Nonce:/);
  assert.doesNotMatch(r.out, /WARNING: no nonce in response|Nonce Verify error/);
});

test('openssl ocsp gets revoked with the revocation time and reason for the revoked leaf', async () => {
  const r = await ocspQuery(env.responder.url, env.leaf('revoked'), ['-no_nonce']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /revoked\.pem: revoked/);
  assert.match(r.stdout, /Reason: keyCompromise/);
  assert.match(r.out, /Response verify OK/);
});

test('without a nonce in the request the response has none', async () => {
  const r = await ocspQuery(env.responder.url, env.leaf('mustStaple'), ['-no_nonce', '-resp_text']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /mustStaple\.pem: good/);
  assert.doesNotMatch(r.stdout, /OCSP Nonce/);
  assert.match(r.out, /Response verify OK/);
});

test('a SHA-256 CertID is answered with the same SHA-256 CertID', async () => {
  const r = await ocspQuery(env.responder.url, env.leaf('good'), ['-sha256', '-resp_text']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /Hash Algorithm: sha256/);
  assert.match(r.stdout, /good\.pem: good/);
});

test('a serial the responder does not know is answered unknown, signed', async () => {
  const now = Date.now();
  const stranger = issueCertificate({ subjectCN: 'stranger.demo.test', notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) }, env.pki.issuer);
  const cert = join(env.dir, 'stranger.pem');
  await writeFile(cert, stranger.pem);
  const r = await ocspQuery(env.responder.url, { ...env.leaf('good'), cert }, ['-no_nonce']);
  assert.match(r.stdout, /stranger\.pem: unknown/);
  assert.match(r.out, /Response verify OK/);
});

test('setStatus changes the answer and stats count requests per serial', async () => {
  const serial = env.pki.leaves.mustStaple.serialHex;
  const before = env.responder.stats.bySerial.get(serial) ?? 0;
  env.responder.setStatus(serial.toUpperCase(), { kind: 'revoked', at: new Date(Date.now() - 3_600_000), reason: 4 });
  try {
    const r = await ocspQuery(env.responder.url, env.leaf('mustStaple'), ['-no_nonce']);
    assert.match(r.stdout, /mustStaple\.pem: revoked/);
    assert.match(r.stdout, /Reason: superseded/);
  } finally {
    env.responder.setStatus(serial, { kind: 'good' });
  }
  assert.equal(env.responder.stats.bySerial.get(serial), before + 1);
});

test('GET with an nginx-style prefix, // and percent-encoded base64 is answered', async () => {
  const id = computeCertId(env.pki.leaves.good.der, env.pki.issuer.der, 'sha1');
  const b64 = Buffer.from(buildOcspRequest([id])).toString('base64');
  const gets = env.responder.stats.get;
  for (const path of [`/prefix//${encodeURIComponent(b64)}`, `/${b64}`, `/a/b/${b64.replace(/=/g, '%3D')}`]) {
    const res = await httpRequest(env.responder.port, { path });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/ocsp-response');
    const judged = await judgeResponse(env.dir, res.body, env.leaf('good'));
    assert.match(judged.stdout, /good\.pem: good/, path);
    assert.match(judged.out, /Response verify OK/);
  }
  assert.equal(env.responder.stats.get, gets + 3);
});

test('responses carry RFC 9919 caching headers when maxAgeHeader is set', async () => {
  const id = computeCertId(env.pki.leaves.good.der, env.pki.issuer.der, 'sha1');
  const res = await httpRequest(env.responder.port, { method: 'POST', body: buildOcspRequest([id]) });
  assert.equal(res.status, 200);
  const cc = String(res.headers['cache-control']);
  const maxAge = Number(/max-age=(\d+)/.exec(cc)?.[1]);
  assert.ok(maxAge > 3000 && maxAge <= 3540, cc);
  assert.match(cc, /public, no-transform, must-revalidate/);
  assert.ok(res.headers['last-modified'] && res.headers['expires']);
});

test('an unparsable request gets a bare malformedRequest OCSPResponse', async () => {
  const post = await httpRequest(env.responder.port, { method: 'POST', body: Buffer.from('not DER at all') });
  assert.equal(post.status, 200);
  assert.deepEqual([...post.body], [0x30, 0x03, 0x0a, 0x01, 0x01]);
  const get = await httpRequest(env.responder.port, { path: '/MIIgarbage' });
  assert.deepEqual([...get.body], [0x30, 0x03, 0x0a, 0x01, 0x01]);
});

test('a POST body over 64 KiB is refused with 413', async () => {
  const res = await httpRequest(env.responder.port, { method: 'POST', body: new Uint8Array(70 * 1024) }).catch((e: Error) => e);
  // The server may reset the connection while the client is still sending: both are a refusal.
  if (!(res instanceof Error)) assert.equal(res.status, 413);
});

test('with the issuer as signer, byName and byKey responses verify and name the issuer', async () => {
  const issuerEnv = await startDemo({ signer: 'issuer' });
  try {
    const r = await ocspQuery(issuerEnv.responder.url, issuerEnv.leaf('good'), ['-resp_text']);
    assert.match(r.stdout, /good\.pem: good/);
    assert.match(r.out, /Response verify OK/);
    assert.doesNotMatch(r.stdout, /Certificate:/, 'no certs embedded when the issuer signs');
    const now = new Date();
    const id = computeCertId(issuerEnv.pki.leaves.revoked.der, issuerEnv.pki.issuer.der, 'sha1');
    const der = buildSuccessfulResponse({
      responses: [{ certId: id, status: { kind: 'revoked', at: new Date(now.getTime() - 60_000) }, thisUpdate: now, nextUpdate: new Date(now.getTime() + 60_000) }],
      signer: issuerEnv.pki.issuer, producedAt: now, responderIdBy: 'name',
    });
    const judged = await judgeResponse(issuerEnv.dir, der, issuerEnv.leaf('revoked'), ['-resp_text']);
    assert.match(judged.stdout, /Responder Id: CN = staplerd demo issuing CA/);
    assert.match(judged.stdout, /revoked\.pem: revoked/);
    assert.match(judged.out, /Response verify OK/);
  } finally {
    await issuerEnv.close();
  }
});

test('startResponder rejects a non-positive validity', async () => {
  await assert.rejects(startResponder({ issuer: env.pki.issuer, signer: env.pki.ocspSigner, statuses: new Map(), validitySeconds: 0 }), /validitySeconds/);
});
