/**
 * The project's demo OCSP responder (the "CA") in its own process, so that its signing does not share an
 * event loop with the load generator or the poller. Started with a PKI file; answers commands on stdin,
 * one JSON line each:
 *   serials PATH   mark every serial (hex, one per line) good           -> {"count":N}
 *   stats          requests so far, and when the first and last arrived -> {"requests","first","last"}
 *   reset          forget the first/last times                          -> {"ok":true}
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { IssuedCert } from '../src/demo/ca.js';
import type { PkiFile, PkiFileEntry } from './pki-file.js';
import { startResponder } from '../src/demo/responder.js';
import { derToPem } from '../src/pki/pem.js';

function fromPkiEntry(e: PkiFileEntry): IssuedCert {
  const der = new Uint8Array(Buffer.from(e.der, 'base64'));
  const privateKey = createPrivateKey(e.keyPem);
  return { der, pem: derToPem(der), key: { privateKey, publicKey: createPublicKey(privateKey) }, keyPem: e.keyPem, serialHex: '', subjectCN: e.subjectCN };
}

async function main(): Promise<void> {
  const file = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as PkiFile;
  const responder = await startResponder({
    issuer: fromPkiEntry(file.issuer),
    signer: fromPkiEntry(file.signer),
    statuses: new Map(),
    validitySeconds: file.validitySeconds,
    maxAgeHeader: true,
  });
  // The responder has no per-request hook: a 1 ms poll of its counter timestamps the first and last request.
  let seen = 0;
  let first = 0;
  let last = 0;
  setInterval(() => {
    const n = responder.stats.requests;
    if (n === seen) return;
    const t = performance.timeOrigin + performance.now();
    if (first === 0) first = t;
    last = t;
    seen = n;
  }, 1);
  const say = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);
  say({ url: responder.url });
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.trim().split(/\s+/, 2);
    if (cmd === 'serials') {
      const serials = readFileSync(arg ?? '', 'utf8').split('\n').filter(Boolean);
      for (const s of serials) responder.setStatus(s, { kind: 'good' });
      say({ count: serials.length });
    } else if (cmd === 'stats') {
      say({ requests: responder.stats.requests, first, last });
    } else if (cmd === 'reset') {
      first = 0;
      last = 0;
      say({ ok: true });
    } else {
      say({ error: `unknown command ${cmd}` });
    }
  }
  await responder.close();
  process.exit(0);
}

void main();
