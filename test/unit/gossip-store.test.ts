// The SQLite message store of a node (src/store/gossip-store.ts), on a real
// database in a temp dir: insert, dedupe by id and by (origin, incarnation,
// seq), storing-order paging, lookups by seq, retention by count and by age
// (whole stream prefixes, recorded as floors) and a reopen that keeps it all.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { messageId } from '../../src/core/gossip/message.js';
import type { GossipMessage } from '../../src/core/gossip/message.js';
import Database from 'better-sqlite3';
import { GossipStore, RETENTION_DEFAULTS } from '../../src/store/gossip-store.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();

function msg(origin: string, incarnation: number, seq: number, text = `${origin}/${incarnation}#${seq}`, path: string[] = [origin]): GossipMessage {
  return { id: messageId(sha256, origin, incarnation, seq, text), origin, incarnation, seq, text, createdMs: 1_700_000_000_000 + seq, path };
}

function dir(t: TestContext): string {
  const d = mkdtempSync(join(tmpdir(), 'gossip-store-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function open(t: TestContext, d: string): GossipStore {
  const s = GossipStore.open(d);
  t.after(() => s.close());
  return s;
}

const key = (m: { origin: string; incarnation: number; seq: number }) => `${m.origin}/${m.incarnation}/${m.seq}`;
const keys = (ms: readonly { origin: string; incarnation: number; seq: number }[]) => ms.map(key);

test('insert stores every field; get returns it with rowid and receivedMs; unknown id is undefined', (t) => {
  const d = dir(t);
  const s = open(t, join(d, 'nested', 'data'));
  assert.ok(existsSync(join(d, 'nested', 'data', 'gossip.db')), 'the data dir is created, the db is DATA_DIR/gossip.db');
  const a = msg('n1', 5, 1, 'line one\nline two \\ and a backslash, grüße ✓', ['n1', 'n2', 'n3']);
  const b = msg('n2', 7, 1);
  assert.equal(s.insertMany([{ message: a, receivedMs: 111 }, { message: b, receivedMs: 222 }]), 2);
  assert.equal(s.count(), 2);
  const got = s.get(a.id)!;
  assert.deepEqual({ ...got, rowid: 0 }, { ...a, rowid: 0, receivedMs: 111 });
  assert.ok(got.rowid > 0);
  assert.equal(s.get(b.id)!.rowid, got.rowid + 1, 'rowids follow storing order');
  assert.equal(s.get('AAAAAAAAAAA'), undefined);
  assert.equal(s.insertMany([]), 0);
});

test('dedupe: the same id, or the same (origin, incarnation, seq), is stored once, also within one batch', (t) => {
  const s = open(t, dir(t));
  const a = msg('n1', 1, 1, 'apple');
  assert.equal(s.insertMany([{ message: a, receivedMs: 1 }]), 1);
  // The same message again, and again with another path (it came by another route).
  assert.equal(s.insertMany([{ message: a, receivedMs: 2 }, { message: { ...a, path: ['n1', 'n9'] }, receivedMs: 3 }]), 0);
  // Same id, other stream coordinates (cannot happen with honest ids): still once.
  assert.equal(s.insertMany([{ message: { ...a, seq: 99 }, receivedMs: 4 }]), 0);
  // Same stream coordinates, other id/text: the stream slot is taken.
  assert.equal(s.insertMany([{ message: msg('n1', 1, 1, 'banana'), receivedMs: 5 }]), 0);
  // Within one batch: the duplicate is ignored, the rest are stored.
  const b = msg('n1', 1, 2);
  const c = msg('n1', 2, 1); // same origin, next incarnation: another stream
  assert.equal(s.insertMany([{ message: b, receivedMs: 6 }, { message: b, receivedMs: 7 }, { message: c, receivedMs: 8 }]), 2);
  assert.equal(s.count(), 3);
  const stored = s.get(a.id)!;
  assert.equal(stored.text, 'apple');
  assert.deepEqual(stored.path, ['n1'], 'the first copy is the one kept');
  assert.equal(stored.receivedMs, 1);
  assert.equal(s.get(b.id)!.receivedMs, 6);
  assert.deepEqual(keys([...s.held()]).sort(), ['n1/1/1', 'n1/1/2', 'n1/2/1']);
});

test('list pages through storing order; bySeqs returns held seqs in the order asked', (t) => {
  const s = open(t, dir(t));
  // Stored out of seq order and interleaved across streams: list follows storing order, not seq.
  const order = [msg('a', 1, 2), msg('b', 1, 1), msg('a', 1, 1), msg('a', 1, 3), msg('b', 1, 2)];
  s.insertMany(order.slice(0, 2).map((message) => ({ message, receivedMs: 10 })));
  s.insertMany(order.slice(2).map((message) => ({ message, receivedMs: 20 })));

  const pages: string[][] = [];
  let after = 0;
  for (;;) {
    const page = s.list(after, 2);
    if (page.length === 0) break;
    pages.push(keys(page));
    for (let i = 1; i < page.length; i++) assert.ok(page[i]!.rowid > page[i - 1]!.rowid);
    after = page[page.length - 1]!.rowid;
  }
  assert.deepEqual(pages, [['a/1/2', 'b/1/1'], ['a/1/1', 'a/1/3'], ['b/1/2']]);
  assert.deepEqual(keys(s.list(0, 100)), keys(order));
  assert.deepEqual(s.list(after, 10), [], 'nothing after the last');

  assert.deepEqual(keys(s.bySeqs('a', 1, [3, 1, 2])), ['a/1/3', 'a/1/1', 'a/1/2']);
  assert.deepEqual(keys(s.bySeqs('a', 1, [4, 2, 9])), ['a/1/2'], 'seqs not held are skipped');
  assert.deepEqual(keys(s.bySeqs('a', 1, [1, 2, 3, 4, 5])), ['a/1/1', 'a/1/2', 'a/1/3'], 'a run of consecutive seqs, read as a range');
  assert.deepEqual(keys(s.bySeqs('a', 1, [2, 3, 1])), ['a/1/2', 'a/1/3', 'a/1/1']);
  assert.deepEqual(s.bySeqs('a', 2, [1]), [], 'another incarnation is another stream');
  assert.deepEqual(s.bySeqs('zz', 1, [1]), []);
  assert.equal(s.bySeqs('b', 1, [2])[0]!.text, order[4]!.text);
});

test('retention by count purges whole stream prefixes and records them as floors', (t) => {
  const s = open(t, dir(t));
  // Storing order: a1 b1 a2 b2 a3 b3 a4
  const stored = [msg('a', 1, 1), msg('b', 1, 1), msg('a', 1, 2), msg('b', 1, 2), msg('a', 1, 3), msg('b', 1, 3), msg('a', 1, 4)];
  s.insertMany(stored.map((message) => ({ message, receivedMs: 1_000 })));
  const keep = { retainCount: 4, retainMs: RETENTION_DEFAULTS.retainMs };

  // Nothing to do while under the bound.
  assert.deepEqual(s.purge({ ...keep, retainCount: 7 }, 2_000), []);
  assert.equal(s.count(), 7);

  // 7 stored, keep 4: the oldest 3 (a1 b1 a2) fall out -> a up to 2, b up to 1.
  const raised = s.purge(keep, 2_000);
  assert.deepEqual(raised.map((f) => [f.origin, f.incarnation, f.floor]).sort(), [['a', 1, 2], ['b', 1, 1]]);
  assert.deepEqual(keys(s.list(0, 100)), ['b/1/2', 'a/1/3', 'b/1/3', 'a/1/4']);
  assert.deepEqual(s.floors().map((f) => [f.origin, f.incarnation, f.floor]).sort(), [['a', 1, 2], ['b', 1, 1]]);
  assert.equal(s.get(stored[0]!.id), undefined);
  assert.deepEqual(s.bySeqs('a', 1, [1, 2, 3]).map((m) => m.seq), [3]);

  // A stream stored out of order: its prefix goes whole, so nothing at or
  // below a floor ever remains (the floor means "nothing here any more").
  s.insertMany([msg('c', 1, 3), msg('c', 1, 1), msg('c', 1, 2)].map((message) => ({ message, receivedMs: 1_000 })));
  const again = s.purge({ ...keep, retainCount: 6 }, 2_000); // 7 stored, the oldest (b2) falls out
  assert.deepEqual(again.map((f) => [f.origin, f.floor]), [['b', 2]]);
  const more = s.purge({ ...keep, retainCount: 3 }, 2_000); // a3 b3 a4 c3 c1 c2: the oldest 3 fall out
  assert.deepEqual(more.map((f) => [f.origin, f.floor]).sort(), [['a', 4], ['b', 3]]);
  assert.deepEqual(keys(s.list(0, 100)), ['c/1/3', 'c/1/1', 'c/1/2']);
  // Keep 2: c3 falls out, and its prefix takes c1 and c2 along (fewer than 2 remain: the bound is an upper one).
  const c = s.purge({ ...keep, retainCount: 2 }, 2_000);
  assert.deepEqual(c.map((f) => [f.origin, f.floor]), [['c', 3]]);
  assert.equal(s.count(), 0);
  for (const f of s.floors()) assert.deepEqual(s.bySeqs(f.origin, f.incarnation, [1, 2, 3, 4]), []);
  assert.deepEqual(s.floors().map((f) => [f.origin, f.floor]).sort(), [['a', 4], ['b', 3], ['c', 3]]);
});

test('retention by age purges what was received before now - retainMs; floors only rise', (t) => {
  const s = open(t, dir(t));
  const now = 1_000_000;
  const policy = { retainCount: 1_000, retainMs: 10_000 };
  const old1 = msg('x', 1, 1);
  const old2 = msg('x', 1, 2);
  const young = msg('x', 1, 3);
  const otherYoung = msg('y', 1, 1);
  s.insertMany([
    { message: old1, receivedMs: now - 50_000 },
    { message: old2, receivedMs: now - 10_001 },
    { message: young, receivedMs: now - 9_999 },
    { message: otherYoung, receivedMs: now - 1 },
  ]);
  assert.deepEqual(s.purge(policy, now - 40_000), [], 'nothing old enough yet');
  assert.deepEqual(s.purge(policy, now).map((f) => [f.origin, f.floor]), [['x', 2]]);
  assert.deepEqual(keys(s.list(0, 10)), ['x/1/3', 'y/1/1']);
  assert.deepEqual(s.purge(policy, now), [], 'idempotent');
  // Later, everything has aged out: floors rise to the tops.
  assert.deepEqual(s.purge(policy, now + 20_000).map((f) => [f.origin, f.floor]).sort(), [['x', 3], ['y', 1]]);
  assert.equal(s.count(), 0);
  assert.deepEqual(s.floors().map((f) => [f.origin, f.floor]).sort(), [['x', 3], ['y', 1]]);
  // A later purge of a lower prefix never lowers a floor.
  s.insertMany([{ message: msg('x', 1, 1, 'refetched by mistake'), receivedMs: now }]);
  s.purge(policy, now + 100_000);
  assert.deepEqual(s.floors().find((f) => f.origin === 'x')!.floor, 3);
});

test('a reopened store keeps messages, storing order, floors, and continues the rowids', (t) => {
  const d = dir(t);
  const first = GossipStore.open(d);
  const ms = [msg('a', 3, 1, 'one'), msg('a', 3, 2, 'two\nlines'), msg('b', 9, 1, 'three'), msg('b', 9, 2, 'four')];
  first.insertMany(ms.map((message, i) => ({ message, receivedMs: 1_000 + i })));
  first.purge({ retainCount: 3, retainMs: RETENTION_DEFAULTS.retainMs }, 2_000); // a1 goes
  const before = { list: first.list(0, 100), floors: first.floors(), held: [...first.held()] };
  first.close();
  first.close(); // twice is harmless

  const s = open(t, d);
  assert.deepEqual(s.list(0, 100), before.list);
  assert.deepEqual(s.floors(), before.floors);
  assert.deepEqual([...s.held()], before.held);
  assert.equal(s.count(), 3);
  assert.equal(s.get(ms[1]!.id)!.text, 'two\nlines');
  assert.equal(s.insertMany([{ message: ms[2]!, receivedMs: 5_000 }]), 0, 'still deduped after the reopen');
  const next = msg('c', 1, 1);
  s.insertMany([{ message: next, receivedMs: 6_000 }]);
  assert.ok(s.get(next.id)!.rowid > before.list[before.list.length - 1]!.rowid, 'new messages list after the old ones');
});

test('ids merged into message_ids and ids still in memory: get, dedupe by id, purge and a reopen all see both', (t) => {
  const d = dir(t);
  const ms = Array.from({ length: 11 }, (_, i) => msg('a', 1, i + 1, `text ${i}`));
  const first = GossipStore.open(d, { idMergeRows: 4 });
  // Batches of 3, 3, 3, 1 and 1: merges run after the commits that reach 4 pending ids (the 2nd and the 4th); the last row stays in memory.
  for (let i = 0; i < 10; i += 3) first.insertMany(ms.slice(i, Math.min(10, i + 3)).map((message) => ({ message, receivedMs: 1_000 + i })));
  first.insertMany([{ message: ms[10]!, receivedMs: 2_000 }]);
  const raw = new Database(join(d, 'gossip.db'), { readonly: true });
  assert.equal((raw.prepare('SELECT count(*) AS n FROM message_ids').get() as { n: number }).n, 10, 'merged: all but the last');
  raw.close();
  for (const m of ms) assert.equal(first.get(m.id)?.text, m.text);
  // The same id under other stream coordinates, merged or pending: not stored again.
  assert.equal(first.insertMany([{ message: { ...ms[0]!, seq: 100 }, receivedMs: 1 }, { message: { ...ms[10]!, seq: 101 }, receivedMs: 1 }]), 0);
  first.close();
  const s = open(t, d);
  for (const m of ms) assert.equal(s.get(m.id)?.text, m.text, 'after a reopen (pending ids read back)');
  assert.equal(s.insertMany([{ message: { ...ms[1]!, seq: 102 }, receivedMs: 1 }, { message: { ...ms[9]!, seq: 103 }, receivedMs: 1 }]), 0);
  s.purge({ retainCount: 2, retainMs: RETENTION_DEFAULTS.retainMs }, 2_000);
  assert.deepEqual(keys(s.list(0, 100)), ['a/1/10', 'a/1/11']);
  for (const m of ms.slice(0, 9)) assert.equal(s.get(m.id), undefined, 'a purged id is gone from both');
  assert.equal(s.get(ms[10]!.id)?.text, ms[10]!.text);
});

test('a store written with the old layout (a UNIQUE index on messages.id) opens with every message', (t) => {
  const d = dir(t);
  const old = new Database(join(d, 'gossip.db'));
  old.exec(`
    CREATE TABLE messages (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, origin TEXT NOT NULL, incarnation INTEGER NOT NULL,
      seq INTEGER NOT NULL, text TEXT NOT NULL, created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, path TEXT NOT NULL);
    CREATE UNIQUE INDEX messages_stream ON messages (origin, incarnation, seq);
    CREATE INDEX messages_received ON messages (received_ms);
    CREATE TABLE floors (origin TEXT NOT NULL, incarnation INTEGER NOT NULL, floor INTEGER NOT NULL, PRIMARY KEY (origin, incarnation));
  `);
  const ms = [msg('a', 1, 2, 'two', ['a', 'b']), msg('b', 4, 1, 'one'), msg('a', 1, 3, 'three')];
  const ins = old.prepare('INSERT INTO messages (rowid, id, origin, incarnation, seq, text, created_ms, received_ms, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  ms.forEach((m, i) => ins.run(10 + i, m.id, m.origin, m.incarnation, m.seq, m.text, m.createdMs, 500 + i, JSON.stringify(m.path)));
  old.prepare('INSERT INTO floors VALUES (?, ?, ?)').run('a', 1, 1);
  old.close();
  // A merge at open too (more than 2 x idMergeRows unmerged rows).
  const s = open(t, d);
  const reopened = GossipStore.open(d, { idMergeRows: 1 });
  assert.equal(reopened.insertMany([{ message: { ...ms[0]!, seq: 8 }, receivedMs: 9 }]), 0, 'ids merged at open: deduped by id');
  reopened.close();
  assert.deepEqual(keys(s.list(0, 100)), keys(ms));
  assert.deepEqual(s.list(0, 100).map((m) => m.rowid), [10, 11, 12], 'rowids (storing order) kept');
  assert.deepEqual({ ...s.get(ms[0]!.id)!, rowid: 0 }, { ...ms[0]!, rowid: 0, receivedMs: 500 });
  assert.deepEqual(s.floors(), [{ origin: 'a', incarnation: 1, floor: 1 }]);
  assert.equal(s.insertMany([{ message: ms[1]!, receivedMs: 9 }, { message: { ...ms[2]!, seq: 7 }, receivedMs: 9 }]), 0, 'deduped by stream and by id');
  assert.equal(s.insertMany([{ message: msg('c', 1, 1), receivedMs: 9 }]), 1);
  assert.equal(s.list(0, 100).at(-1)!.rowid, 13);
});

test('stream coordinates merged into message_seqs and still in memory: bySeqs across both, dedupe, purge and a reopen', (t) => {
  const d = dir(t);
  // Two streams interleaved, a1 b1 a2 b2 ... a6 b6, in commits of 5, 5 and 2: the first two reach 4 pending rows and are merged, a6 b6 stay in memory.
  const ms = Array.from({ length: 6 }, (_, i) => [msg('a', 1, i + 1), msg('b', 2, i + 1)]).flat();
  const first = GossipStore.open(d, { idMergeRows: 4 });
  for (let i = 0; i < ms.length; i += 5) first.insertMany(ms.slice(i, i + 5).map((message) => ({ message, receivedMs: 1_000 + i })));
  const raw = new Database(join(d, 'gossip.db'), { readonly: true });
  const merged = (raw.prepare('SELECT count(*) AS n FROM message_seqs').get() as { n: number }).n;
  raw.close();
  assert.ok(merged > 0 && merged < ms.length, `some rows merged, some in memory (merged ${merged} of ${ms.length})`);
  // A run that spans merged and unmerged rows, out-of-order asks, and seqs not held.
  assert.deepEqual(keys(first.bySeqs('a', 1, [1, 2, 3, 4, 5, 6, 7])), ['a/1/1', 'a/1/2', 'a/1/3', 'a/1/4', 'a/1/5', 'a/1/6']);
  assert.deepEqual(keys(first.bySeqs('b', 2, [6, 1, 9, 4])), ['b/2/6', 'b/2/1', 'b/2/4']);
  assert.equal(first.bySeqs('a', 1, [6])[0]!.text, ms[10]!.text);
  // The stream slot is taken whether merged (a1) or in memory (a6): another text under the same coordinates is not stored.
  assert.equal(first.insertMany([{ message: msg('a', 1, 1, 'forged'), receivedMs: 9 }, { message: msg('a', 1, 6, 'forged'), receivedMs: 9 }]), 0);
  first.close();

  const s = open(t, d);
  assert.equal(s.insertMany([{ message: msg('b', 2, 6, 'forged'), receivedMs: 9 }, { message: msg('b', 2, 1, 'forged'), receivedMs: 9 }]), 0, 'after a reopen');
  assert.deepEqual(keys(s.bySeqs('b', 2, [1, 2, 3, 4, 5, 6])), ['b/2/1', 'b/2/2', 'b/2/3', 'b/2/4', 'b/2/5', 'b/2/6']);
  // Keep 2: the merged rows go (a and b up to 5).
  const raised = s.purge({ retainCount: 2, retainMs: RETENTION_DEFAULTS.retainMs }, 2_000);
  assert.deepEqual(raised.map((f) => [f.origin, f.floor]).sort(), [['a', 5], ['b', 5]]);
  assert.deepEqual(keys(s.list(0, 100)), ['a/1/6', 'b/2/6']);
  assert.deepEqual(keys(s.bySeqs('a', 1, [1, 2, 3, 4, 5, 6])), ['a/1/6']);
  for (const m of ms.filter((m) => m.seq <= 5)) assert.equal(s.get(m.id), undefined);
  const left = new Database(join(d, 'gossip.db'), { readonly: true });
  assert.equal((left.prepare('SELECT count(*) AS n FROM message_seqs WHERE seq <= 5').get() as { n: number }).n, 0, 'purged coordinates are gone');
  left.close();
  // Unmerged rows in a purged prefix: c2 then c1 (stored out of order); keep 1: c2 falls out and takes the younger c1 along.
  const c = [msg('c', 1, 2), msg('c', 1, 1)];
  s.insertMany(c.map((message) => ({ message, receivedMs: 2_000 })));
  assert.deepEqual(s.purge({ retainCount: 1, retainMs: RETENTION_DEFAULTS.retainMs }, 3_000).map((f) => [f.origin, f.floor]).sort(), [['a', 6], ['b', 6], ['c', 2]]);
  assert.equal(s.count(), 0);
  for (const m of c) assert.equal(s.get(m.id), undefined);
  assert.deepEqual(s.bySeqs('c', 1, [1, 2]), []);
});

test('a store written with an index on messages (origin, incarnation, seq) opens with every message findable by seq', (t) => {
  const d = dir(t);
  const old = new Database(join(d, 'gossip.db'));
  old.exec(`
    CREATE TABLE messages (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, origin TEXT NOT NULL, incarnation INTEGER NOT NULL,
      seq INTEGER NOT NULL, text TEXT NOT NULL, created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, path TEXT NOT NULL);
    CREATE TABLE message_ids (id TEXT PRIMARY KEY, msg INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE floors (origin TEXT NOT NULL, incarnation INTEGER NOT NULL, floor INTEGER NOT NULL, PRIMARY KEY (origin, incarnation));
    CREATE UNIQUE INDEX messages_stream ON messages (origin, incarnation, seq);
    CREATE INDEX messages_received ON messages (received_ms);
  `);
  const ms = [msg('a', 1, 1), msg('b', 4, 1), msg('a', 1, 2), msg('a', 1, 3)];
  const ins = old.prepare('INSERT INTO messages (rowid, id, origin, incarnation, seq, text, created_ms, received_ms, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  ms.forEach((m, i) => ins.run(1 + i, m.id, m.origin, m.incarnation, m.seq, m.text, m.createdMs, 500 + i, JSON.stringify(m.path)));
  // The first two were merged into message_ids by the old code, the others were still in its memory.
  old.prepare('INSERT INTO message_ids VALUES (?, ?), (?, ?)').run(ms[0]!.id, 1, ms[1]!.id, 2);
  old.prepare("INSERT INTO meta VALUES ('ids_indexed_through', 2)").run();
  old.close();
  const s = open(t, d);
  const raw = new Database(join(d, 'gossip.db'), { readonly: true });
  assert.equal(raw.prepare("SELECT 1 FROM sqlite_master WHERE name = 'messages_stream'").get(), undefined, 'the per-insert index is dropped');
  raw.close();
  assert.deepEqual(keys(s.bySeqs('a', 1, [1, 2, 3])), ['a/1/1', 'a/1/2', 'a/1/3']);
  assert.deepEqual(keys(s.bySeqs('b', 4, [1])), ['b/4/1']);
  for (const m of ms) assert.equal(s.get(m.id)?.text, m.text);
  assert.equal(s.insertMany([{ message: msg('a', 1, 3, 'other'), receivedMs: 9 }, { message: msg('b', 4, 1, 'other'), receivedMs: 9 }]), 0, 'deduped by stream');
  // Keep 1: a1 b1 a2 fall out.
  assert.equal(s.purge({ retainCount: 1, retainMs: RETENTION_DEFAULTS.retainMs }, 2_000).length, 2);
  assert.deepEqual(keys(s.list(0, 100)), ['a/1/3']);
  assert.deepEqual(s.floors().map((f) => [f.origin, f.floor]).sort(), [['a', 2], ['b', 1]]);
  assert.deepEqual(keys(s.bySeqs('a', 1, [1, 2, 3])), ['a/1/3']);
});

test('retention by age finds its cut in storing order over many rows, gaps included, and the old received_ms index is dropped', (t) => {
  const d = dir(t);
  const raw0 = new Database(join(d, 'gossip.db'));
  raw0.exec('CREATE TABLE messages (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, origin TEXT NOT NULL, incarnation INTEGER NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL, created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, path TEXT NOT NULL); CREATE INDEX messages_received ON messages (received_ms);');
  raw0.close();
  const s = open(t, d);
  // One stream per message (a purge then takes exactly the rows it cuts), received at 1,000 + 10 * i; rowids 1..300.
  const ms = Array.from({ length: 300 }, (_, i) => msg(`s${i}`, 1, 1));
  for (let i = 0; i < ms.length; i += 7) s.insertMany(ms.slice(i, i + 7).map((message, j) => ({ message, receivedMs: 1_000 + 10 * (i + j) })));
  const probe = new Database(join(d, 'gossip.db'), { readonly: true });
  assert.equal(probe.prepare("SELECT 1 FROM sqlite_master WHERE name = 'messages_received'").get(), undefined);
  probe.close();
  const keepAll = { retainCount: 1_000, retainMs: 100 };
  assert.deepEqual(s.purge(keepAll, 1_000 + 100), [], 'received at 1,000 is not before 1,000');
  assert.equal(s.purge(keepAll, 1_000 + 101).length, 1, 'the first row only');
  assert.equal(s.count(), 299);
  // A gap in the rowids (rows 101..150 gone by another route) does not mislead the search.
  const raw = new Database(join(d, 'gossip.db'));
  raw.prepare('DELETE FROM messages WHERE rowid BETWEEN 101 AND 150').run();
  raw.close();
  // now 2,351, retainMs 100: rows received before 2,251 (rowids up to 126) go; 101..126 are gone already.
  assert.equal(s.purge(keepAll, 2_351).length, 99, 'rowids 2..100');
  assert.equal(s.list(0, 1)[0]!.rowid, 151);
  assert.equal(s.purge(keepAll, 1_000 + 10 * 160 + 101).length, 11, 'rowids 151..161');
  assert.equal(s.purge(keepAll, 1_000_000).length, 300 - 161);
  // Asked of the table itself: count() is kept in memory by the store, which cannot see the rows deleted behind its back above.
  const left = new Database(join(d, 'gossip.db'), { readonly: true });
  assert.equal((left.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n, 0);
  left.close();
  assert.deepEqual(s.purge(keepAll, 2_000_000), [], 'empty store');
});

test('count() is kept in memory and always equals the rows in the table: duplicates, merges, both kinds of purge, a reopen', (t) => {
  const d = dir(t);
  const rowsInTable = (): number => {
    const raw = new Database(join(d, 'gossip.db'), { readonly: true });
    try {
      return (raw.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
    } finally {
      raw.close();
    }
  };
  const s = GossipStore.open(d, { idMergeRows: 4 });
  const ms = Array.from({ length: 7 }, (_, i) => [msg('a', 1, i + 1), msg('b', 1, i + 1)]).flat();
  s.insertMany(ms.slice(0, 5).map((message) => ({ message, receivedMs: 1_000 })));
  // Copies of stored ones (merged or not) next to new ones: only the new count.
  assert.equal(s.insertMany([...ms.slice(0, 6), ...ms.slice(3, 9)].map((message) => ({ message, receivedMs: 2_000 }))), 4);
  assert.equal(s.count(), 9);
  assert.equal(s.count(), rowsInTable());
  s.insertMany(ms.slice(9).map((message) => ({ message, receivedMs: 3_000 })));
  assert.equal(s.count(), 14);
  // By count (merged rows and rows still in memory), then by age.
  s.purge({ retainCount: 5, retainMs: RETENTION_DEFAULTS.retainMs }, 3_000);
  assert.equal(s.count(), rowsInTable());
  assert.ok(s.count() <= 5 && s.count() > 0, `kept ${s.count()}`);
  s.close();
  const again = open(t, d);
  assert.equal(again.count(), rowsInTable(), 'read back at open');
  again.purge({ retainCount: 100, retainMs: 1 }, 10_000);
  assert.equal(again.count(), 0);
  assert.equal(rowsInTable(), 0);
});

test('id merges come at jittered points, so nodes that store the same flood do not all merge at once', (t) => {
  const s = GossipStore.open(dir(t), { idMergeRows: 40, idMergeJitter: 0.5 });
  t.after(() => s.close());
  const points: number[] = [];
  let since = 0;
  for (let i = 1; i <= 1_000; i++) {
    s.insertMany([{ message: msg('j', 1, i), receivedMs: i }]);
    since += 1;
    if (s.work.idMerges > points.length) {
      points.push(since);
      since = 0;
    }
  }
  assert.ok(points.length >= 15, `${points.length} merges`);
  for (const p of points) assert.ok(p >= 20 && p <= 60, `a merge after ${p} rows, outside 40 ± 50 %`);
  assert.ok(new Set(points).size > 3, `merge points vary: ${points.join(' ')}`);
  // Everything stays findable across the merges.
  assert.equal(s.count(), 1_000);
  assert.deepEqual(keys(s.bySeqs('j', 1, [1, 500, 1_000])), ['j/1/1', 'j/1/500', 'j/1/1000']);
  assert.equal(s.get(msg('j', 1, 777).id)!.seq, 777);
});
