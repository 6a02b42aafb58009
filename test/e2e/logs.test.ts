/** Log format as an operator sees it: JSON for collectors, human-readable on a terminal, secrets redacted. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../helpers/processes.js';

const MAIN = new URL('../../src/main.js', import.meta.url).href;

function logOnce(format: string, fields: string, msg: string): Promise<string> {
  const code = `const m = await import(${JSON.stringify(MAIN)}); const l = m.createLogger('info', { STAPLERD_LOG_FORMAT: ${JSON.stringify(format)} }); l.info(${fields}, ${JSON.stringify(msg)}); await new Promise((r) => setTimeout(r, 300));`;
  return run(process.execPath, ['--input-type=module', '-e', code], { timeoutMs: 15_000 }).then((r) => r.stdout);
}

test('JSON lines by default for pipes, with the admin token redacted', async () => {
  const out = await logOnce('json', "{ adminToken: 'sekret-token', cert: 'www' }", 'hello json');
  const line = JSON.parse(out.trim().split('\n')[0]!) as Record<string, unknown>;
  assert.equal(line.msg, 'hello json');
  assert.equal(line.cert, 'www');
  assert.equal(line.level, 30);
  assert.ok(!out.includes('sekret-token'));
});

test('human-readable lines when asked for (or when stdout is a terminal)', async () => {
  const out = await logOnce('pretty', "{ cert: 'www' }", 'hello pretty');
  assert.match(out, /INFO.*hello pretty/);
  assert.throws(() => JSON.parse(out.trim().split('\n')[0]!));
  assert.match(out, /cert.*www/);
});
