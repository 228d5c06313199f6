/**
 * Protobuf varints (little-endian base 128) of non-negative safe integers,
 * for the hand-written codecs of the hot frames and the cache's log blobs.
 * Plain numbers, not bigint: every value they carry is below 2^53, and the
 * division keeps bits above 32 that `>>>` would drop.
 */

/** Bytes `value` takes as a varint. */
export function varintBytes(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    n += 1;
  }
  return n;
}

/** Writes `value` as a varint at `pos`; returns the offset after it. */
export function writeVarint(out: Uint8Array, pos: number, value: number): number {
  while (value >= 0x80) {
    out[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[pos++] = value;
  return pos;
}

/** Up to this many chars a JS loop beats Buffer#write's call into C++ (cache keys are mostly short). */
const LATIN1_LOOP_CHARS_MAX = 64;

/**
 * Writes a latin1 string (one char per byte, as the cache's keys are) at
 * `pos`, as `Buffer#write(text, pos, 'latin1')` does (the low byte of each
 * char); returns the offset after it. `out` must have room.
 */
export function writeLatin1(out: Buffer, pos: number, text: string): number {
  const n = text.length;
  if (n > LATIN1_LOOP_CHARS_MAX) return pos + out.write(text, pos, n, 'latin1');
  for (let i = 0; i < n; i++) out[pos + i] = text.charCodeAt(i);
  return pos + n;
}

/** Up to this many bytes a JS loop beats TypedArray#set (node ids and typical cache values are a few bytes). */
const BYTES_LOOP_MAX = 32;

/** Copies `bytes` into `out` at `pos`; returns the offset after them. `out` must have room. */
export function writeBytes(out: Uint8Array, pos: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n > BYTES_LOOP_MAX) {
    out.set(bytes, pos);
    return pos + n;
  }
  for (let i = 0; i < n; i++) out[pos + i] = bytes[i]!;
  return pos + n;
}
