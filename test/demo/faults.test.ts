import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { computeCertId } from '../../src/pki/certid.js';
import { buildOcspRequest } from '../../src/pki/request.js';
import { httpRequest, judgeResponse, ocspQuery, startDemo, type DemoEnv } from './helpers.js';

let env: DemoEnv;
before(async () => {
  env = await startDemo();
});
after(() => env.close());

function goodRequest(): Uint8Array {
  return buildOcspRequest([computeCertId(env.pki.leaves.good.der, env.pki.issuer.der, 'sha1')]);
}

/** POST the good leaf's request under `fault` and let openssl judge the body. */
async function judgedUnder(fault: Parameters<DemoEnv['responder']['setFault']>[0], extra: string[] = []) {
  env.responder.setFault(fault);
  try {
    const res = await httpRequest(env.responder.port, { method: 'POST', body: goodRequest() });
    return { res, judged: await judgeResponse(env.dir, res.body, env.leaf('good'), extra) };
  } finally {
    env.responder.setFault(null);
  }
}

test('hang: the request times out, and close() still returns while the client waits', async () => {
  const hung = await startDemo();
  hung.responder.setFault({ kind: 'hang' });
  const started = Date.now();
  await assert.rejects(httpRequest(hung.responder.port, { method: 'POST', body: goodRequest(), timeoutMs: 300 }), /timeout/);
  assert.ok(Date.now() - started >= 250);
  // Settle the client's promise into a value now: close() makes it reject before we await it.
  const pending = httpRequest(hung.responder.port, { method: 'POST', body: goodRequest(), timeoutMs: 10_000 }).then(
    () => new Error('answered'),
    (e: Error) => e,
  );
  await new Promise((r) => setTimeout(r, 50));
  await hung.close();
  assert.match((await pending).message, /socket hang up|ECONNRESET/);
});

test('http-status: 503 with Retry-After, and openssl refuses it', async () => {
  env.responder.setFault({ kind: 'http-status', status: 503, retryAfter: '120' });
  try {
    const res = await httpRequest(env.responder.port, { method: 'POST', body: goodRequest() });
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '120');
    const r = await ocspQuery(env.responder.url, env.leaf('good'));
    assert.notEqual(r.code, 0);
    assert.match(r.out, /code=503/);
  } finally {
    env.responder.setFault(null);
  }
});

test('ocsp-status: tryLater is an OCSPResponse without responseBytes', async () => {
  const { res, judged } = await judgedUnder({ kind: 'ocsp-status', status: 3 });
  assert.deepEqual([...res.body], [0x30, 0x03, 0x0a, 0x01, 0x03]);
  assert.match(judged.out, /Responder Error: trylater \(3\)/);
});

test('bad-signature: openssl reports a signature failure', async () => {
  const { judged } = await judgedUnder({ kind: 'bad-signature' });
  assert.match(judged.out, /Response Verify Failure/);
  assert.match(judged.out, /signature failure/);
});

test('signer-no-eku: openssl reports the missing OCSPSigning usage', async () => {
  const { judged } = await judgedUnder({ kind: 'signer-no-eku' });
  assert.match(judged.out, /Response Verify Failure/);
  assert.match(judged.out, /missing ocspsigning usage/);
});

test('signer-other-ca: the signer does not chain to the trusted root', async () => {
  const { judged } = await judgedUnder({ kind: 'signer-other-ca' });
  assert.match(judged.out, /Response Verify Failure/);
  assert.match(judged.out, /unable to get local issuer certificate/);
});

test('signer-expired: openssl reports the expired signer', async () => {
  const { judged } = await judgedUnder({ kind: 'signer-expired' });
  assert.match(judged.out, /Response Verify Failure/);
  assert.match(judged.out, /certificate has expired/);
});

test('wrong-serial: a verified response that has no status for the asked certificate', async () => {
  const { judged } = await judgedUnder({ kind: 'wrong-serial' });
  assert.match(judged.out, /Response verify OK/);
  assert.match(judged.stdout, /good\.pem: ERROR: No Status found/);
});

test('this-update-future and next-update-past fail openssl time checks; no-next-update omits it', async () => {
  const future = await judgedUnder({ kind: 'this-update-future', seconds: 600 });
  assert.match(future.judged.out, /status not yet valid/);
  const past = await judgedUnder({ kind: 'next-update-past' });
  assert.match(past.judged.out, /status expired/);
  const open = await judgedUnder({ kind: 'no-next-update' });
  assert.match(open.judged.stdout, /good\.pem: good/);
  assert.match(open.judged.stdout, /This Update/);
  assert.doesNotMatch(open.judged.stdout, /Next Update/);
});

test('this-update-offset shifts thisUpdate and nextUpdate together', async () => {
  const { judged } = await judgedUnder({ kind: 'this-update-offset', seconds: -7200 });
  const at = (label: string) => Date.parse(new RegExp(`${label}: (.+)`).exec(judged.stdout)?.[1] ?? '');
  const thisUpdate = at('This Update');
  const lag = Date.now() - thisUpdate;
  assert.ok(lag > 7200_000 && lag < 7300_000, judged.stdout);
  assert.equal(at('Next Update') - thisUpdate, 3600_000);
});

test('content-type: a valid body labelled text/html, which openssl refuses', async () => {
  const { res, judged } = await judgedUnder({ kind: 'content-type', contentType: 'text/html' });
  assert.equal(res.headers['content-type'], 'text/html');
  assert.match(judged.out, /Response verify OK/, 'the body itself is valid');
  env.responder.setFault({ kind: 'content-type', contentType: 'text/html' });
  try {
    assert.match((await ocspQuery(env.responder.url, env.leaf('good'))).out, /unexpected content type/);
  } finally {
    env.responder.setFault(null);
  }
});

test('truncate: a 200 body of exactly N bytes that does not parse', async () => {
  const { res, judged } = await judgedUnder({ kind: 'truncate', bytes: 100 });
  assert.equal(res.status, 200);
  assert.equal(res.body.byteLength, 100);
  assert.equal(res.body[0], 0x30);
  assert.notEqual(judged.code, 0);
  assert.doesNotMatch(judged.out, /good\.pem: good/);
});

test('oversize: a 200 body of N junk bytes', async () => {
  const { res } = await judgedUnder({ kind: 'oversize', bytes: 1_000_000 });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'application/ocsp-response');
  assert.equal(res.body.byteLength, 1_000_000);
});

test('drip: a valid response delivered slowly', async () => {
  const started = Date.now();
  const { res, judged } = await judgedUnder({ kind: 'drip', bytesPerSecond: 2000 });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= (res.body.byteLength / 2000) * 1000 * 0.8, `took ${elapsed} ms for ${res.body.byteLength} bytes`);
  assert.match(judged.stdout, /good\.pem: good/);
  assert.match(judged.out, /Response verify OK/);
});

test('clearing the fault restores normal answers', async () => {
  env.responder.setFault({ kind: 'bad-signature' });
  env.responder.setFault(null);
  const r = await ocspQuery(env.responder.url, env.leaf('good'));
  assert.match(r.out, /Response verify OK/);
});
