import pino, { type Logger } from 'pino';
import { Writable } from 'node:stream';

export interface CapturedLog {
  log: Logger;
  lines: Array<Record<string, unknown> & { level: number; msg: string }>;
  /** Lines at or above a pino level number (40 warn, 50 error). */
  atLeast(level: number): CapturedLog['lines'];
}

/** A real pino logger writing JSON lines into memory, so tests can assert on what was logged. */
export function captureLog(level: pino.Level = 'debug'): CapturedLog {
  const lines: CapturedLog['lines'] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  const log = pino({ level }, stream);
  return { log, lines, atLeast: (n) => lines.filter((l) => l.level >= n) };
}
