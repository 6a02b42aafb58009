import { execFile } from 'node:child_process';
import { mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { StaplerError } from '../errors.js';
import type { FileSinkConfig, ReloadConfig } from '../config/schema.js';
import type { Staple } from '../service/staple.js';
import type { CertRecord } from '../sources/certificates.js';
import { atomicWrite } from '../util/atomic-write.js';
import { childEnv } from './child-env.js';
import { filterAccepts, haproxyAcceptable, type StapleSink } from './sink.js';

/** `{name}`, `{chain}`, `{fingerprint}` in a path template. */
export function stapleFilePath(template: string, r: CertRecord): string {
  return template.replace(/\{(name|chain|fingerprint)\}/g, (_m, k: string) => (k === 'name' ? r.name : k === 'chain' ? r.source : r.leaf.fingerprint));
}

/**
 * Writes each certificate's staple (DER) to a file: nginx `ssl_stapling_file`, or `<crt>.ocsp` beside a
 * HAProxy certificate. Atomic (readers never see half a file) and only when the bytes changed, so a reload
 * command runs only for real changes; a burst of changes runs it once (debounced).
 */
export class FileSink implements StapleSink {
  readonly name: string;
  readonly #c: FileSinkConfig;
  readonly #reload: DebouncedCommand | undefined;
  readonly #log: Logger;
  readonly #usesChain: boolean;
  #chainWarned = false;

  constructor(c: FileSinkConfig, log: Logger) {
    if (!c.path) throw new RangeError('FileSink: path is required');
    this.#c = c;
    this.name = `file:${c.path}`;
    this.#log = log.child({ sink: this.name });
    this.#usesChain = c.path.includes('{chain}');
    this.#reload = c.reload ? new DebouncedCommand(c.reload, this.#log) : undefined;
  }

  accepts(r: CertRecord, s: Staple): boolean {
    return filterAccepts(this.#c.certificates, r) && haproxyAcceptable(s) && this.#hasPath(r);
  }

  /**
   * `{chain}` is the certificate's bundle file; a learned certificate has none (it was expanded to a
   * relative junk path from its description): skipped, said once per sink.
   */
  #hasPath(r: CertRecord): boolean {
    if (!this.#usesChain || !r.learned) return true;
    if (!this.#chainWarned) this.#log.warn({ cert: r.name }, 'file sink path uses {chain}, and learned certificates have no chain file: skipping them (use {name} or {fingerprint})');
    this.#chainWarned = true;
    return false;
  }

  /** Deletes the staple file of a removed certificate, unless its replacement writes to the same path. */
  async remove(r: CertRecord, next: CertRecord | undefined): Promise<void> {
    if (!filterAccepts(this.#c.certificates, r) || (this.#usesChain && r.learned)) return;
    const path = stapleFilePath(this.#c.path, r);
    if (next && stapleFilePath(this.#c.path, next) === path) return;
    try {
      await unlink(path);
      this.#log.info({ cert: r.name, path }, 'removed the staple file of a removed certificate');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StaplerError('SINK_WRITE', `${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  async push(r: CertRecord, s: Staple): Promise<void> {
    const path = stapleFilePath(this.#c.path, r);
    try {
      const old = await readFile(path).catch(() => undefined);
      if (old && s.body.equals(old)) return;
      await mkdir(dirname(path), { recursive: true });
      await atomicWrite(path, s.body, 0o644);
    } catch (cause) {
      throw new StaplerError('SINK_WRITE', `${path}: ${(cause as Error).message}`, { cause });
    }
    this.#reload?.kick();
  }

  /**
   * HAProxy 2.6 staples a certificate only if `<crt>.ocsp` exists when it loads; an empty file is enough
   * to enable it. With `createEmpty`, creates the missing files (never touches existing ones) and returns
   * their paths.
   */
  async createMissing(records: CertRecord[]): Promise<string[]> {
    if (!this.#c.createEmpty) return [];
    const made: string[] = [];
    for (const r of records) {
      if (!filterAccepts(this.#c.certificates, r) || !r.url) continue;
      const path = stapleFilePath(this.#c.path, r);
      const exists = await stat(path).then(() => true, () => false);
      if (exists) continue;
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, new Uint8Array(0), { flag: 'wx', mode: 0o644 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw new StaplerError('SINK_WRITE', `${path}: ${e.message}`, { cause: e });
      });
      made.push(path);
    }
    return made;
  }

  async close(): Promise<void> {
    await this.#reload?.flush();
  }
}

/** Runs a command (no shell) at most once per debounce window; one run at a time; logs status and output. */
export class DebouncedCommand {
  readonly #c: ReloadConfig;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  runs = 0;

  constructor(c: ReloadConfig, log: Logger) {
    if (c.command.length === 0) throw new RangeError('DebouncedCommand: command is empty');
    this.#c = c;
    this.#log = log;
  }

  kick(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run();
    }, this.#c.debounceMs);
    this.#timer.unref();
  }

  /** Runs a pending reload now (at stop), so the last staple written is also the one loaded. */
  async flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      await this.#run();
    }
    await this.#running;
  }

  async #run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#exec().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        void this.#run();
      }
    });
    return this.#running;
  }

  #exec(): Promise<void> {
    const [cmd, ...args] = this.#c.command as [string, ...string[]];
    this.runs++;
    return new Promise((resolve) => {
      // No secrets from staplerd's environment (issue 12 item 9): the base set and the allow-list only.
      execFile(cmd, args, { env: childEnv(this.#c.env ?? [], {}), timeout: this.#c.timeoutMs, maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`.trim().slice(0, 2000);
        const code = err ? ((err as NodeJS.ErrnoException & { code?: unknown }).code ?? 'error') : 0;
        if (err) this.#log.error({ command: this.#c.command, exitCode: code, output, code: 'SINK_RELOAD' }, 'reload command failed');
        else this.#log.info({ command: this.#c.command, exitCode: 0, output }, 'reload command ran');
        resolve();
      });
    });
  }
}
