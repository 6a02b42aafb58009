/**
 * The reference for the serve cases: a bare node:http server in its own process that answers one OCSP
 * request (GET at one path, POST at the prefix) with the same bytes and the same headers as staplerd.
 * Usage: node dist/bench/bare-server.js SPEC.json  -> prints {"port":N} once listening.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

export interface BareSpec {
  /** The GET path to answer, exactly as the client sends it (percent-encoded base64 after the prefix). */
  getPath: string;
  /** The POST path to answer (the OCSP prefix). */
  postPath: string;
  /** The response body, base64. */
  body: string;
  /** Response headers, lower-case names, as staplerd sent them for the same request. */
  headers: Record<string, string>;
}

function main(): void {
  const specPath = process.argv[2];
  if (!specPath) throw new Error('usage: bare-server SPEC.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8')) as BareSpec;
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

main();
