import { createServer } from 'node:net';

/**
 * A TCP port that was free on 127.0.0.1 a moment ago: for things that must know their port before they
 * listen (the demo CA's URL goes into its certificates; openssl ocsp and nginx take a port, not 0).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('freePort: no address'))));
    });
  });
}
