/**
 * CertIndex contract: entries by name, CertID key and fingerprint; `sync` diffs the configured records.
 * Synchronous and without I/O, so these tests build records from the test PKI and nothing else.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { certIdKey } from '../../src/pki/certid.js';
import { CertIndex } from '../../src/service/cert-index.js';
import type { CertRecord } from '../../src/sources/certificates.js';
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
});
