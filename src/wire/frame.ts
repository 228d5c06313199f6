import { WireError } from './errors.js';
import { FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES } from './limits.js';

/** Prefixes `payload` with its uint32 big-endian length. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, false);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * A decoder you push bytes into; it yields whole frame payloads.
 * It never holds more than one frame (bounded by `frameBytesMax`) plus one
 * header, so a peer announcing 4 GiB is refused at the header, before any
 * allocation. After an error the decoder stays failed: drop the connection.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private bufferedBytes = 0;
  private failed: WireError | undefined;
  private framesTaken = 0;

  /** `firstFrameBytesMax` bounds the first frame only (a handshake is small); the rest get `frameBytesMax`. */
  constructor(
    private readonly frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
    private readonly firstFrameBytesMax: number = frameBytesMax,
  ) {}

  /** Bytes held while waiting for the rest of a frame. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }

  /** Pushes a chunk; returns the frames it completed (possibly none). Throws WireError. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    if (chunk.length === 0) return [];
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    const frames: Uint8Array[] = [];
    for (;;) {
      if (this.bufferedBytes < FRAME_HEADER_BYTES) return frames;
      const length = this.peekLength();
      const first = this.framesTaken === 0 && this.firstFrameBytesMax < this.frameBytesMax;
      const max = first ? this.firstFrameBytesMax : this.frameBytesMax;
      if (length > max) {
        this.failed = new WireError('frame_too_large', `${first ? 'first frame' : 'frame'} of ${length} bytes exceeds the limit of ${max} bytes`);
        this.chunks = [];
        this.bufferedBytes = 0;
        throw this.failed;
      }
      if (this.bufferedBytes < FRAME_HEADER_BYTES + length) return frames;
      const whole = this.take(FRAME_HEADER_BYTES + length);
      this.framesTaken += 1;
      frames.push(whole.subarray(FRAME_HEADER_BYTES));
    }
  }

  private peekLength(): number {
    const c0 = this.chunks[0]!;
    // Usual case: the header sits in one chunk; read it without allocating.
    if (c0.length >= FRAME_HEADER_BYTES) return ((c0[0]! << 24) | (c0[1]! << 16) | (c0[2]! << 8) | c0[3]!) >>> 0;
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    let filled = 0;
    for (const c of this.chunks) {
      const n = Math.min(c.length, FRAME_HEADER_BYTES - filled);
      header.set(c.subarray(0, n), filled);
      filled += n;
      if (filled === FRAME_HEADER_BYTES) break;
    }
    return new DataView(header.buffer).getUint32(0, false);
  }

  /** Removes and returns the first `n` buffered bytes (n <= bufferedBytes). */
  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      // Common case: the whole frame sits in one chunk; no copy.
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.bufferedBytes -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      out.set(c.subarray(0, k), filled);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.bufferedBytes -= n;
    return out;
  }
}
