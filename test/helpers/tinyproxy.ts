import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canConnect, Child, freePort, waitFor } from './processes.js';

/** Debian's tinyproxy on a free loopback port, with its own config and log in `dir`. */
export interface Tinyproxy {
  port: number;
  url: string;
  /** The proxy's log so far (LogLevel Connect: one line per request line and per CONNECT). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export async function startTinyproxy(binary: string, dir: string, o: { basicAuth?: { user: string; password: string } } = {}): Promise<Tinyproxy> {
  const port = await freePort();
  const logFile = join(dir, `tinyproxy-${port}.log`);
  const conf = join(dir, `tinyproxy-${port}.conf`);
  const lines = [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 30', `LogFile "${logFile}"`, 'LogLevel Connect', 'MaxClients 50', 'Allow 127.0.0.1'];
  if (o.basicAuth) lines.push(`BasicAuth ${o.basicAuth.user} ${o.basicAuth.password}`);
  await writeFile(conf, `${lines.join('\n')}\n`);
  const child = new Child('tinyproxy', binary, ['-d', '-c', conf]);
  await waitFor('tinyproxy to listen', 10_000, async () => {
    if (!child.running) throw new Error(`tinyproxy exited\n${child.output()}`);
    return (await canConnect(port)) ? true : undefined;
  }, 50);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    stop: async () => void (await child.stop('SIGTERM')),
  };
}
