/**
 * Small tools shared by the reliability suite: a test PKI with as many leaves as a test needs, chain files,
 * OCSP requests by GET path, the OCSP error bodies, a raw-socket HTTP client (fetch normalises what these
 * tests need to send verbatim) and a TCP canary that counts connections. Processes, ports and temp dirs come
 * from ../helpers/processes.ts.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoPki, generateKey, issueCertificate, type DemoPki, type IssuedCert } from '../../src/demo/ca.js';
import { certIdOf } from '../../src/pki/certid.js';
import { parseCertificate, type CertInfo } from '../../src/pki/certificate.js';
import { buildOcspRequest } from '../../src/pki/request.js';

export interface Leaf {
  name: string;
  cert: IssuedCert;
  info: CertInfo;
}

export interface TestPki {
  pki: DemoPki;
  issuer: CertInfo;
  /** Issues one more leaf (shared key: key generation dominates otherwise). */
  leaf(name: string, o?: { mustStaple?: boolean }): Leaf;
}

/** A throwaway CA on the real clock whose leaves name `ocspUrl` in their AIA. */
export function testPki(ocspUrl: string): TestPki {
  const now = new Date();
  const pki = createDemoPki({ now, ocspUrl });
  const issuer = parseCertificate(pki.issuer.der);
  const key = generateKey();
  const t = now.getTime();
  return {
    pki,
    issuer,
    leaf(name, o = {}) {
      const cert = issueCertificate(
        { subjectCN: `${name}.reliability.test`, notBefore: new Date(t - 3600_000), notAfter: new Date(t + 30 * 86400_000), ocspUrls: [ocspUrl], ekuServerAuth: true, mustStaple: o.mustStaple === true, key },
        pki.issuer,
      );
      return { name, cert, info: parseCertificate(cert.der) };
    },
  };
}

/** The bundle staplerd reads: leaf then issuer. */
export function chainPem(l: Leaf, pki: DemoPki): string {
  return l.cert.pem + pki.issuer.pem;
}

/** Writes `<dir>/<file>` as certbot does: a temp name that the pattern does not match, then rename over. */
export async function writeAtomically(dir: string, file: string, text: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${file}.certbot-new`);
  await writeFile(tmp, text);
  await rename(tmp, join(dir, file));
}

/** `<prefix>/<url-encoded base64 DER request>` for a SHA-1 CertID, as nginx asks. */
export function ocspPath(prefix: string, leaf: CertInfo, issuer: CertInfo): string {
  const der = buildOcspRequest([certIdOf(leaf, issuer, 'sha1')]);
  return `${prefix}/${encodeURIComponent(Buffer.from(der).toString('base64'))}`;
}

export const OCSP_STATUS = { malformedRequest: 1, internalError: 2, tryLater: 3, unauthorized: 6 } as const;

/** An OCSPResponse with only a responseStatus: SEQUENCE { ENUMERATED n } = 30 03 0a 01 n. */
export function ocspErrorStatus(body: Uint8Array): number | undefined {
  const b = Buffer.from(body);
  return b.length === 5 && b[0] === 0x30 && b[1] === 0x03 && b[2] === 0x0a && b[3] === 0x01 ? b[4] : undefined;
}

export interface RawResponse {
  status: number;
  head: string;
  body: Buffer;
  /** Milliseconds until the server closed the connection (or the client gave up). */
  closedAfterMs: number;
  /** False when `timeoutMs` ran out before the server closed the connection. */
  closedByServer: boolean;
}

/**
 * Sends `text` verbatim on a new connection (in `chunks` pieces, `gapMs` apart) and reads until the server
 * closes it or `timeoutMs` passes. The request-target is whatever `text` says, absolute-form included.
 */
export function rawHttp(port: number, text: string | Buffer, o: { timeoutMs?: number; gapMs?: number; chunk?: number } = {}): Promise<RawResponse> {
  const data = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const chunk = o.chunk ?? data.length;
  return new Promise((resolve) => {
    const started = Date.now();
    const got: Buffer[] = [];
    let sent = 0;
    let pump: NodeJS.Timeout | undefined;
    let done = false;
    const s: Socket = connect(port, '127.0.0.1');
    const finish = (byServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(pump);
      clearTimeout(limit);
      s.destroy();
      const all = Buffer.concat(got);
      const split = all.indexOf('\r\n\r\n');
      const head = (split === -1 ? all : all.subarray(0, split)).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, head, body: split === -1 ? Buffer.alloc(0) : all.subarray(split + 4), closedAfterMs: Date.now() - started, closedByServer: byServer });
    };
    const write = () => {
      if (s.destroyed || sent >= data.length) return;
      s.write(data.subarray(sent, sent + chunk));
      sent += chunk;
      if (sent < data.length) pump = setTimeout(write, o.gapMs ?? 0);
    };
    const limit = setTimeout(() => finish(false), o.timeoutMs ?? 5000);
    s.on('connect', write);
    s.on('data', (c: Buffer) => got.push(c));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
  });
}

/** A TCP server that only counts the connections it receives (and closes them). */
export async function startCanary(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server: Server = createServer((s) => {
    count++;
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return { port, connections: () => count, close: () => new Promise((r) => server.close(() => r())) };
}

/** Runs `fn` with extra environment variables visible to children spawned synchronously inside it. */
export function withEnv<T>(vars: Record<string, string>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
