import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, WireError, encodeFrame } from '../../src/wire/index.js';

const bytes = (...xs: number[]) => new Uint8Array(xs);

/** Feeds `input` whole and byte by byte; both must give the same frames. */
function decodeBothWays(input: Uint8Array, max = 1024): Uint8Array[][] {
  const whole = new FrameDecoder(max).push(input);
  const d = new FrameDecoder(max);
  const single: Uint8Array[] = [];
  for (const b of input) single.push(...d.push(bytes(b)));
  return [whole, single];
}

test('encodeFrame prefixes a big-endian uint32 length', () => {
  assert.deepEqual(encodeFrame(bytes(7, 8, 9)), bytes(0, 0, 0, 3, 7, 8, 9));
  assert.deepEqual(encodeFrame(bytes()), bytes(0, 0, 0, 0));
});

test('decoder yields frames whole and byte by byte alike', () => {
  const input = new Uint8Array([...encodeFrame(bytes(1, 2)), ...encodeFrame(bytes()), ...encodeFrame(bytes(3, 4, 5))]);
  for (const frames of decodeBothWays(input)) {
    assert.deepEqual(frames.map((f) => [...f]), [[1, 2], [], [3, 4, 5]]);
  }
});

test('decoder holds a partial frame until the rest arrives', () => {
  const d = new FrameDecoder(100);
  assert.deepEqual(d.push(bytes(0, 0)), []);
  assert.deepEqual(d.push(bytes(0, 2, 9)), []);
  assert.equal(d.pendingBytes, 5);
  assert.deepEqual(d.push(bytes(8, 0, 0)).map((f) => [...f]), [[9, 8]]);
  assert.equal(d.pendingBytes, 2);
});

test('a header announcing 4 GiB is refused at the header, before any allocation', () => {
  const d = new FrameDecoder(1024);
  assert.throws(() => d.push(bytes(0xff, 0xff, 0xff, 0xff)), (e: unknown) => e instanceof WireError && e.code === 'frame_too_large');
  assert.equal(d.pendingBytes, 0);
  // Once failed the decoder stays failed: the connection must be dropped.
  assert.throws(() => d.push(bytes(0, 0, 0, 0)), WireError);
});

test('the limit is inclusive: a frame of exactly frameBytesMax passes', () => {
  const payload = new Uint8Array(16).fill(1);
  assert.equal(new FrameDecoder(16).push(encodeFrame(payload))[0]!.length, 16);
  assert.throws(() => new FrameDecoder(15).push(encodeFrame(payload)), WireError);
});
