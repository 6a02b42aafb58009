/**
 * Many leaf certificates, fast: one template leaf is issued by the demo CA (pkijs, ~0.6 ms), then each
 * further leaf is that template's TBSCertificate with its serial and CN digits patched in place and a
 * fresh ECDSA signature by the issuing CA (~0.05 ms). Leaves share one key, as the issue allows.
 */
import { createHash, randomBytes, sign } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKey, issueCertificate, type DemoPki } from '../src/demo/index.js';
import { parseCertificate } from '../src/pki/certificate.js';
import { certIdOf } from '../src/pki/certid.js';
import { derToPem } from '../src/pki/pem.js';
import { buildOcspRequest } from '../src/pki/request.js';

export interface Leaf {
  index: number;
  /** file / certificate name: leaf-0000042 */
  name: string;
  der: Buffer;
  serial: Buffer;
}

export interface Minter {
  readonly pki: DemoPki;
  mint(index: number): Leaf;
  /** DER OCSPRequest with one SHA-1 CertID for a leaf (what nginx and HAProxy send). */
  request(leaf: Leaf): Uint8Array;
}

const CN_DIGITS = 7;
const TEMPLATE_SERIAL = Buffer.alloc(16, 0x5a);
const DAY = 86_400_000;

/** DER tag + length at `off`: returns the header size and content length. */
function tl(b: Uint8Array, off: number): { header: number; length: number } {
  const first = b[off + 1]!;
  if (first < 0x80) return { header: 2, length: first };
  const n = first & 0x7f;
  let length = 0;
  for (let i = 0; i < n; i++) length = length * 256 + b[off + 2 + i]!;
  return { header: 2 + n, length };
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.of(0x80 | bytes.length, ...bytes);
}

const tlv = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.of(tag), derLength(body.length), body]);

/** Leaves of `pki.issuer` whose AIA points at `ocspUrl` (the PKI comes first: the responder needs it). */
export function createMinter(o: { pki: DemoPki; now: Date; ocspUrl: string }): Minter {
  const pki = o.pki;
  const t = o.now.getTime();
  const template = issueCertificate(
    {
      subjectCN: `leaf-${'0'.repeat(CN_DIGITS)}.bench.test`, serial: TEMPLATE_SERIAL, notBefore: new Date(t - DAY),
      notAfter: new Date(t + 90 * DAY), ocspUrls: [o.ocspUrl], ekuServerAuth: true, key: generateKey(),
    },
    pki.issuer,
  );
  const der = Buffer.from(template.der);
  const outer = tl(der, 0);
  const tbsStart = outer.header;
  const tbsTl = tl(der, tbsStart);
  const tbs = der.subarray(tbsStart, tbsStart + tbsTl.header + tbsTl.length);
  const algStart = tbsStart + tbs.length;
  const alg = der.subarray(algStart, algStart + tl(der, algStart).header + tl(der, algStart).length);
  const serialOff = tbs.indexOf(Buffer.concat([Buffer.of(0x02, 0x10), TEMPLATE_SERIAL])) + 2;
  const cnOff = tbs.indexOf(Buffer.from(`leaf-${'0'.repeat(CN_DIGITS)}`)) + 5;
  if (serialOff < 2 || cnOff < 5) throw new Error('bench minter: template layout not understood');
  // Serial: positive, 16 octets, unique per run and index.
  const runId = randomBytes(11);
  const issuerInfo = parseCertificate(pki.issuer.der, 'issuer');
  const base = certIdOf(parseCertificate(template.der, 'template'), issuerInfo, 'sha1');
  const issuerKey = pki.issuer.key.privateKey;

  return {
    pki,
    mint(index) {
      const body = Buffer.from(tbs);
      const serial = Buffer.concat([Buffer.of(0x40), runId, Buffer.alloc(4)]);
      serial.writeUInt32BE(index, 12);
      serial.copy(body, serialOff);
      const digits = String(index).padStart(CN_DIGITS, '0');
      if (digits.length !== CN_DIGITS) throw new RangeError('bench minter: index too large');
      body.write(digits, cnOff, 'ascii');
      const sig = sign('sha256', body, issuerKey);
      const cert = tlv(0x30, Buffer.concat([body, alg, tlv(0x03, Buffer.concat([Buffer.of(0), sig]))]));
      return { index, name: `leaf-${digits}`, der: cert, serial };
    },
    request(leaf) {
      return buildOcspRequest([{ ...base, serialNumber: new Uint8Array(leaf.serial) }]);
    },
  };
}

/** Writes `<dir>/<name>.pem` bundles (leaf, then issuer), a few hundred files at a time. */
export async function writeBundles(dir: string, leaves: Leaf[], issuerPem: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const batch = 256;
  for (let i = 0; i < leaves.length; i += batch) {
    await Promise.all(leaves.slice(i, i + batch).map((l) => writeFile(join(dir, `${l.name}.pem`), derToPem(l.der) + issuerPem)));
  }
}

/** Serial hex of each leaf, one per line: what the responder child marks as good. */
export async function writeSerials(path: string, leaves: Leaf[]): Promise<void> {
  await writeFile(path, leaves.map((l) => l.serial.toString('hex')).join('\n') + '\n');
}

/** nginx's GET form: `<prefix>/<percent-encoded base64>` (it sends + / = as %2B %2F %3D). */
export function getPath(prefix: string, request: Uint8Array): string {
  return `${prefix}/${encodeURIComponent(Buffer.from(request).toString('base64'))}`;
}

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
