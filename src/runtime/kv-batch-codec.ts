import type { KvEntry } from '../core/kv/entry.js';
import { FRAME_HEADER_BYTES } from '../wire/index.js';
import { NODE_ID_BYTES_MAX } from './kv-codec.js';
import { varintBytes, writeBytes, writeLatin1, writeVarint } from '../wire/varint.js';

/**
 * The replication hot path's codec: a frame holding one `Envelope { kv_batch }`
 * written and read by hand, straight from and into the core's entries, with
 * no generated message objects, BigInts or per-field reflection in between.
 *
 * The encoder's bytes are exactly what `encodeEnvelopeFrame` (the generated
 * @bufbuild/protobuf code) writes for the same batch: fields in declaration
 * order, default values left out. The decoder takes only the plain form of
 * that message (the envelope's one field the batch, known fields with their
 * own wire types, varints no longer than their values need to be safe) and
 * answers undefined for anything else, malformed input included: the caller
 * then hands the frame to the generated decoder, which reads the rarer forms
 * or rejects the frame. So a frame means the same on both paths (test/unit/
 * kv-batch-codec.test.ts checks it against the generated code).
 */

/** Envelope field 70 (kv_batch), wire type 2: the varint 70 << 3 | 2. */
const ENVELOPE_KV_BATCH_TAG = [0xb2, 0x04] as const;
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;
/** Length varints of up to 4 bytes (< 256 MiB, far above any frame); longer ones go to the generic decoder. */
const LENGTH_VARINT_BYTES_MAX = 4;
/**
 * uint64 varints of up to 8 bytes (< 2^56): decoded exactly as numbers up to
 * 2^53 and as unsafe (so refused, as the generic path refuses them) above.
 * Longer varints go to the generic decoder, which truncates past 64 bits.
 */
const U64_VARINT_BYTES_MAX = 8;
/** Unknown varint fields are skipped up to the protobuf maximum of 10 bytes. */
const SKIP_VARINT_BYTES_MAX = 10;

export interface KvBatchLimits {
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
}

export interface DecodedKvBatch {
  /** One per entry on the wire; undefined where a field is out of range (as `entryFromWire` decides). */
  readonly entries: (KvEntry | undefined)[];
  readonly repair: boolean;
}

// ---- encoding ----

/** The node ids' UTF-8 bytes, remembered: a batch carries few distinct writers. */
class NodeBytes {
  private lastNode = '';
  private lastBytes: Buffer = Buffer.alloc(0);

  of(node: string): Buffer {
    if (node !== this.lastNode) {
      this.lastNode = node;
      this.lastBytes = Buffer.from(node, 'utf8');
    }
    return this.lastBytes;
  }
}

/** Bytes of one KvEntry message (without its tag and length). */
function entryBytes(e: KvEntry, nodeLength: number): number {
  let n = 1 + varintBytes(e.key.length) + e.key.length;
  const valueLength = e.value?.length ?? 0;
  if (valueLength > 0) n += 1 + varintBytes(valueLength) + valueLength;
  if (e.hlc !== 0) n += 1 + varintBytes(e.hlc);
  if (nodeLength > 0) n += 1 + varintBytes(nodeLength) + nodeLength;
  if (e.value === undefined) n += 2;
  if (e.value !== undefined && e.expiresMs !== 0) n += 1 + varintBytes(e.expiresMs);
  return n;
}

/**
 * One frame (length prefix included) of `Envelope { kv_batch: { entries, repair } }`,
 * byte for byte what `encodeEnvelopeFrame` makes of `entries.map(entryToWire)`.
 * Keys are latin1 strings (one char per byte), as everywhere in the cache.
 */
export function encodeKvBatchFrame(entries: readonly KvEntry[], repair = false): Uint8Array {
  const nodes = new NodeBytes();
  const sizes = new Array<number>(entries.length);
  let batchLength = repair ? 2 : 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const size = entryBytes(e, nodes.of(e.node).length);
    sizes[i] = size;
    batchLength += 1 + varintBytes(size) + size;
  }
  const payloadLength = ENVELOPE_KV_BATCH_TAG.length + varintBytes(batchLength) + batchLength;
  // Not from Node's shared pool: a frame may wait in a socket's queue for a while.
  const out = Buffer.allocUnsafeSlow(FRAME_HEADER_BYTES + payloadLength);
  out.writeUInt32BE(payloadLength, 0);
  let pos = FRAME_HEADER_BYTES;
  out[pos++] = ENVELOPE_KV_BATCH_TAG[0];
  out[pos++] = ENVELOPE_KV_BATCH_TAG[1];
  pos = writeVarint(out, pos, batchLength);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    out[pos++] = (1 << 3) | WIRE_LEN;
    pos = writeVarint(out, pos, sizes[i]!);
    out[pos++] = (1 << 3) | WIRE_LEN;
    pos = writeVarint(out, pos, e.key.length);
    pos = writeLatin1(out, pos, e.key);
    const value = e.value;
    if (value !== undefined && value.length > 0) {
      out[pos++] = (2 << 3) | WIRE_LEN;
      pos = writeVarint(out, pos, value.length);
      pos = writeBytes(out, pos, value);
    }
    if (e.hlc !== 0) {
      out[pos++] = (3 << 3) | WIRE_VARINT;
      pos = writeVarint(out, pos, e.hlc);
    }
    const node = nodes.of(e.node);
    if (node.length > 0) {
      out[pos++] = (4 << 3) | WIRE_LEN;
      pos = writeVarint(out, pos, node.length);
      pos = writeBytes(out, pos, node);
    }
    if (value === undefined) {
      out[pos++] = (5 << 3) | WIRE_VARINT;
      out[pos++] = 1;
    } else if (e.expiresMs !== 0) {
      out[pos++] = (6 << 3) | WIRE_VARINT;
      pos = writeVarint(out, pos, e.expiresMs);
    }
  }
  if (repair) {
    out[pos++] = (2 << 3) | WIRE_VARINT;
    out[pos++] = 1;
  }
  if (pos !== out.length) throw new Error(`kv batch encoder wrote ${pos} of ${out.length} bytes`);
  return out;
}

// ---- decoding ----

/** Thrown inside the decoder when the frame is not in the plain form: the caller falls back. */
const NOT_PLAIN = Symbol('not plain');

/**
 * A cursor over one frame. `u8` is a plain Uint8Array view of the frame,
 * so `slice` copies (Buffer's own `slice` would share the frame's memory);
 * `text` a Buffer view of the same bytes for latin1 strings.
 */
class Reader {
  pos: number;
  readonly u8: Uint8Array;
  readonly text: Buffer;
  private lastNode = '';

  constructor(frame: Uint8Array, pos: number) {
    this.u8 = new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
    this.text = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    this.pos = pos;
  }

  /** A varint of at most `bytesMax` bytes ending before `end`, as a number (exact below 2^53). */
  varint(end: number, bytesMax: number): number {
    const u8 = this.u8;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < bytesMax; i++) {
      if (this.pos >= end) throw NOT_PLAIN;
      const b = u8[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 0x80;
    }
    throw NOT_PLAIN;
  }

  /** A length prefix whose bytes all lie before `end`; returns where they end. */
  lengthEnd(end: number): number {
    const length = this.varint(end, LENGTH_VARINT_BYTES_MAX);
    const stop = this.pos + length;
    if (stop > end) throw NOT_PLAIN;
    return stop;
  }

  skip(wireType: number, end: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint(end, SKIP_VARINT_BYTES_MAX);
        return;
      case WIRE_FIXED64:
        this.pos += 8;
        break;
      case WIRE_LEN:
        this.pos = this.lengthEnd(end);
        return;
      case WIRE_FIXED32:
        this.pos += 4;
        break;
      default:
        // Groups (3, 4) and the invalid wire types 6 and 7.
        throw NOT_PLAIN;
    }
    if (this.pos > end) throw NOT_PLAIN;
  }

  /** A tag before `end`: field number << 3 | wire type, the field number at least 1. */
  tag(end: number): number {
    const tag = this.varint(end, LENGTH_VARINT_BYTES_MAX);
    if (tag < 8) throw NOT_PLAIN;
    return tag;
  }

  /** A node id (ASCII only here; the generic decoder checks other UTF-8), the previous one's string reused when equal. */
  node(start: number, stop: number): string {
    const u8 = this.u8;
    const last = this.lastNode;
    let same = last.length === stop - start;
    for (let i = start; i < stop; i++) {
      const b = u8[i]!;
      if (b > 0x7f) throw NOT_PLAIN;
      if (same && last.charCodeAt(i - start) !== b) same = false;
    }
    if (same) return last;
    this.lastNode = this.text.toString('latin1', start, stop);
    return this.lastNode;
  }
}

/**
 * Reads a frame payload that is exactly `Envelope { kv_batch }` in the plain
 * form. Undefined for any other frame, or one this decoder does not read
 * (the generic decoder then decides). Values are copied out of the frame,
 * once each, so a held value does not keep the received frame alive.
 */
export function decodeKvBatchEnvelope(payload: Uint8Array, limits: KvBatchLimits): DecodedKvBatch | undefined {
  if (payload.length < 3 || payload[0] !== ENVELOPE_KV_BATCH_TAG[0] || payload[1] !== ENVELOPE_KV_BATCH_TAG[1]) return undefined;
  try {
    const r = new Reader(payload, ENVELOPE_KV_BATCH_TAG.length);
    const end = r.lengthEnd(payload.length);
    if (end !== payload.length) return undefined;
    const entries: (KvEntry | undefined)[] = [];
    let repair = false;
    while (r.pos < end) {
      const tag = r.tag(end);
      if (tag === ((1 << 3) | WIRE_LEN)) {
        const stop = r.lengthEnd(end);
        entries.push(readEntry(r, stop, limits));
      } else if (tag === ((2 << 3) | WIRE_VARINT)) {
        repair = r.varint(end, 1) !== 0;
      } else if (tag >>> 3 === 1 || tag >>> 3 === 2) {
        throw NOT_PLAIN;
      } else {
        r.skip(tag & 7, end);
      }
    }
    return { entries, repair };
  } catch (err) {
    if (err === NOT_PLAIN) return undefined;
    throw err;
  }
}

/** One KvEntry ending at `stop`; undefined when a field is out of range (entryFromWire's rules). */
function readEntry(r: Reader, stop: number, limits: KvBatchLimits): KvEntry | undefined {
  let keyStart = 0;
  let keyEnd = 0;
  let valueStart = 0;
  let valueEnd = 0;
  let nodeStart = 0;
  let nodeEnd = 0;
  let hlc = 0;
  let deleted = false;
  let expiresMs = 0;
  while (r.pos < stop) {
    const tag = r.tag(stop);
    switch (tag) {
      case (1 << 3) | WIRE_LEN: {
        const end = r.lengthEnd(stop);
        keyStart = r.pos;
        keyEnd = r.pos = end;
        break;
      }
      case (2 << 3) | WIRE_LEN: {
        const end = r.lengthEnd(stop);
        valueStart = r.pos;
        valueEnd = r.pos = end;
        break;
      }
      case (3 << 3) | WIRE_VARINT:
        hlc = r.varint(stop, U64_VARINT_BYTES_MAX);
        break;
      case (4 << 3) | WIRE_LEN: {
        const end = r.lengthEnd(stop);
        nodeStart = r.pos;
        nodeEnd = r.pos = end;
        break;
      }
      case (5 << 3) | WIRE_VARINT:
        deleted = r.varint(stop, 1) !== 0;
        break;
      case (6 << 3) | WIRE_VARINT:
        expiresMs = r.varint(stop, U64_VARINT_BYTES_MAX);
        break;
      default:
        // A known field with another wire type is for the generic decoder.
        if (tag >>> 3 <= 6) throw NOT_PLAIN;
        r.skip(tag & 7, stop);
    }
  }
  const node = nodeEnd > nodeStart ? r.node(nodeStart, nodeEnd) : '';
  const keyLength = keyEnd - keyStart;
  const valueLength = valueEnd - valueStart;
  if (!Number.isSafeInteger(hlc) || !Number.isSafeInteger(expiresMs)) return undefined;
  if (keyLength === 0 || keyLength > limits.keyBytesMax || valueLength > limits.valueBytesMax) return undefined;
  if (node.length === 0 || node.length > NODE_ID_BYTES_MAX) return undefined;
  return {
    key: r.text.toString('latin1', keyStart, keyEnd),
    value: deleted ? undefined : r.u8.slice(valueStart, valueEnd),
    hlc,
    node,
    expiresMs: deleted ? 0 : expiresMs,
    storedIn: undefined,
    storedAt: 0,
  };
}
