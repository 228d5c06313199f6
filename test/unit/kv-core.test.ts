// Unit tests of the cache core (src/core/kv): the hybrid logical clock, the
// last-writer-wins order, the replica (writes, merges, tombstones, restore,
// digests and anti-entropy, scans, purge, bounds) and the glob of KEYS/SCAN.
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compareWrites, isLive, versionFingerprint } from '../../src/core/kv/entry.js';
import type { KvEntry } from '../../src/core/kv/entry.js';
import { globMatchLatin1 as globMatch } from '../../src/core/kv/glob.js';
import { HLC_LOGICAL_BITS, HybridClock, hlcOf, hlcWallMs, isHlc } from '../../src/core/kv/hlc.js';
import { ENTRY_OVERHEAD_BYTES, KV_REPLICA_DEFAULTS, KvReplica } from '../../src/core/kv/replica.js';
import type { KvReplicaConfig } from '../../src/core/kv/replica.js';

const T0_MS = 1_700_000_000_000;
const LOGICAL_SPAN = 2 ** HLC_LOGICAL_BITS;
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : new TextDecoder().decode(value));

function replica(selfId: string, over: Partial<KvReplicaConfig> = {}): KvReplica {
  return new KvReplica({ ...KV_REPLICA_DEFAULTS, selfId, bucketCount: 16, ...over });
}

function written(r: KvReplica, key: string, value: string | undefined, wallMs = T0_MS, expiresMs = 0): KvEntry {
  const e = r.write(key, value === undefined ? undefined : bytes(value), wallMs, expiresMs);
  assert.notEqual(e, 'full');
  return e as KvEntry;
}

const entry = (key: string, value: string | undefined, hlc: number, node: string, expiresMs = 0): KvEntry => ({ key, value: value === undefined ? undefined : bytes(value), hlc, node, expiresMs });

/** Every entry a replica holds, tombstones included, sorted by key. */
function contents(r: KvReplica): KvEntry[] {
  const all = r.versionsIn(Array.from({ length: r.bucketCount }, (_, b) => b)).map((v) => r.raw(v.key)!);
  return all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Anti-entropy as the runtime runs it, a asking b, until nothing differs; returns the rounds taken. */
function syncUntilEqual(a: KvReplica, b: KvReplica, versionsMax: number, bytesMax: number, nowMs = T0_MS): number {
  for (let round = 1; round <= 1_000; round++) {
    const answer = b.answerDigest(a.digest(), versionsMax);
    assert.ok(answer);
    const plan = a.reconcile(answer.buckets, answer.versions);
    for (const e of plan.push) b.apply(e, nowMs);
    let fetched = 0;
    for (const e of b.answerFetch(plan.fetch, bytesMax)) if (a.apply(e, nowMs)) fetched += 1;
    if (!answer.more && fetched >= plan.fetch.length && plan.push.length === 0) return round;
  }
  assert.fail('anti-entropy did not finish in 1000 rounds');
}

describe('HybridClock', () => {
  test('hlcOf / hlcWallMs / isHlc: ms times 2^10 plus the counter, exact for today\'s ms', () => {
    const h = hlcOf(T0_MS, 5);
    assert.equal(h, T0_MS * 1024 + 5);
    assert.equal(hlcWallMs(h), T0_MS);
    assert.ok(Number.isSafeInteger(hlcOf(2 ** 41 - 1, LOGICAL_SPAN - 1)), '41 bits of ms + 10 bits fit a double exactly');
    assert.ok(isHlc(h) && isHlc(0));
    assert.ok(!isHlc(-1) && !isHlc(1.5) && !isHlc(2 ** 53) && !isHlc(Number.NaN));
  });

  test('now() follows the wall clock when it moves ahead', () => {
    const c = new HybridClock();
    assert.equal(c.now(T0_MS), hlcOf(T0_MS));
    assert.equal(c.now(T0_MS + 7), hlcOf(T0_MS + 7));
    assert.equal(c.now(T0_MS + 7.9), hlcOf(T0_MS + 7) + 1, 'fractions of a ms are floored');
    assert.equal(c.current, hlcOf(T0_MS + 7) + 1);
  });

  test('now() is strictly monotonic when the wall clock stands still or goes back', () => {
    const c = new HybridClock();
    const walls = [T0_MS, T0_MS, T0_MS - 1_000, T0_MS + 3, T0_MS + 2, T0_MS - 50_000, T0_MS + 3];
    const stamps = walls.map((w) => c.now(w));
    for (let i = 1; i < stamps.length; i++) assert.ok(stamps[i]! > stamps[i - 1]!, `stamp ${i} ${stamps[i]} after ${stamps[i - 1]}`);
    assert.equal(stamps[2], hlcOf(T0_MS) + 2, 'a clock step back continues the counter');
  });

  test('observe() puts later local events after a remote timestamp, and ignores older ones', () => {
    const c = new HybridClock();
    c.now(T0_MS);
    const remote = hlcOf(T0_MS + 400, 9);
    c.observe(remote, T0_MS);
    assert.equal(c.current, remote);
    assert.equal(c.now(T0_MS + 1), remote + 1, 'our wall is behind the remote one: the counter carries on from it');
    c.observe(hlcOf(T0_MS - 10), T0_MS);
    assert.equal(c.current, remote + 1, 'an older remote timestamp changes nothing');
    assert.equal(c.now(T0_MS + 500), hlcOf(T0_MS + 500), 'once the wall passes it, physical time again');
  });

  test('observe() takes timestamps up to maxAheadMs ahead of our wall; further ones are counted and not adopted', () => {
    const c = new HybridClock(1_000);
    assert.equal(c.observe(hlcOf(T0_MS + 999), T0_MS), true);
    assert.equal(c.aheadObserved, 0);
    assert.equal(c.observe(hlcOf(T0_MS + 1_001), T0_MS), false);
    assert.equal(c.aheadObserved, 1);
    assert.equal(c.now(T0_MS), hlcOf(T0_MS + 999) + 1);
    assert.equal(c.observe(hlcOf(T0_MS + 1_001), T0_MS + 1), true, 'within reach once our wall moved on');
  });

  test('1,024 events in one ms carry the counter into the next ms; it never repeats', () => {
    const c = new HybridClock();
    const stamps = Array.from({ length: LOGICAL_SPAN + 5 }, () => c.now(T0_MS));
    assert.equal(stamps[LOGICAL_SPAN - 1], hlcOf(T0_MS, LOGICAL_SPAN - 1));
    assert.equal(stamps[LOGICAL_SPAN], hlcOf(T0_MS + 1, 0), 'the 1025th event of the ms runs a ms ahead');
    assert.equal(hlcWallMs(stamps[LOGICAL_SPAN + 4]!), T0_MS + 1);
    assert.equal(new Set(stamps).size, stamps.length);
    const next = c.now(T0_MS + 1);
    assert.equal(next, hlcOf(T0_MS + 1, 5), 'the wall reaching the carried ms does not repeat a stamp');
  });
});

describe('compareWrites (last writer wins)', () => {
  test('the higher hlc wins; a tie on hlc goes to the higher node id; the same write is 0', () => {
    const h = hlcOf(T0_MS);
    assert.equal(compareWrites({ hlc: h + 1, node: 'a' }, { hlc: h, node: 'z' }), 1);
    assert.equal(compareWrites({ hlc: h, node: 'z' }, { hlc: h + 1, node: 'a' }), -1);
    assert.equal(compareWrites({ hlc: h, node: 'b' }, { hlc: h, node: 'a' }), 1);
    assert.equal(compareWrites({ hlc: h, node: 'a' }, { hlc: h, node: 'b' }), -1);
    assert.equal(compareWrites({ hlc: h, node: 'a' }, { hlc: h, node: 'a' }), 0);
    assert.equal(compareWrites({ hlc: h, node: 'n10' }, { hlc: h, node: 'n9' }), -1, 'node ids compare as strings');
  });

  test('is a total order: antisymmetric and transitive over a mixed set', () => {
    const h = hlcOf(T0_MS);
    const ws = [{ hlc: h, node: 'b' }, { hlc: h + 1, node: 'a' }, { hlc: h, node: 'a' }, { hlc: h - 1, node: 'z' }, { hlc: h + 1, node: 'c' }];
    for (const x of ws) for (const y of ws) assert.equal(compareWrites(x, y) + compareWrites(y, x), 0);
    const sorted = [...ws].sort(compareWrites);
    assert.deepEqual(sorted.map((w) => `${w.hlc - h}${w.node}`), ['-1z', '0a', '0b', '1a', '1c']);
  });
});

describe('KvReplica writes and merges', () => {
  test('a local write is stamped with the clock and the replica id, and reads back', () => {
    const r = replica('n1');
    const e = written(r, 'k', 'v1', T0_MS);
    assert.equal(e.node, 'n1');
    assert.equal(e.hlc, hlcOf(T0_MS));
    assert.equal(text(r.get('k', T0_MS)?.value), 'v1');
    const e2 = written(r, 'k', 'v2', T0_MS - 5);
    assert.ok(e2.hlc > e.hlc, 'a later write wins over everything the replica holds even with its wall clock behind');
    assert.equal(text(r.get('k', T0_MS)?.value), 'v2');
    assert.equal(r.size, 1);
    assert.equal(r.valueCount, 1);
  });

  test('apply keeps the higher version whatever the arrival order; a stale or repeated one is refused', () => {
    const h = hlcOf(T0_MS);
    const older = entry('k', 'old', h, 'n1');
    const newer = entry('k', 'new', h + 3, 'n2');
    for (const order of [[older, newer], [newer, older]]) {
      const r = replica('me');
      const won = order.map((e) => r.apply(e, T0_MS));
      assert.deepEqual(won, order[0] === older ? [true, true] : [true, false]);
      assert.equal(text(r.get('k', T0_MS)?.value), 'new');
      assert.equal(r.apply(newer, T0_MS), false, 'the same version again is not a change');
    }
  });

  test('a tie on hlc is broken by node id, the same on every replica', () => {
    const h = hlcOf(T0_MS);
    const fromA = entry('k', 'from a', h, 'a');
    const fromB = entry('k', 'from b', h, 'b');
    const r1 = replica('x');
    const r2 = replica('y');
    r1.apply(fromA, T0_MS);
    r1.apply(fromB, T0_MS);
    r2.apply(fromB, T0_MS);
    assert.equal(r2.apply(fromA, T0_MS), false);
    assert.equal(text(r1.get('k', T0_MS)?.value), 'from b');
    assert.equal(text(r2.get('k', T0_MS)?.value), 'from b');
    assert.deepEqual(r1.digest(), r2.digest());
  });

  test('apply moves the clock past the remote version: the next local write wins over it', () => {
    const r = replica('slow');
    const ahead = entry('k', 'remote', hlcOf(T0_MS + 400), 'fast');
    r.apply(ahead, T0_MS);
    const mine = written(r, 'k', 'local', T0_MS + 1);
    assert.ok(compareWrites(mine, ahead) > 0);
    assert.equal(text(r.get('k', T0_MS + 1)?.value), 'local');
  });

  test('a delete is a tombstone: reads as absent, is held and replicated, and orders like any write', () => {
    const r = replica('n1');
    written(r, 'k', 'v', T0_MS);
    const del = written(r, 'k', undefined, T0_MS + 1, 99);
    assert.equal(del.value, undefined);
    assert.equal(del.expiresMs, 0, 'a tombstone has no expiry');
    assert.equal(r.get('k', T0_MS + 1), undefined);
    assert.equal(r.raw('k'), del);
    assert.equal(r.size, 1);
    assert.equal(r.valueCount, 0);
    const other = replica('n2');
    assert.ok(other.apply(entry('k', 'older put', del.hlc - 1, 'n9'), T0_MS));
    assert.ok(other.apply(del, T0_MS), 'the tombstone beats an older put');
    assert.equal(other.apply(entry('k', 'older put', del.hlc - 1, 'n9'), T0_MS), false, 'and the older put does not come back');
    assert.ok(other.apply(entry('k', 'newer put', del.hlc + 1, 'n0'), T0_MS), 'a newer put beats the tombstone');
    assert.equal(other.valueCount, 1);
  });

  test('a value with an expiry reads as absent after it, but stays held (and replicated) until purged', () => {
    const r = replica('n1');
    written(r, 'k', 'v', T0_MS, T0_MS + 100);
    assert.ok(r.get('k', T0_MS + 99));
    assert.equal(r.get('k', T0_MS + 100), undefined);
    assert.ok(r.raw('k'));
    assert.ok(isLive(r.raw('k')!, T0_MS + 99) && !isLive(r.raw('k')!, T0_MS + 100));
    assert.equal(r.size, 1);
  });

  test('restore keeps the highest version of each key whatever the order; restoreClock moves the clock past all of them', () => {
    const h = hlcOf(T0_MS + 10_000);
    const rows = [entry('a', 'a1', h, 'n1'), entry('a', 'a2', h + 5, 'n2'), entry('a', 'a0', h - 5, 'n3'), entry('b', undefined, h + 9, 'n1')];
    const r1 = replica('me');
    const r2 = replica('me');
    r1.restore(rows);
    r2.restore([...rows].reverse());
    assert.deepEqual(contents(r1), contents(r2));
    assert.equal(text(r1.raw('a')?.value), 'a2');
    assert.equal(r1.raw('b')?.value, undefined);
    assert.equal(r1.valueCount, 1);
    r1.restoreClock(T0_MS);
    const next = written(r1, 'c', 'x', T0_MS);
    assert.ok(next.hlc > h + 9, 'a write after a restart is above every restored version even with the wall clock behind');
  });

  test('keysMax: a new key beyond it is refused locally ("full"); existing keys and deletes still write; remote entries get 25% headroom', () => {
    const r = replica('n1', { keysMax: 4 });
    for (const k of ['a', 'b', 'c', 'd']) written(r, k, 'v');
    assert.equal(r.write('e', bytes('v'), T0_MS), 'full');
    assert.notEqual(r.write('a', bytes('v2'), T0_MS), 'full', 'overwriting a held key adds none');
    assert.notEqual(r.write('a', undefined, T0_MS), 'full', 'deleting a held key adds none');
    assert.ok(r.apply(entry('e', 'remote', hlcOf(T0_MS + 1), 'n2'), T0_MS), 'remote: 5 keys <= 4 x 1.25');
    assert.equal(r.apply(entry('f', 'remote', hlcOf(T0_MS + 1), 'n2'), T0_MS), false, 'beyond the headroom a new key is dropped');
    assert.equal(r.stats.dropped, 1);
    assert.ok(r.apply(entry('a', 'remote', hlcOf(T0_MS + 9), 'n2'), T0_MS), 'a held key still takes newer versions');
    assert.equal(r.size, 5);
  });

  test('bucketCount must be 1..65536', () => {
    for (const bucketCount of [0, -1, 1.5, 65_537]) assert.throws(() => replica('x', { bucketCount }), RangeError);
    assert.equal(replica('x', { bucketCount: 65_536 }).bucketCount, 65_536);
  });
});

describe('KvReplica digests and anti-entropy', () => {
  test('digests are equal exactly when the replicas hold the same versions, however they got them', () => {
    const h = hlcOf(T0_MS);
    const es = Array.from({ length: 40 }, (_, i) => entry(`k${i % 13}`, i % 5 === 0 ? undefined : `v${i}`, h + i, `n${i % 3}`));
    const a = replica('a');
    const b = replica('b');
    for (const e of es) a.apply(e, T0_MS);
    for (const e of [...es].reverse()) b.apply(e, T0_MS);
    assert.deepEqual(a.digest(), b.digest());
    assert.deepEqual(a.differingBuckets(b.digest()), []);
    assert.equal(a.digest().length, 16 * 8, 'two 32-bit halves per bucket');

    b.apply(entry('k3', 'newer', h + 1_000, 'n0'), T0_MS);
    assert.notDeepEqual(a.digest(), b.digest());
    assert.deepEqual(a.differingBuckets(b.digest()), [a.bucketOf('k3')]);
    a.apply(entry('k3', 'newer', h + 1_000, 'n0'), T0_MS);
    assert.deepEqual(a.digest(), b.digest(), 'equal again once both hold it');

    const empty = replica('c');
    assert.deepEqual(empty.digest(), new Uint8Array(16 * 8), 'no versions: all zero');
  });

  test('a tombstone and a put of the same (hlc, node) differ; the value itself is not in the fingerprint', () => {
    const h = hlcOf(T0_MS);
    assert.notDeepEqual(versionFingerprint('k', h, 'n', true), versionFingerprint('k', h, 'n', false));
    assert.notDeepEqual(versionFingerprint('k', h, 'n', false), versionFingerprint('k', h + 1, 'n', false));
    assert.notDeepEqual(versionFingerprint('k', h, 'n', false), versionFingerprint('k', h, 'm', false));
    assert.notDeepEqual(versionFingerprint('k', h, 'n', false), versionFingerprint('j', h, 'n', false));
    const a = replica('a');
    const b = replica('b');
    a.apply(entry('k', 'one value', h, 'n'), T0_MS);
    b.apply(entry('k', 'another', h, 'n'), T0_MS);
    assert.deepEqual(a.digest(), b.digest(), 'versions, not values: one version must only ever have one value');
  });

  test('fingerprints and digests keep their values (replicas of different versions compare digests)', () => {
    // Pinned from the implementation before the fingerprint was computed in place.
    assert.deepEqual(versionFingerprint('k', 5 * 2 ** 40 + 7, 'n1', false), [489936726, 1677746214]);
    assert.deepEqual(versionFingerprint('k\u00ff', 2 ** 52 + 3, 'nø', true), [2774233137, 2522818551]);
    const r = replica('n1');
    for (let i = 0; i < 50; i++) {
      r.apply({ key: `k${i % 20}`, value: i % 7 === 0 ? undefined : new Uint8Array([i]), hlc: T0_MS * LOGICAL_SPAN + i, node: i % 3 === 0 ? 'nø' : `n${i % 4}`, expiresMs: 0 }, T0_MS);
    }
    r.write('k3', undefined, T0_MS + 5);
    r.write('new', new Uint8Array([1]), T0_MS + 6);
    r.purge(hlcOf(T0_MS + 10), 100);
    assert.equal(createHash('sha256').update(r.digest()).digest('hex'), '195544bb109c27dbd318e984f756912b31fdb46ece6f85ffc1e9cd392a49df4b');
  });

  test('a digest of another shape is refused', () => {
    const r = replica('a');
    assert.equal(r.differingBuckets(new Uint8Array(15 * 8)), undefined);
    assert.equal(r.answerDigest(new Uint8Array(17 * 8), 100), undefined);
  });

  test('reconcile: push what is newer here or missing there, fetch what is newer there or missing here, only in the given buckets', () => {
    const h = hlcOf(T0_MS);
    const a = replica('a', { bucketCount: 1 });
    const b = replica('b', { bucketCount: 1 });
    a.apply(entry('same', 'x', h, 'n'), T0_MS);
    b.apply(entry('same', 'x', h, 'n'), T0_MS);
    a.apply(entry('newer-at-a', 'a', h + 2, 'n'), T0_MS);
    b.apply(entry('newer-at-a', 'b', h + 1, 'n'), T0_MS);
    a.apply(entry('newer-at-b', 'a', h + 1, 'n'), T0_MS);
    b.apply(entry('newer-at-b', 'b', h + 1, 'o'), T0_MS);
    a.apply(entry('only-a', 'a', h, 'n'), T0_MS);
    b.apply(entry('only-b', undefined, h, 'n'), T0_MS);
    const answer = b.answerDigest(a.digest(), 100)!;
    assert.deepEqual(answer.buckets, [0]);
    assert.equal(answer.more, false);
    const plan = a.reconcile(answer.buckets, answer.versions);
    assert.deepEqual(plan.push.map((e) => e.key).sort(), ['newer-at-a', 'only-a']);
    assert.deepEqual([...plan.fetch].sort(), ['newer-at-b', 'only-b']);
    assert.deepEqual(a.reconcile([], answer.versions), { push: [], fetch: [] }, 'versions outside the buckets are ignored');
  });

  test('a full anti-entropy exchange leaves both replicas equal, with bounded answers taking more rounds', () => {
    for (const [versionsMax, bytesMax] of [[100_000, 1 << 20], [3, 1 << 20], [1, 1]] as const) {
      const a = replica('a', { bucketCount: 8 });
      const b = replica('b', { bucketCount: 8 });
      for (let i = 0; i < 60; i++) {
        const target = i % 3 === 0 ? a : i % 3 === 1 ? b : undefined;
        const e = entry(`k${i % 25}`, i % 7 === 0 ? undefined : `value ${i}`, hlcOf(T0_MS) + i, i % 2 ? 'x' : 'y');
        if (target) target.apply(e, T0_MS);
        else {
          a.apply(e, T0_MS);
          b.apply(e, T0_MS);
        }
      }
      const rounds = syncUntilEqual(a, b, versionsMax, bytesMax);
      assert.deepEqual(a.digest(), b.digest(), `versionsMax ${versionsMax}, bytesMax ${bytesMax}`);
      assert.deepEqual(contents(a), contents(b));
      if (versionsMax === 1) assert.ok(rounds > 2, `bounded answers take several rounds (took ${rounds})`);
    }
  });

  test('answerDigest: whole buckets up to about versionsMax versions, always at least one, "more" while some are left', () => {
    const a = replica('a', { bucketCount: 4 });
    const b = replica('b', { bucketCount: 4 });
    for (let i = 0; i < 40; i++) b.apply(entry(`k${i}`, 'v', hlcOf(T0_MS) + i, 'n'), T0_MS);
    const sizes = [0, 1, 2, 3].map((bucket) => b.bucketSize(bucket));
    assert.equal(sizes.reduce((x, y) => x + y, 0), 40);

    const one = b.answerDigest(a.digest(), 1)!;
    assert.equal(one.buckets.length, 1, 'one bucket even when it holds more than versionsMax');
    assert.equal(one.versions.length, sizes[one.buckets[0]!]);
    assert.equal(one.more, true);

    const all = b.answerDigest(a.digest(), 40)!;
    assert.deepEqual(all.buckets, [0, 1, 2, 3]);
    assert.equal(all.versions.length, 40);
    assert.equal(all.more, false);

    const some = b.answerDigest(a.digest(), sizes[0]! + sizes[1]!)!;
    assert.deepEqual(some.buckets, [0, 1], 'stops before a bucket that would pass the bound');
    assert.equal(some.more, true);
    for (const v of some.versions) assert.ok(some.buckets.includes(b.bucketOf(v.key)));

    const none = b.answerDigest(b.digest(), 10)!;
    assert.deepEqual(none, { buckets: [], versions: [], more: false });
  });

  test('answerFetch: the held entries of the keys asked for, at most about bytesMax of them, always at least one', () => {
    const r = replica('a');
    for (let i = 0; i < 10; i++) written(r, `k${i}`, 'x'.repeat(100));
    const each = 2 + 100 + ENTRY_OVERHEAD_BYTES;
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    assert.equal(r.answerFetch(keys, 1).length, 1, 'one entry even when it alone passes the bound');
    assert.equal(r.answerFetch(keys, each * 3).length, 3);
    assert.equal(r.answerFetch(keys, each * 3 - 1).length, 2);
    assert.equal(r.answerFetch(keys, 1 << 20).length, 10);
    assert.deepEqual(r.answerFetch(['nope', 'k4', 'also-not'], 1 << 20).map((e) => e.key), ['k4'], 'keys not held are skipped');
    r.write('k5', undefined, T0_MS + 1);
    assert.equal(r.answerFetch(['k5'], 1)[0]!.value, undefined, 'tombstones are sent too');
  });
});

describe('KvReplica scan, purge', () => {
  test('scan lists keys with a live value in bytewise order, after a cursor, up to a limit, through a match', () => {
    const r = replica('a');
    const keys = ['b', 'a', 'B', '\u00ff', 'z', 'aa', 'a\u0000', 'gone', 'expired'];
    for (const k of keys) written(r, k, 'v', T0_MS, k === 'expired' ? T0_MS + 10 : 0);
    r.write('gone', undefined, T0_MS);
    const now = T0_MS + 20;
    assert.deepEqual(r.scan(undefined, 100, now), { keys: ['B', 'a', 'a\u0000', 'aa', 'b', 'z', '\u00ff'], more: false });
    assert.deepEqual(r.scan(undefined, 3, now), { keys: ['B', 'a', 'a\u0000'], more: true });
    assert.deepEqual(r.scan('a\u0000', 3, now), { keys: ['aa', 'b', 'z'], more: true });
    assert.deepEqual(r.scan('z', 3, now), { keys: ['\u00ff'], more: false });
    assert.deepEqual(r.scan('zz', 3, now), { keys: ['\u00ff'], more: false }, 'a cursor that is not a key works too');
    assert.deepEqual(r.scan('\u00ff', 3, now), { keys: [], more: false });
    assert.deepEqual(r.scan(undefined, 100, now, (k) => k.startsWith('a')), { keys: ['a', 'a\u0000', 'aa'], more: false });
    assert.deepEqual(r.scan(undefined, 6, now), { keys: ['B', 'a', 'a\u0000', 'aa', 'b', 'z'], more: true });
    assert.deepEqual(r.scan(undefined, 7, now).more, false, 'exactly the rest: no more');
    assert.deepEqual(r.scan(undefined, 100, T0_MS).keys.includes('expired'), true, 'not yet expired');
    written(r, 'c', 'v');
    assert.deepEqual(r.scan('b', 1, now).keys, ['c'], 'a key added since the last scan is seen');
  });

  test('purge forgets tombstones below the horizon and values expired before its wall time, up to a limit', () => {
    const r = replica('a');
    written(r, 'live', 'v', T0_MS);
    written(r, 'ttl-old', 'v', T0_MS, T0_MS + 5);
    written(r, 'ttl-new', 'v', T0_MS, T0_MS + 5_000);
    written(r, 'del-old', 'v', T0_MS);
    const delOld = written(r, 'del-old', undefined, T0_MS + 1);
    written(r, 'del-new', 'v', T0_MS);
    written(r, 'del-new', undefined, T0_MS + 2_000);
    const horizon = hlcOf(T0_MS + 1_000);
    const before = r.digest();
    assert.deepEqual(r.purge(horizon, 1).length, 1, 'the limit holds');
    const rest = r.purge(horizon, 100);
    assert.equal(rest.length, 1);
    assert.equal(r.raw('del-old'), undefined);
    assert.equal(r.raw('ttl-old'), undefined);
    assert.ok(r.raw('live') && r.raw('ttl-new') && r.raw('del-new'));
    assert.equal(r.stats.purged, 2);
    assert.equal(r.size, 3);
    assert.notDeepEqual(r.digest(), before, 'the purged versions leave the digest');
    assert.ok(KvReplica.belowHorizon(delOld, horizon), 'a purged tombstone arriving again is below the horizon');
    assert.ok(!KvReplica.belowHorizon(entry('k', undefined, horizon, 'n'), horizon));
    assert.ok(KvReplica.belowHorizon(entry('k', 'v', 1, 'n', T0_MS + 999), horizon), 'a value expired before the horizon wall time');
    assert.ok(!KvReplica.belowHorizon(entry('k', 'v', 1, 'n', T0_MS + 1_000), horizon));
    assert.ok(!KvReplica.belowHorizon(entry('k', 'v', 1, 'n', 0), horizon), 'a value without expiry never is');
  });
});

describe('globMatch', () => {
  const cases: [string, string, boolean][] = [
    ['', '', true],
    ['', 'a', false],
    ['*', '', true],
    ['*', 'anything at all', true],
    ['abc', 'abc', true],
    ['abc', 'abd', false],
    ['abc', 'abcd', false],
    ['h?llo', 'hello', true],
    ['h?llo', 'hllo', false],
    ['h*llo', 'hllo', true],
    ['h*llo', 'heeeello', true],
    ['h*llo', 'hello!', false],
    ['h[ae]llo', 'hallo', true],
    ['h[ae]llo', 'hillo', false],
    ['h[^e]llo', 'hallo', true],
    ['h[^e]llo', 'hello', false],
    ['h[a-c]llo', 'hbllo', true],
    ['h[a-c]llo', 'hdllo', false],
    ['h[c-a]llo', 'hbllo', true],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['a\\?', 'a?', true],
    ['a\\?', 'ab', false],
    ['\\[x]', '[x]', true],
    ['[\\]]', ']', true],
    ['[\\^a]', '^', true],
    ['x[ab', 'xa', true],
    ['x[ab', 'xc', false],
    ['a\\', 'a\\', true],
    ['*.txt', 'notes.txt', true],
    ['*.txt', 'notes.txt.bak', false],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'axxbyy', false],
    ['a*b*c', 'abcbc', true],
    ['*a*', 'bbb', false],
    ['user:*:name', 'user:42:name', true],
    ['user:*:name', 'user:42:email', false],
    ['**', '', true],
    ['\u00e9*', '\u00e9t\u00e9', true],
    ['[\u0000-\u0010]', '\u0005', true],
  ];
  for (const [pattern, subject, expected] of cases) {
    test(`${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(subject)}`, () => {
      assert.equal(globMatch(pattern, subject), expected);
    });
  }

  test('`*` backtracks to the last star only: a hostile pattern on a 10k-byte subject finishes fast', () => {
    const subject = 'a'.repeat(10_000);
    const started = performance.now();
    assert.equal(globMatch('a*a*a*a*a*b', subject), false);
    assert.equal(globMatch('*a*a*a*a*a*a*a*a*a*a*a*a*b', subject), false);
    assert.equal(globMatch('a*a*a*a*a*a', subject), true);
    assert.equal(globMatch('a*a*a*a*a*b', `${subject}b`), true);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 500, `took ${elapsedMs.toFixed(1)} ms`);
  });
});

test('onDropped reports each version the replica stops holding, once, and nothing else', () => {
  const dropped: KvEntry[] = [];
  const r = replica('n1', { onDropped: (e) => dropped.push(e) });
  const a1 = written(r, 'a', '1');
  assert.deepEqual(dropped, [], 'a new key drops nothing');
  const a2 = written(r, 'a', '2');
  assert.deepEqual(dropped, [a1], 'a local overwrite drops the held version');
  assert.equal(a2.key, a1.key);
  assert.equal(r.apply(entry('a', 'old', 1, 'n9'), T0_MS), false);
  assert.deepEqual(dropped, [a1], 'a stale entry drops nothing');
  const a3 = entry('a', '3', a2.hlc + 5, 'n2');
  assert.equal(r.apply(a3, T0_MS), true);
  assert.deepEqual(dropped, [a1, a2], 'a newer entry from a peer drops the held version');
  const tomb = written(r, 'a', undefined, T0_MS + 1);
  assert.deepEqual(dropped, [a1, a2, a3]);
  assert.deepEqual(r.purge(tomb.hlc + 1, 10), ['a']);
  assert.deepEqual(dropped, [a1, a2, a3, tomb], 'a purged tombstone is dropped');
  const b = written(r, 'b', '1');
  assert.deepEqual(r.dropBucket(r.bucketOf('b')), ['b']);
  assert.deepEqual(dropped, [a1, a2, a3, tomb, b], 'a handed-over bucket drops its keys');
});
