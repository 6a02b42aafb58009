/** Shared by the demo tests: temp dirs, the openssl CLI as an independent judge, a raw HTTP client. */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPki, demoStatuses, startResponder, writeDemoPki, type DemoPki, type DemoPkiFiles, type DemoResponder } from '../../src/demo/index.js';

export const OPENSSL = '/usr/bin/openssl';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr together: openssl splits its verdicts between them. */
  out: string;
}

/** Run openssl asynchronously (a sync call would block the in-process responder it talks to). */
export function openssl(args: string[], timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(OPENSSL, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr, out: `${stdout}\n${stderr}` });
    });
  });
}

export async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'staplerd-demo-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

/** A raw request with an exact path (fetch would normalise `//` and percent-escapes). */
export function httpRequest(
  port: number,
  opts: { method?: string; path?: string; body?: Uint8Array; timeoutMs?: number },
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: opts.body ? { 'Content-Type': 'application/ocsp-request' } : {},
        timeout: opts.timeoutMs ?? 5_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: new Uint8Array(Buffer.concat(chunks)) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Judge a response file with openssl: status lines, "Response verify OK" or the failure. */
export async function judgeResponse(
  dir: string,
  der: Uint8Array,
  f: { issuer: string; cert: string; root: string },
  extra: string[] = [],
): Promise<RunResult> {
  const path = join(dir, `resp-${Math.random().toString(36).slice(2)}.der`);
  await writeFile(path, der);
  return openssl(['ocsp', '-respin', path, '-issuer', f.issuer, '-cert', f.cert, '-CAfile', f.root, ...extra]);
}

export interface DemoEnv {
  dir: string;
  pki: DemoPki;
  files: DemoPkiFiles;
  responder: DemoResponder;
  /** openssl file arguments for one leaf. */
  leaf(name: 'good' | 'revoked' | 'mustStaple'): { issuer: string; cert: string; root: string };
  close(): Promise<void>;
}

/** A demo PKI on disk and a responder signing with its delegated signer (or `signer`). */
export async function startDemo(opts: { signer?: 'delegate' | 'issuer'; maxAgeHeader?: boolean } = {}): Promise<DemoEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'staplerd-demo-test-'));
  const now = new Date();
  const pki = createDemoPki({ now, ocspUrl: 'http://127.0.0.1:9/' });
  const files = await writeDemoPki(pki, dir, now);
  const responder = await startResponder({
    issuer: pki.issuer,
    signer: opts.signer === 'issuer' ? pki.issuer : pki.ocspSigner,
    statuses: demoStatuses(pki, now),
    maxAgeHeader: opts.maxAgeHeader ?? false,
  });
  return {
    dir, pki, files, responder,
    leaf: (name) => ({ issuer: files.issuer, cert: files.leaves[name].cert, root: files.root }),
    close: async () => {
      await responder.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `openssl ocsp` as a client of the responder at `url` (it POSTs, and sends a nonce unless -no_nonce).
 * `extra` goes first: a digest option such as -sha256 must precede -cert.
 */
export function ocspQuery(url: string, f: { issuer: string; cert: string; root: string }, extra: string[] = []): Promise<RunResult> {
  return openssl(['ocsp', ...extra, '-issuer', f.issuer, '-cert', f.cert, '-url', url, '-CAfile', f.root, '-timeout', '5']);
}
