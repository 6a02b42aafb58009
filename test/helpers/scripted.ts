import net from 'node:net';

/**
 * A raw-socket HTTP server on 127.0.0.1 that answers each complete request with scripted bytes: for
 * framings, broken responders and hostile ones that no real HTTP server library would produce.
 */
export interface Scripted {
  url: string;
  /** Connections accepted so far. */
  connections: () => number;
  /** Raw request bytes seen, per request. */
  requests: string[];
  close: () => Promise<void>;
}

/** `answer(n, socket)` gives the bytes for the n-th request (counted over all connections), or null to write itself. */
export async function scripted(answer: (n: number, socket: net.Socket) => string | Buffer | null): Promise<Scripted> {
  let conns = 0;
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end + 4);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        requests.push(buf.slice(0, end + 4 + len));
        buf = buf.slice(end + 4 + len);
        const out = answer(requests.length, s);
        if (out !== null) s.write(typeof out === 'string' ? Buffer.from(out, 'latin1') : out);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/ocsp`,
    connections: () => conns,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Writes `first`, then `repeat` over and over (in batches, waiting for each write to drain) until the peer
 * goes away: a responder that never stops talking. Returns the bytes written so far, read at any time.
 */
export function flood(sock: net.Socket, first: string, repeat: string): () => number {
  let written = 0;
  const batch = Buffer.from(repeat.repeat(Math.max(1, Math.floor(16384 / repeat.length))), 'latin1');
  const next = (): void => {
    if (sock.destroyed || !sock.writable) return;
    written += batch.length;
    sock.write(batch, (err) => (err ? undefined : setImmediate(next)));
  };
  written += Buffer.byteLength(first, 'latin1');
  sock.write(Buffer.from(first, 'latin1'), (err) => (err ? undefined : next()));
  return () => written;
}
