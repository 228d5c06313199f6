// Unit tests of the partitioned cache's placement (src/core/kv/placement.ts,
// `replicas: R` in the cluster file): R distinct owners per bucket (every
// member when there are fewer), the same owners whatever order the members
// come in, balance over the members, minimal movement when one joins or
// leaves, and `shared` / `ownedBy` / `isOwner` against `ownersOf`.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Placement, VNODES_PER_MEMBER } from '../../src/core/kv/placement.js';
import { KV_REPLICA_DEFAULTS } from '../../src/core/kv/replica.js';
import { SimRandom } from '../../src/sim/random.js';

const BUCKETS = KV_REPLICA_DEFAULTS.bucketCount;

/** Member ids of three shapes the runtime sees: short names, random words, host:port. */
function idSet(n: number, shape: number, salt: number): string[] {
  const rng = new SimRandom(salt * 7 + shape);
  return Array.from({ length: n }, (_, i) => {
    if (shape % 3 === 0) return `n${i}-${salt}`;
    if (shape % 3 === 1) return `${rng.uint32().toString(36)}${i}`;
    return `10.0.${salt % 256}.${i + 1}:${7_000 + salt}`;
  });
}

const ownerSet = (p: Placement, bucket: number): string => [...p.ownersOf(bucket)].sort().join(',');

function all(p: Placement): string[][] {
  return Array.from({ length: p.bucketCount }, (_, b) => [...p.ownersOf(b)]);
}

describe('Placement (replicas: R)', () => {
  test('every bucket has R distinct owners among the members, or every member when there are fewer', () => {
    for (const n of [1, 2, 3, 5, 8, 16]) {
      for (const r of [1, 2, 3, 5, 20]) {
        const ids = idSet(n, n + r, 1);
        const p = new Placement(ids, r, BUCKETS);
        const want = Math.min(r, n);
        for (let b = 0; b < BUCKETS; b++) {
          const o = p.ownersOf(b);
          assert.equal(o.length, want, `n=${n} r=${r} bucket ${b}: ${o.join(',')}`);
          assert.equal(new Set(o).size, o.length, `n=${n} r=${r} bucket ${b}: owners repeat`);
          for (const id of o) assert.ok(ids.includes(id), `n=${n} r=${r}: ${id} is no member`);
          if (r >= n) assert.deepEqual([...o].sort(), [...ids].sort(), 'R >= N: every member owns every bucket');
        }
      }
    }
  });

  test('duplicate member ids count once; no members: no owners; a bucket out of range has none', () => {
    const p = new Placement(['a', 'b', 'a', 'b', 'a'], 3, 64);
    for (let b = 0; b < 64; b++) assert.deepEqual([...p.ownersOf(b)].sort(), ['a', 'b']);
    const empty = new Placement([], 2, 64);
    for (let b = 0; b < 64; b++) assert.deepEqual(empty.ownersOf(b), []);
    assert.deepEqual(empty.ownedBy('a'), []);
    assert.deepEqual(p.ownersOf(64), []);
    assert.deepEqual(p.ownersOf(-1), []);
    assert.equal(p.isOwner(64, 'a'), false);
  });

  test('deterministic: the same owners, in the same order, whatever order the members come in', () => {
    const rng = new SimRandom(42);
    for (const n of [2, 5, 16, 40]) {
      for (const r of [1, 2, 3]) {
        const ids = idSet(n, n, r);
        const reference = all(new Placement(ids, r, BUCKETS));
        for (let k = 0; k < 5; k++) assert.deepEqual(all(new Placement(rng.shuffle(ids), r, BUCKETS)), reference, `n=${n} r=${r} shuffle ${k}`);
        assert.deepEqual(all(new Placement([...ids].reverse(), r, BUCKETS)), reference);
      }
    }
  });

  test('the first owner is spread too: each member is first owner of some buckets (reads ask it first)', () => {
    const ids = idSet(16, 0, 3);
    const p = new Placement(ids, 3, BUCKETS);
    const first = new Map<string, number>();
    for (let b = 0; b < BUCKETS; b++) first.set(p.ownersOf(b)[0]!, (first.get(p.ownersOf(b)[0]!) ?? 0) + 1);
    assert.equal(first.size, 16);
    for (const [id, count] of first) assert.ok(count >= BUCKETS / 16 / 3, `${id} is first owner of only ${count} buckets`);
  });

  test('balance: with 16 members and R=3, every member owns between 0.5x and 1.6x the mean number of buckets', (t) => {
    let lo = Infinity;
    let hi = 0;
    for (let salt = 0; salt < 30; salt++) {
      const ids = idSet(16, salt, salt);
      const p = new Placement(ids, 3, BUCKETS);
      const counts = ids.map((id) => p.ownedBy(id).length);
      assert.equal(counts.reduce((a, b) => a + b, 0), 3 * BUCKETS, 'R owners per bucket in all');
      const mean = (3 * BUCKETS) / 16;
      lo = Math.min(lo, Math.min(...counts) / mean);
      hi = Math.max(hi, Math.max(...counts) / mean);
      assert.ok(Math.min(...counts) >= 0.5 * mean && Math.max(...counts) <= 1.6 * mean, `ids ${salt}: owned ${counts.join(',')}, mean ${mean}`);
    }
    t.diagnostic(`16 members, R=3, ${VNODES_PER_MEMBER} vnodes, 30 id sets: owned buckets from ${lo.toFixed(2)}x to ${hi.toFixed(2)}x the mean`);
  });

  test('balance is what the vnodes buy: one vnode per member is far less even than the default', () => {
    const ids = idSet(16, 0, 9);
    const spread = (vnodes: number): number => {
      const p = new Placement(ids, 3, BUCKETS, vnodes);
      const counts = ids.map((id) => p.ownedBy(id).length);
      return Math.max(...counts) / Math.max(1, Math.min(...counts));
    };
    assert.ok(spread(1) > 2 * spread(VNODES_PER_MEMBER), `max/min owned: ${spread(1)} with 1 vnode, ${spread(VNODES_PER_MEMBER)} with ${VNODES_PER_MEMBER}`);
  });

  test('minimal movement: a member joining 16 changes the owners of at most 2R/N of the buckets, and only by taking a place', (t) => {
    const moved: number[] = [];
    for (const r of [1, 2, 3]) {
      for (let salt = 0; salt < 10; salt++) {
        const ids = idSet(16, salt, 100 + salt);
        const before = new Placement(ids, r, BUCKETS);
        const joiner = `joiner-${salt}`;
        const after = new Placement([...ids, joiner], r, BUCKETS);
        let changed = 0;
        for (let b = 0; b < BUCKETS; b++) {
          if (ownerSet(before, b) === ownerSet(after, b)) continue;
          changed += 1;
          // Consistent hashing: the joiner takes a place in the walk; the others keep their order, the last one may fall off.
          const o = [...after.ownersOf(b)];
          assert.ok(o.includes(joiner), `r=${r} bucket ${b}: changed without the joiner (${ownerSet(before, b)} -> ${ownerSet(after, b)})`);
          assert.deepEqual(o.filter((id) => id !== joiner), before.ownersOf(b).slice(0, r - 1), `r=${r} bucket ${b}`);
        }
        assert.ok(changed <= ((2 * r) / 16) * BUCKETS, `r=${r} ids ${salt}: ${changed} of ${BUCKETS} buckets changed owners (bound ${((2 * r) / 16) * BUCKETS})`);
        assert.equal(changed, after.ownedBy(joiner).length, 'exactly the buckets the joiner owns changed');
        moved.push(changed / BUCKETS);
      }
    }
    t.diagnostic(`a 17th member changed the owners of ${(Math.min(...moved) * 100).toFixed(1)}-${(Math.max(...moved) * 100).toFixed(1)} % of the buckets (R=1..3)`);
  });

  test('minimal movement: a member leaving only changes the buckets it owned, and the other owners stay', () => {
    for (const r of [1, 2, 3]) {
      for (let salt = 0; salt < 10; salt++) {
        const ids = idSet(16, salt, 200 + salt);
        const before = new Placement(ids, r, BUCKETS);
        const leaver = ids[salt % ids.length]!;
        const after = new Placement(ids.filter((id) => id !== leaver), r, BUCKETS);
        for (let b = 0; b < BUCKETS; b++) {
          const owned = before.isOwner(b, leaver);
          if (!owned) {
            assert.deepEqual(after.ownersOf(b), before.ownersOf(b), `r=${r} bucket ${b} was not the leaver's`);
            continue;
          }
          const stay = before.ownersOf(b).filter((id) => id !== leaver);
          assert.deepEqual(after.ownersOf(b).slice(0, stay.length), stay, `r=${r} bucket ${b}: the remaining owners keep their order`);
          assert.equal(after.ownersOf(b).length, r);
          assert.ok(!after.isOwner(b, leaver));
        }
      }
    }
  });

  test('shared, ownedBy and isOwner agree with ownersOf', () => {
    for (const [n, r] of [[5, 2], [16, 3], [3, 3], [4, 1]] as const) {
      const ids = idSet(n, n, r);
      const p = new Placement(ids, r, 256);
      for (const a of ids) {
        const mine = p.ownedBy(a);
        assert.deepEqual(mine, Array.from({ length: 256 }, (_, b) => b).filter((b) => p.ownersOf(b).includes(a)), `ownedBy(${a})`);
        for (let b = 0; b < 256; b++) assert.equal(p.isOwner(b, a), p.ownersOf(b).includes(a));
        for (const other of ids) {
          const shared = p.shared(a, other);
          assert.deepEqual(shared, mine.filter((b) => p.ownersOf(b).includes(other)), `shared(${a}, ${other})`);
          assert.deepEqual(shared, p.shared(other, a), 'shared is symmetric');
          if (other === a) assert.deepEqual(shared, mine, 'shared with itself is what it owns');
        }
        assert.deepEqual(p.shared(a, 'stranger'), []);
      }
      assert.deepEqual(p.ownedBy('stranger'), []);
      if (r === 1) for (const a of ids) for (const b of ids) if (a !== b) assert.deepEqual(p.shared(a, b), [], 'R=1: nothing is shared');
      if (r >= n) for (const a of ids) assert.equal(p.ownedBy(a).length, 256, 'R >= N: everyone owns everything');
    }
  });

  test('a tiny key space: one bucket still has R owners, and every node computes the same', () => {
    const ids = ['c0', 'c1', 'c2', 'c3'];
    const p = new Placement(ids, 2, 1);
    assert.equal(p.ownersOf(0).length, 2);
    assert.deepEqual(all(new Placement(['c3', 'c1', 'c0', 'c2'], 2, 1)), all(p));
  });
});
