/**
 * The reference for the serve cases: a bare node:http server in its own process that answers one OCSP
 * request (GET at one path, POST at the prefix) with the same bytes and the same headers as staplerd.
 * Usage: node dist/bench/bare-server.js SPEC.json  -> prints {"port":N} once listening.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { request } from 'undici';

export interface BareSpec {
  /** The GET path to answer, exactly as the client sends it (percent-encoded base64 after the prefix). */
  getPath: string;
  /** The POST path to answer (the OCSP prefix). */
  postPath: string;
  /** The response body, base64. */
  body: string;
  /** Response headers, lower-case names, as staplerd sent them for the same request. */
  headers: Record<string, string>;
  /** Before listening, run what the daemon's other parts run in the same process (see exercise()). */
  exercise?: boolean;
}

/**
 * The diagnostic reference of the pinned rows: before it serves, this bare server does a little of what
 * the daemon does besides serving (its HTTP client, undici; node:http as a client; file streams; its
 * logger). V8 keeps type feedback per function, not per caller: once node's shared stream, socket and
 * event code has seen those other objects its call sites are polymorphic, and the same serving code
 * runs slower than in a process that has only ever served. This server shows how much of staplerd's gap
 * to the fresh bare server that accounts for.
 */
async function exercise(): Promise<void> {
  const log = pino({}, pino.destination({ dest: '/dev/null', sync: true }));
  const side = createServer((_q, r) => {
    r.setHeader('x-side', '1');
    r.end('side');
  });
  await new Promise<void>((resolve) => side.listen(0, '127.0.0.1', resolve));
  const addr = side.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/`;
  for (let i = 0; i < 300; i++) {
    const r = await request(url);
    await r.body.text();
    log.info({ i }, 'exercise');
  }
  for (let i = 0; i < 50; i++) {
    await new Promise<void>((resolve, reject) => createReadStream('/etc/hostname').on('error', reject).pipe(new PassThrough()).on('data', () => undefined).on('end', resolve));
  }
  for (let i = 0; i < 100; i++) {
    await new Promise<void>((resolve) => get(url, (r) => r.resume().on('end', resolve)));
  }
  await new Promise((resolve) => side.close(resolve));
}

async function main(): Promise<void> {
  const specPath = process.argv[2];
  if (!specPath) throw new Error('usage: bare-server SPEC.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8')) as BareSpec;
  if (spec.exercise) await exercise();
  const body = Buffer.from(spec.body, 'base64');
  const headers = { ...spec.headers, 'content-length': String(body.byteLength) };
  const answer = (res: ServerResponse): void => {
    res.writeHead(200, headers);
    res.end(body);
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url === spec.getPath) return answer(res);
    if (req.method === 'POST' && req.url === spec.postPath) {
      // Read the body as staplerd must, then answer.
      req.on('data', () => undefined);
      req.on('end', () => answer(res));
      return;
    }
    res.writeHead(404, { 'content-length': '0' });
    res.end();
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

void main();
