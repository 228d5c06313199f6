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
