// The records of the cache's log (src/store/kv-log-codec.ts): every version
// and forget record reads back as written, and a damaged blob is an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvEntry } from '../../src/core/kv/entry.js';
import { LogBlobError, LogBlobReader, LogBlobWriter, RECORD_FORGET } from '../../src/store/kv-log-codec.js';
import { writeLatin1 } from '../../src/wire/varint.js';

// Fresh entries, as the reader makes them: not placed in a store yet.
const ENTRIES: KvEntry[] = [
  { key: 'a', value: new Uint8Array([1, 2, 3]), hlc: 1, node: 'n1', expiresMs: 0, storedIn: undefined, storedAt: 0 },
  { key: '\u0000\u00ff'.repeat(200), value: new Uint8Array(0), hlc: Number.MAX_SAFE_INTEGER, node: 'nø🌿', expiresMs: 1_700_000_000_000, storedIn: undefined, storedAt: 0 },
  { key: 'tomb', value: undefined, hlc: 0, node: 'x'.repeat(300), expiresMs: 0, storedIn: undefined, storedAt: 0 },
  { key: 'big', value: new Uint8Array(70_000).fill(7), hlc: 2 ** 40 + 3, node: 'n2', expiresMs: 2 ** 53 - 1, storedIn: undefined, storedAt: 0 },
];

function readAll(blob: Uint8Array): { kind: number; key: string; entry?: KvEntry }[] {
  const r = new LogBlobReader(blob);
  const out: { kind: number; key: string; entry?: KvEntry }[] = [];
  while (r.next()) out.push(r.kind === RECORD_FORGET ? { kind: r.kind, key: r.key } : { kind: r.kind, key: r.key, entry: r.entry() });
  return out;
}

test('versions read back as written, values copied out of the blob', () => {
  const blob = new LogBlobWriter().entries(ENTRIES);
  const got = readAll(blob);
  assert.deepStrictEqual(
    got.map((g) => g.entry),
    ENTRIES,
  );
  blob.fill(0);
  assert.deepStrictEqual([...got[0]!.entry!.value!], [1, 2, 3]);
});

test('skipped versions are left out; forget records carry only the key', () => {
  const w = new LogBlobWriter();
  assert.deepStrictEqual(
    readAll(w.entries(ENTRIES, [true, false, true, false])).map((g) => g.key),
    [ENTRIES[1]!.key, 'big'],
  );
  assert.deepStrictEqual(readAll(w.forgets(['k1', '\u00ff'])), [
    { kind: RECORD_FORGET, key: 'k1' },
    { kind: RECORD_FORGET, key: '\u00ff' },
  ]);
});

test('a record copied whole reads the same in another blob', () => {
  const blob = new LogBlobWriter().entries(ENTRIES);
  const r = new LogBlobReader(blob);
  const parts: Uint8Array[] = [];
  while (r.next()) if (r.key !== 'a') parts.push(r.bytes());
  assert.deepStrictEqual(
    readAll(Buffer.concat(parts)).map((g) => g.entry),
    ENTRIES.slice(1),
  );
});

test('truncated, overlong or unknown records are errors, never other records', () => {
  const blob = new LogBlobWriter().entries(ENTRIES.slice(0, 2));
  for (let cut = 1; cut < blob.length; cut++) {
    try {
      readAll(blob.subarray(0, cut));
      // A cut on a record boundary reads the whole records before it.
      assert.equal(cut, new LogBlobWriter().entries(ENTRIES.slice(0, 1)).length, `cut at ${cut}`);
    } catch (err) {
      assert.ok(err instanceof LogBlobError, `cut at ${cut}: ${String(err)}`);
    }
  }
  assert.throws(() => readAll(new Uint8Array([9, 1, 0x61])), LogBlobError);
  assert.throws(() => readAll(new Uint8Array([0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), LogBlobError);
});

test('writeLatin1 writes what Buffer#write(latin1) writes, short keys and long', () => {
  for (const text of ['', 'a', '\u0000\u007f\u0080\u00ff', 'k'.repeat(64), '\u00e9'.repeat(65), 'x'.repeat(300)]) {
    const mine = Buffer.alloc(text.length + 4, 0xaa);
    const theirs = Buffer.alloc(text.length + 4, 0xaa);
    assert.equal(writeLatin1(mine, 2, text), 2 + text.length);
    theirs.write(text, 2, 'latin1');
    assert.deepStrictEqual(mine, theirs, JSON.stringify(text.slice(0, 8)));
  }
});
