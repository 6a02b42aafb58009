/**
 * package.json "engines" must be true for every dependency npm installs: `npm ci` warns EBADENGINE otherwise
 * (cookie@2, through fastify -> light-my-request, declared node >=22 while staplerd declares >=20.19). CI
 * runs the suite on the machine's Node 20 and on the image's Node 24, so both ends of the range are exercised.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';

// Compiled to dist/test/packaging/engines.test.js: the repository is three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Semver {
  subset(sub: string, dom: string): boolean;
  satisfies(version: string, range: string): boolean;
  validRange(range: string): string | null;
}
const semver = createRequire(import.meta.url)('semver') as Semver;

interface Lock {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[]; dev?: boolean }>;
}

async function json<T>(p: string): Promise<T> {
  return JSON.parse(await readFile(join(ROOT, p), 'utf8')) as T;
}

describe('package.json engines', () => {
  test('every locked dependency accepts every Node version the engines range allows', async () => {
    const { engines } = await json<{ engines: { node: string } }>('package.json');
    assert.ok(semver.validRange(engines.node), `engines.node is a range: ${engines.node}`);
    const lock = await json<Lock>('package-lock.json');
    const narrower: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      // Old packages wrote engines as an array of strings, which npm ignores; only the object form binds.
      const want = p.engines && !Array.isArray(p.engines) ? p.engines.node : undefined;
      if (!path || !want) continue;
      if (!semver.subset(engines.node, want)) narrower.push(`${path}@${p.version ?? '?'} wants node ${want}`);
    }
    assert.deepEqual(narrower, [], `engines.node is ${engines.node}, but these dependencies need more`);
  });

  test('the Node running the tests is inside the engines range', async () => {
    const { engines } = await json<{ engines: { node: string } }>('package.json');
    assert.ok(semver.satisfies(process.version, engines.node), `${process.version} is outside ${engines.node}`);
  });

  // The code path behind the override: light-my-request (fastify's inject) serialises `cookies` with the
  // cookie package. The HTTP tests inject without cookies, so this one proves the overridden version works.
  test('fastify inject still sends cookies with the cookie version the override pins', async () => {
    const app = Fastify();
    app.get('/', (req, reply) => reply.send({ cookie: req.headers.cookie ?? null }));
    try {
      const r = await app.inject({ method: 'GET', url: '/', cookies: { a: 'b c', second: '2' } });
      assert.equal(r.statusCode, 200);
      assert.deepEqual(r.json(), { cookie: 'a=b%20c; second=2' });
    } finally {
      await app.close();
    }
  });
});
