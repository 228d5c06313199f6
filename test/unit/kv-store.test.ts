// The cache's SQLite log (src/store/kv-store.ts) on a real file: group
// commits append rows, a reopen replays them (a later row of a key wins),
// forget rows hide a key's older rows across restarts, the cleaner drops
// garbage without losing a live version or resurrecting a forgotten key,
// and a cache.db of the earlier one-row-per-key layout is carried over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { KvEntry } from '../../src/core/kv/entry.js';
import { KvStore } from '../../src/store/kv-store.js';

function dir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'grapevine-kvstore-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const entry = (key: string, value: string | undefined, hlc: number): KvEntry => ({ key, value: value === undefined ? undefined : Buffer.from(value), hlc, node: 'n1', expiresMs: 0 });
const text = (e: KvEntry | undefined) => (e?.value === undefined ? undefined : Buffer.from(e.value).toString());

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
  assert.equal(store.count(), 2);
  assert.equal(store.garbage, 2);
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
  assert.equal(store.count(), 0);
  while (store.garbage > 0) if (store.clean() === 0 && store.garbage > 0) break;
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
  const want = new Map<string, string>();
  let hlc = 1;
  for (let round = 0; round < 45; round++) {
    const batch: KvEntry[] = [];
    for (let k = 0; k < 1_000; k++) {
      if ((k + round) % 3 !== 0) continue;
      const v = `v${round}-${k}`;
      batch.push(entry(`key${k}`, v, hlc++));
      want.set(`key${k}`, v);
    }
    s.write(batch);
  }
  s.remove(['key1', 'key2']);
  want.delete('key1');
  want.delete('key2');
  assert.ok(s.needsCleaning(), `garbage ${s.garbage}`);
  const before = s.garbage;
  let dropped = 0;
  while (s.needsCleaning()) dropped += s.clean();
  assert.ok(dropped > 0 && s.garbage === before - dropped, `dropped ${dropped} of ${before}`);
  // Cleaning by hand past the threshold: the log ends with only live rows.
  while (s.garbage > 0) if (s.clean() === 0 && s.garbage > 0) break;
  assert.equal(s.garbage, 0);
  s.close();
  const { store, held } = reopen(d);
  assert.equal(held.size, want.size);
  for (const [k, v] of want) assert.equal(text(held.get(k)), v, k);
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
