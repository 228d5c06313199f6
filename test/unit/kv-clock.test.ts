// The hybrid clock against peers with wild clocks: a stamp from further
// ahead than maxAheadMs is neither adopted nor applied, so one forged or
// skewed stamp cannot push this node's stamps where no peer accepts them;
// and a local write still beats a stored version the clock did not adopt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HybridClock, hlcOf, hlcWallMs } from '../../src/core/kv/hlc.js';
import { KvReplica } from '../../src/core/kv/replica.js';

const WALL_MS = 1_800_000_000_000;

test('observe adopts stamps up to maxAheadMs ahead, refuses beyond', () => {
  const clock = new HybridClock(60_000);
  assert.equal(clock.observe(hlcOf(WALL_MS + 59_000, 3), WALL_MS), true);
  assert.equal(clock.current, hlcOf(WALL_MS + 59_000, 3));
  assert.equal(clock.observe(Number.MAX_SAFE_INTEGER, WALL_MS), false);
  assert.equal(clock.observe(hlcOf(WALL_MS + 61_000), WALL_MS), false);
  assert.equal(clock.aheadObserved, 2);
  assert.equal(clock.now(WALL_MS), hlcOf(WALL_MS + 59_000, 4), 'the next stamp follows the last adopted one');
});

test('a replica refuses a far-future entry and keeps stamping in range', () => {
  const r = new KvReplica({ selfId: 'a', bucketCount: 16, keysMax: 100, clockAheadMaxMs: 60_000 });
  const forged = { key: 'k', value: new Uint8Array([1]), hlc: Number.MAX_SAFE_INTEGER, node: 'z', expiresMs: 0 };
  assert.equal(r.apply(forged, WALL_MS), false);
  assert.equal(r.stats.future, 1);
  assert.equal(r.raw('k'), undefined);
  const mine = r.write('k', new Uint8Array([2]), WALL_MS);
  assert.notEqual(mine, 'full');
  if (mine === 'full') return;
  assert.ok(hlcWallMs(mine.hlc) - WALL_MS < 1_000, 'stamp near the wall clock');
  // Once our clock is within reach of a skewed peer, its entries are taken.
  const skewed = { key: 'k', value: new Uint8Array([3]), hlc: hlcOf(WALL_MS + 30_000), node: 'z', expiresMs: 0 };
  assert.equal(r.apply(skewed, WALL_MS), true);
});

test('a restored far-future version still loses to the next local write', () => {
  const r = new KvReplica({ selfId: 'a', bucketCount: 16, keysMax: 100, clockAheadMaxMs: 60_000 });
  const stored = { key: 'k', value: new Uint8Array([1]), hlc: hlcOf(WALL_MS + 3_600_000), node: 'b', expiresMs: 0 };
  r.restore([stored]);
  r.restoreClock(WALL_MS);
  assert.ok(r.clock.current < stored.hlc, 'the clock did not adopt the far-future stamp');
  const w = r.write('k', new Uint8Array([2]), WALL_MS);
  assert.notEqual(w, 'full');
  if (w === 'full') return;
  assert.ok(w.hlc > stored.hlc, 'the local write is stamped above the held version');
  assert.deepEqual(r.get('k', WALL_MS)?.value, new Uint8Array([2]));
});
