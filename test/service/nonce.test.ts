/**
 * fetch.nonce: true (off by default, RFC 9919 §2.1): the Stapler sends a nonce (RFC 8954) and refuses a
 * response that does not echo it. The responder here records the request and answers a properly signed
 * response, with or without the nonce echoed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { parseConfig } from '../../src/config/load.js';
import { buildSuccessfulResponse } from '../../src/demo/ocsp-sign.js';
import { HttpResponderClient } from '../../src/fetch/responder-client.js';
import { parseOcspRequest } from '../../src/pki/request.js';
import { Stapler } from '../../src/service/stapler.js';
import { MemoryStapleStore } from '../../src/store/memory-store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLog } from '../helpers/log.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();

test('with fetch.nonce on, a nonce is sent and a response that does not echo it is refused', async () => {
  const nonces: Array<Uint8Array | undefined> = [];
  let echo = true;
  const server = createServer((req, res) => {
    const b64 = decodeURIComponent((req.url ?? '').slice(1));
    const parsed = parseOcspRequest(new Uint8Array(Buffer.from(b64, 'base64')));
    nonces.push(parsed.nonce);
    const thisUpdate = new Date(Date.now() - 60_000);
    const der = buildSuccessfulResponse({
      responses: [{ certId: parsed.certIds[0]!, status: { kind: 'good' }, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 3600_000) }],
      signer: f.pki.ocspSigner,
      producedAt: new Date(),
      ...(echo && parsed.nonce && { nonce: parsed.nonce }),
    });
    res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(der);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  const client = new HttpResponderClient({ timeoutMs: 2000, maxResponseBytes: 65536, perHostConcurrency: 2, userAgent: 'test' });
  const stapler = new Stapler({ clock: systemClock, client, store: new MemoryStapleStore({ maxEntries: 10, maxBytes: 1 << 20 }), log: captureLog().log, refresh: parseConfig({}, '<inline>', {}).refresh, concurrency: 2, nonce: true });
  try {
    await stapler.setRecords([{ name: 'www', source: 'www.pem', leaf: f.good, issuer: f.issuer, url }]);
    await stapler.refresh('www');
    assert.equal(stapler.get('www')!.state, 'good');
    echo = false;
    await stapler.refresh('www');
    assert.equal(stapler.get('www')!.lastError?.code, 'OCSP_NONCE_MISMATCH');
    assert.equal(nonces.length, 2);
    assert.ok(nonces.every((n) => n && n.length >= 16), 'every request carried a nonce of 16 bytes or more');
    assert.notDeepEqual(nonces[0], nonces[1], 'a fresh nonce per request');
  } finally {
    await stapler.stop();
    server.close();
  }
});
