import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveSeed, SimRandom } from '../../src/sim/random.js';

const draw = (r: SimRandom, n: number): number[] => Array.from({ length: n }, () => r.uint32());

test('a seed gives the same stream every time', () => {
  assert.deepEqual(draw(new SimRandom(42), 1_000), draw(new SimRandom(42), 1_000));
});

test('the stream of a seed is pinned (a replayed seed must mean the same run on every machine)', () => {
  // If this changes, every recorded failing seed replays a different run: change it only on purpose.
  assert.deepEqual(draw(new SimRandom(1), 5), [270604467, 2273286251, 2085451298, 1710828129, 4124056796]);
  assert.deepEqual(draw(new SimRandom(0), 3), [4004507919, 2784870557, 583645593]);
  assert.equal(deriveSeed(1, 'network'), 2099437664);
});

test('different seeds and different stream labels give different streams', () => {
  assert.notDeepEqual(draw(new SimRandom(1), 8), draw(new SimRandom(2), 8));
  assert.notEqual(deriveSeed(1, 'network'), deriveSeed(1, 'scenario'));
  assert.notEqual(deriveSeed(1, 'network'), deriveSeed(2, 'network'));
  assert.equal(deriveSeed(7, 'node:n1'), deriveSeed(7, 'node:n1'));
});

test('seeds are reduced to 32 bits; non-integers are refused', () => {
  assert.deepEqual(draw(new SimRandom(2 ** 32 + 5), 4), draw(new SimRandom(5), 4));
  assert.throws(() => new SimRandom(1.5), RangeError);
  assert.throws(() => new SimRandom(Number.NaN), RangeError);
});

test('float is in [0, 1) and roughly uniform', () => {
  const r = new SimRandom(3);
  let sum = 0;
  const buckets = new Array<number>(10).fill(0);
  for (let i = 0; i < 20_000; i++) {
    const x = r.float();
    assert.ok(x >= 0 && x < 1);
    sum += x;
    buckets[Math.floor(x * 10)]! += 1;
  }
  assert.ok(Math.abs(sum / 20_000 - 0.5) < 0.01);
  for (const b of buckets) assert.ok(b > 1_800 && b < 2_200, `bucket holds ${b}`);
});

test('int covers both inclusive ends and nothing outside', () => {
  const r = new SimRandom(4);
  const seen = new Set<number>();
  for (let i = 0; i < 2_000; i++) {
    const x = r.int(-2, 3);
    assert.ok(Number.isInteger(x) && x >= -2 && x <= 3);
    seen.add(x);
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [-2, -1, 0, 1, 2, 3]);
  assert.equal(r.int(5, 5), 5);
  assert.throws(() => r.int(3, 2), RangeError);
});

test('range, chance, pick and shuffle', () => {
  const r = new SimRandom(5);
  for (let i = 0; i < 1_000; i++) {
    const x = r.range(10, 20);
    assert.ok(x >= 10 && x < 20);
  }
  assert.equal(Array.from({ length: 100 }, () => r.chance(0)).some(Boolean), false);
  assert.equal(Array.from({ length: 100 }, () => r.chance(1)).every(Boolean), true);
  const hits = Array.from({ length: 10_000 }, () => r.chance(0.2)).filter(Boolean).length;
  assert.ok(hits > 1_800 && hits < 2_200, `chance(0.2) hit ${hits} of 10000`);

  const items = ['a', 'b', 'c', 'd', 'e'];
  assert.ok(items.includes(r.pick(items)));
  assert.throws(() => r.pick([]), RangeError);
  const shuffled = r.shuffle(items);
  assert.deepEqual([...shuffled].sort(), items);
  assert.deepEqual(items, ['a', 'b', 'c', 'd', 'e'], 'shuffle leaves its input alone');
  assert.deepEqual(new SimRandom(9).shuffle(items), new SimRandom(9).shuffle(items));
});
