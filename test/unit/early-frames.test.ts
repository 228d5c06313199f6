import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EarlyFrames } from '../../src/runtime/early-frames.js';

test('early frames are handled in arrival order, once, and the queue is bounded in frames and bytes', () => {
  const seen: number[] = [];
  const q = new EarlyFrames({ framesMax: 3, bytesMax: 100 });
  assert.equal(q.offer({ bytes: 40, handle: () => seen.push(1) }), true);
  assert.equal(q.offer({ bytes: 70, handle: () => seen.push(2) }), false, 'over the byte bound');
  assert.equal(q.offer({ bytes: 60, handle: () => seen.push(3) }), true);
  assert.equal(q.offer({ bytes: 0, handle: () => seen.push(4) }), true);
  assert.equal(q.offer({ bytes: 0, handle: () => seen.push(5) }), false, 'over the frame bound');
  assert.deepEqual([q.size, q.bytes, q.refused], [3, 100, 2]);
  q.drain();
  assert.deepEqual(seen, [1, 3, 4]);
  assert.deepEqual([q.size, q.bytes], [0, 0]);
  q.drain();
  assert.deepEqual(seen, [1, 3, 4], 'nothing is handled twice');
  q.offer({ bytes: 1, handle: () => seen.push(6) });
  q.clear();
  q.drain();
  assert.deepEqual(seen, [1, 3, 4]);
});
