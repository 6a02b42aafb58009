/**
 * CertIndex contract: entries by name, CertID key and fingerprint; `sync` diffs the configured records.
 * Synchronous and without I/O, so these tests build records from the test PKI and nothing else.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { certIdKey } from '../../src/pki/certid.js';
import { CertIndex } from '../../src/service/cert-index.js';
import { boundedName, nameFromFile, type CertRecord } from '../../src/sources/certificates.js';
import { fixture } from '../helpers/pki.js';

const f = fixture();
const URL = 'http://127.0.0.1:9/';
const rec = (name: string, leaf = f.good, url: string | null = URL): CertRecord => ({ name, source: `${name}.pem`, leaf, issuer: f.issuer, url: url ?? undefined });
const sha1 = (leaf = f.good) => certIdKey(f.certId(leaf));
const sha256 = (leaf = f.good) => certIdKey(f.certId(leaf, 'sha256'));

describe('CertIndex', () => {
  test('finds an entry by name, by both CertID keys and by fingerprint', () => {
    const ix = new CertIndex();
    const e = ix.add(rec('good'));
    assert.equal(ix.get('good'), e);
    assert.equal(ix.byKey(sha1()), e);
    assert.equal(ix.byKey(sha256()), e);
    assert.deepEqual(ix.withFingerprint(f.good.fingerprint), [e]);
    assert.equal(ix.size, 1);
  });

  test('a record without a responder has no CertID keys and answers no request', () => {
    const ix = new CertIndex();
    const e = ix.add(rec('quiet', f.good, null));
    assert.deepEqual(e.keys, []);
    assert.equal(ix.byKey(sha1()), undefined);
  });

  test('refuses a second entry under a name already indexed', () => {
    const ix = new CertIndex();
    ix.add(rec('good'));
    assert.throws(() => ix.add(rec('good', f.revoked)), RangeError);
  });

  for (const [gone, kept] of [['www', 'www-copy'], ['www-copy', 'www']] as const) {
    test(`the same leaf in two files: removing ${gone} leaves ${kept} answering for the CertID`, () => {
      const ix = new CertIndex();
      ix.add(rec('www'));
      ix.add(rec('www-copy'));
      const r = ix.remove(gone);
      assert.equal(r?.entry.record.name, gone);
      assert.equal(ix.byKey(sha1())?.record.name, kept, 'the SHA-1 CertID is still found');
      assert.equal(ix.byKey(sha256())?.record.name, kept, 'the SHA-256 CertID is still found');
      assert.equal(r?.dropPersisted, undefined, 'the other name still uses the persisted staple');
      const last = ix.remove(kept);
      assert.equal(ix.byKey(sha1()), undefined);
      assert.equal(last?.dropPersisted, f.good.fingerprint);
    });
  }

  test('the same leaf in two files via sync: dropping one file keeps the other answering', () => {
    const ix = new CertIndex();
    ix.sync([rec('www'), rec('www-copy')]);
    const d = ix.sync([rec('www-copy')]);
    assert.deepEqual(d.removed.map((r) => r.entry.record.name), ['www']);
    assert.equal(ix.byKey(sha1())?.record.name, 'www-copy');
    assert.equal(d.removed[0]!.dropPersisted, undefined);
  });

  test('removing bumps the generation, so a fetch that started before is discarded', () => {
    const ix = new CertIndex();
    const e = ix.add(rec('good'));
    const gen = e.generation;
    assert.equal(ix.isCurrent(e, gen), true);
    ix.remove('good');
    assert.equal(ix.isCurrent(e, gen), false);
    const again = ix.add(rec('good'));
    assert.equal(ix.isCurrent(e, gen), false, 'a new entry under the same name is not the old one');
    assert.equal(ix.isCurrent(again, again.generation), true);
  });

  test('sync keeps an unchanged entry (same object, so its staple and schedule stay)', () => {
    const ix = new CertIndex();
    ix.sync([rec('good'), rec('revoked', f.revoked)]);
    const e = ix.get('good');
    const d = ix.sync([{ ...rec('good'), source: 'moved.pem' }]);
    assert.equal(ix.get('good'), e);
    assert.equal(ix.get('good')!.record.source, 'moved.pem', 'the record is updated in place');
    assert.deepEqual(d.added, []);
    assert.deepEqual(d.removed.map((r) => [r.entry.record.name, r.dropPersisted]), [['revoked', f.revoked.fingerprint]]);
    assert.equal(ix.byKey(sha1(f.revoked)), undefined);
  });

  test('sync replaces a renewed certificate and drops its old persisted staple', () => {
    const ix = new CertIndex();
    ix.sync([rec('site')]);
    const old = ix.get('site')!;
    const d = ix.sync([rec('site', f.revoked)]);
    assert.notEqual(ix.get('site'), old);
    assert.deepEqual(d.removed.map((r) => r.dropPersisted), [f.good.fingerprint]);
    assert.deepEqual(d.added.map((e) => e.record.name), ['site']);
    assert.equal(ix.byKey(sha1()), undefined);
    assert.equal(ix.byKey(sha1(f.revoked))?.record.name, 'site');
  });

  test('sync with a new responder URL starts afresh but keeps the persisted staple of the same leaf', () => {
    const ix = new CertIndex();
    ix.sync([rec('site')]);
    const d = ix.sync([rec('site', f.good, 'http://127.0.0.1:10/')]);
    assert.equal(d.added.length, 1);
    assert.equal(d.removed[0]!.dropPersisted, undefined);
  });

  test('a leaf moved to another name (a renamed file) keeps its persisted staple', () => {
    const ix = new CertIndex();
    ix.sync([rec('old-name')]);
    const d = ix.sync([rec('new-name')]);
    assert.deepEqual(d.removed.map((r) => [r.entry.record.name, r.dropPersisted]), [['old-name', undefined]]);
    assert.equal(ix.byKey(sha1())?.record.name, 'new-name');
  });

  test('sync leaves learned entries alone', () => {
    const ix = new CertIndex();
    ix.add({ ...rec('learned-x', f.revoked), learned: true });
    const d = ix.sync([rec('good')]);
    assert.deepEqual(d.removed, []);
    assert.ok(ix.has('learned-x'));
  });

  test('-www.pem does not take www.pem\'s name: both files get an entry of their own', () => {
    const ix = new CertIndex();
    const names = ['-www.pem', 'www.pem', 'www .pem', 'www-.pem'].map((f) => nameFromFile(f));
    assert.equal(names[1], 'www', 'a valid file name is kept as it is');
    assert.equal(new Set(names).size, names.length, names.join(' '));
    for (const n of names) assert.match(n, /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'the config name rule');
    ix.add(rec(names[0]!));
    ix.add(rec(names[1]!, f.revoked));
    assert.equal(ix.get('www')!.record.leaf, f.revoked);
  });

  test('file names longer than the name limit and alike up to it get different names', () => {
    const long = 'x'.repeat(200);
    const [a, b] = [nameFromFile(`${long}a.pem`), nameFromFile(`${long}b.pem`)];
    assert.notEqual(a, b);
    assert.ok(a.length <= 128 && b.length <= 128);
  });

  test('learned names from long serials that share a prefix do not collide', () => {
    // The learner names entries `learned-<issuer>-<serial hex>`; a client may send any serial length.
    const issuer = f.issuer.fingerprint.slice(0, 12);
    const serial = 'ab'.repeat(70);
    const [a, b] = [boundedName(`learned-${issuer}-${serial}01`), boundedName(`learned-${issuer}-${serial}02`)];
    assert.notEqual(a, b);
    for (const n of [a, b]) assert.match(n, /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);
    const short = `learned-${issuer}-0a1b`;
    assert.equal(boundedName(short), short, 'an ordinary serial keeps its readable name');
    const ix = new CertIndex();
    ix.add({ ...rec(a), learned: true });
    ix.add({ ...rec(b, f.revoked), learned: true });
    assert.equal(ix.size, 2);
  });
});
