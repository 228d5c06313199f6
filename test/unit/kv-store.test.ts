// The cache's SQLite log (src/store/kv-store.ts) on a real file: group
// commits append one row each, a reopen replays them (a later record of a
// key wins), forget records hide a key's older records across restarts, the
// cleaner drops garbage without losing a live version (what the cache holds,
// here a model of it) or resurrecting a forgotten key, and a cache.db of the
// earlier layouts (one row per key, one row per version) is carried over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { KvEntry } from '../../src/core/kv/entry.js';
import { LogBlobError } from '../../src/store/kv-log-codec.js';
import { KvStore } from '../../src/store/kv-store.js';

function dir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'grapevine-kvstore-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const entry = (key: string, value: string | undefined, hlc: number): KvEntry => ({ key, value: value === undefined ? undefined : Buffer.from(value), hlc, node: 'n1', expiresMs: 0 });
const text = (e: KvEntry | undefined) => (e?.value === undefined ? undefined : Buffer.from(e.value).toString());

/**
 * A model of the cache in front of the store: each version it replaces or
 * forgets is reported to the store (`dropped`) before the commit that
 * replaces it, as the replica's onDropped does.
 */
class Cache {
  readonly held = new Map<string, KvEntry>();
  constructor(readonly store: KvStore) {}
  write(batch: KvEntry[]): void {
    for (const e of batch) {
      const before = this.held.get(e.key);
      if (before) this.store.dropped(before);
      this.held.set(e.key, e);
    }
    this.store.write(batch);
  }
  forget(keys: string[]): void {
    for (const k of keys) {
      const before = this.held.get(k);
      if (before) this.store.dropped(before);
      this.held.delete(k);
    }
    this.store.remove(keys);
  }
}

function reopen(d: string): { store: KvStore; held: Map<string, KvEntry> } {
  const store = KvStore.open(d);
  return { store, held: new Map(store.all().map((e) => [e.key, e])) };
}

test('reopen replays the log: the last row of each key, tombstones kept', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  s.write([entry('a', '1', 1), entry('b', '1', 2)]);
  s.write([entry('a', '2', 3), entry('b', undefined, 4)]);
  s.close();
  const { store, held } = reopen(d);
  assert.equal(text(held.get('a')), '2');
  assert.equal(held.get('b')?.value, undefined);
  assert.equal(held.get('b')?.hlc, 4);
  assert.equal(held.size, 2);
  assert.equal(store.records - held.size, 2, 'two garbage records');
  store.close();
});

test('a forgotten key stays forgotten across reopen and cleaning, and can be written again', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  s.write([entry('x', '1', 1)]);
  s.write([entry('x', undefined, 2)]);
  s.remove(['x', 'never-held']);
  s.close();
  let { store, held } = reopen(d);
  assert.equal(held.has('x'), false);
  assert.equal(held.size, 0);
  while (store.records > 0) if (store.clean() === 0) break;
  assert.equal(store.records, 0);
  store.close();
  ({ store, held } = reopen(d));
  assert.equal(held.has('x'), false);
  store.write([entry('x', 'again', 5)]);
  store.close();
  ({ store, held } = reopen(d));
  assert.equal(text(held.get('x')), 'again');
  store.close();
});

test('cleaning drops garbage and keeps every live version', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  const cache = new Cache(s);
  const want = cache.held;
  let hlc = 1;
  for (let round = 0; round < 45; round++) {
    const batch: KvEntry[] = [];
    for (let k = 0; k < 1_000; k++) {
      if ((k + round) % 3 !== 0) continue;
      batch.push(entry(`key${k}`, `v${round}-${k}`, hlc++));
    }
    cache.write(batch);
  }
  cache.forget(['key1', 'key2']);
  const garbage = () => s.records - want.size;
  assert.ok(s.needsCleaning(want.size), `garbage ${garbage()}`);
  const before = garbage();
  let dropped = 0;
  let between = 0;
  while (s.needsCleaning(want.size)) {
    dropped += s.clean();
    // Writes go on between steps (each makes the key's last version garbage): copies a step made turn to garbage too.
    cache.write([entry(`key${(between * 3) % 1_000}`, `between-${between}`, hlc++)]);
    between += 1;
  }
  assert.ok(dropped > 0 && garbage() === before + between - dropped, `dropped ${dropped} of ${before} + ${between}`);
  // Cleaning by hand past the threshold: the log ends with only live rows.
  while (garbage() > 0) if (s.clean() === 0 && garbage() > 0) break;
  assert.equal(garbage(), 0);
  s.close();
  const { store, held } = reopen(d);
  assert.equal(held.size, want.size);
  for (const [k, e] of want) assert.equal(text(held.get(k)), text(e), k);
  store.close();
});

test('a cache.db with the earlier kv table is carried over', (t) => {
  const d = dir(t);
  const db = new Database(join(d, 'cache.db'));
  db.exec('CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB, hlc INTEGER NOT NULL, node TEXT NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID');
  db.prepare('INSERT INTO kv VALUES (?, ?, ?, ?, ?)').run(Buffer.from('old'), Buffer.from('kept'), 7, 'n9', 0);
  db.close();
  const { store, held } = reopen(d);
  assert.equal(text(held.get('old')), 'kept');
  assert.equal(held.get('old')?.node, 'n9');
  store.close();
});

test('the clock ceiling survives a reopen', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  assert.equal(s.ceiling(), 0);
  s.setCeiling(123_456);
  s.close();
  const again = KvStore.open(d);
  assert.equal(again.ceiling(), 123_456);
  again.close();
});

test('a cache.db with the one-row-per-version log is carried over, forget rows applied', (t) => {
  const d = dir(t);
  const db = new Database(join(d, 'cache.db'));
  db.exec('CREATE TABLE log (seq INTEGER PRIMARY KEY, key BLOB NOT NULL, value BLOB, hlc INTEGER NOT NULL, node TEXT NOT NULL, expires_ms INTEGER NOT NULL)');
  const row = db.prepare('INSERT INTO log (key, value, hlc, node, expires_ms) VALUES (?, ?, ?, ?, ?)');
  row.run(Buffer.from('a'), Buffer.from('1'), 1, 'n1', 0);
  row.run(Buffer.from('b'), Buffer.from('1'), 2, 'n2', 99);
  row.run(Buffer.from('a'), Buffer.from('2'), 3, 'n3', 0);
  row.run(Buffer.from('c'), null, 4, 'n1', 0);
  row.run(Buffer.from('b'), null, 0, '', 0);
  db.close();
  let { store, held } = reopen(d);
  assert.equal(text(held.get('a')), '2');
  assert.equal(held.get('a')?.node, 'n3');
  assert.equal(held.has('b'), false, 'the forget row of b is applied');
  assert.equal(held.get('c')?.value, undefined);
  assert.equal(held.get('c')?.hlc, 4);
  assert.equal(held.size, 2);
  store.write([entry('d', '1', 5)]);
  store.close();
  const check = new Database(join(d, 'cache.db'), { readonly: true });
  assert.deepEqual(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all(), ['commits', 'meta']);
  check.close();
  ({ store, held } = reopen(d));
  assert.deepEqual([...held.keys()].sort(), ['a', 'c', 'd']);
  store.close();
});

test('a key twice in one commit: its last version is loaded, and the cleaner drops the other', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  s.write([entry('a', '1', 1), entry('b', '1', 2), entry('a', '2', 3)]);
  s.close();
  let { store, held } = reopen(d);
  assert.equal(text(held.get('a')), '2');
  assert.equal(held.size, 2);
  assert.equal(store.records, 3);
  while (store.records > held.size) if (store.clean() === 0) break;
  assert.equal(store.records, 2);
  store.close();
  ({ store, held } = reopen(d));
  assert.equal(text(held.get('a')), '2');
  assert.equal(text(held.get('b')), '1');
  assert.equal(store.records, 2);
  store.close();
});

test('a forgotten key written again counts as held again', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  const cache = new Cache(s);
  cache.write([entry('x', '1', 1)]);
  cache.forget(['x']);
  assert.equal(s.records, 2, 'the value and its forget record, both garbage');
  cache.write([entry('x', '2', 2)]);
  assert.equal(s.records, 3);
  while (s.records > cache.held.size) if (s.clean() === 0) break;
  assert.equal(s.records, 1);
  s.close();
  const { store, held } = reopen(d);
  assert.equal(text(held.get('x')), '2');
  assert.equal(held.size, 1);
  assert.equal(store.records, 1);
  store.close();
});

test('a damaged commit fails the load instead of loading another cache', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  s.write([entry('key', 'value', 1)]);
  s.close();
  const db = new Database(join(d, 'cache.db'));
  const blob = db.prepare('SELECT records FROM commits').pluck().get() as Buffer;
  db.prepare('UPDATE commits SET records = ?').run(blob.subarray(0, blob.length - 2));
  db.close();
  const broken = KvStore.open(d);
  assert.throws(() => broken.all(), LogBlobError);
  broken.close();
});

test('the cleaner keeps exactly the held versions: after a reopen, and when a version is replaced before its commit', (t) => {
  const d = dir(t);
  const s = KvStore.open(d);
  s.all();
  new Cache(s).write([entry('a', '1', 1), entry('b', '1', 2), entry('c', '1', 3)]);
  s.close();
  const store = KvStore.open(d);
  const cache = new Cache(store);
  for (const e of store.all()) cache.held.set(e.key, e);
  // 'a' twice in one commit (the first replaced before the commit), 'b' forgotten.
  cache.write([entry('a', '2', 4), entry('a', '3', 5)]);
  cache.forget(['b']);
  assert.equal(store.records, 6);
  while (store.clean() > 0);
  assert.equal(store.records, 2, 'a=3 and c=1 only');
  store.close();
  const { store: again, held } = reopen(d);
  assert.deepEqual([...held.keys()].sort(), ['a', 'c']);
  assert.equal(text(held.get('a')), '3');
  assert.equal(text(held.get('c')), '1');
  again.close();
});
