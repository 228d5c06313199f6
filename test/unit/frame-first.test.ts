import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, WireError, encodeFrame } from '../../src/wire/index.js';

test('the first frame has its own (smaller) bound; later frames get the full limit', () => {
  const d = new FrameDecoder(1024, 16);
  assert.deepEqual(d.push(encodeFrame(new Uint8Array(16))).map((f) => f.length), [16]);
  assert.deepEqual(d.push(encodeFrame(new Uint8Array(1024))).map((f) => f.length), [1024]);
  const big = new FrameDecoder(1024, 16);
  // Refused at the header: nothing of the announced 17 bytes is waited for or buffered.
  assert.throws(() => big.push(new Uint8Array([0, 0, 0, 17])), (e: unknown) => e instanceof WireError && e.code === 'frame_too_large' && /first frame of 17 bytes/.test(e.message));
  assert.equal(big.pendingBytes, 0);
});

test('a small first frame and a big second one in the same chunk both pass', () => {
  const d = new FrameDecoder(1024, 16);
  const chunk = new Uint8Array([...encodeFrame(new Uint8Array(3)), ...encodeFrame(new Uint8Array(500))]);
  assert.deepEqual(d.push(chunk).map((f) => f.length), [3, 500]);
});
