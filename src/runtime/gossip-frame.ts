import type { GossipMessage } from '../core/gossip/message.js';
import { FRAME_HEADER_BYTES } from '../wire/index.js';
import { varintBytes, writeVarint } from '../wire/varint.js';

/**
 * A hand-written codec for the hot frame of gossip: an Envelope whose body is
 * a GossipBatch (field 33) of GossipMessages. The generated protobuf code
 * spent about 12 µs per message each way, a large share of a node's CPU per
 * message under load; this writes the same bytes as
 * `encodeEnvelopeFrame({ body: { case: 'gossipBatch', ... } })` (fields in
 * number order, zero and empty scalars left out) and reads that canonical
 * form back. Anything else in a frame (another field, another wire type, a
 * number over 2^53, an unknown field) is not this codec's to judge: decode
 * returns undefined and the frame takes the generated decoder's path, so
 * both accept and refuse exactly the same frames.
 */

/** Envelope field 33 (gossip_batch), wire type 2: the varint 266. */
const ENVELOPE_BATCH_TAG_0 = 0x8a;
const ENVELOPE_BATCH_TAG_1 = 0x02;
/** Field 1 wire type 2, in both GossipBatch (messages) and GossipMessage (id). */
const TAG_1_LEN = 0x0a;
const TAG_2_LEN = 0x12;
const TAG_3_VARINT = 0x18;
const TAG_4_VARINT = 0x20;
const TAG_5_LEN = 0x2a;
const TAG_6_VARINT = 0x30;
const TAG_7_LEN = 0x3a;

function stringField(parts: (number | string)[], tag: number, value: string, always = false): number {
  if (value.length === 0 && !always) return 0;
  const bytes = Buffer.byteLength(value, 'utf8');
  parts.push(tag, value, bytes);
  return 1 + varintBytes(bytes) + bytes;
}

/** The protobuf bytes of one GossipMessage (what GossipMessageSchema's toBinary writes). */
export function encodeGossipMessage(m: GossipMessage): Uint8Array {
  if (m.incarnation < 0 || m.seq < 0 || m.createdMs < 0) throw new RangeError('gossip numbers must not be negative');
  const parts: (number | string)[] = [];
  let size = stringField(parts, TAG_1_LEN, m.id) + stringField(parts, TAG_2_LEN, m.origin);
  if (m.incarnation !== 0) size += 1 + varintBytes(m.incarnation);
  if (m.seq !== 0) size += 1 + varintBytes(m.seq);
  size += stringField(parts, TAG_5_LEN, m.text);
  if (m.createdMs !== 0) size += 1 + varintBytes(m.createdMs);
  const pathParts: (number | string)[] = [];
  for (const p of m.path) size += stringField(pathParts, TAG_7_LEN, p, true);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  let i = 0;
  const writeString = (tag: number): void => {
    if (parts[i] !== tag) return;
    const value = parts[i + 1] as string;
    const bytes = parts[i + 2] as number;
    out[at++] = tag;
    at = writeVarint(out, at, bytes);
    at += out.write(value, at, 'utf8');
    i += 3;
  };
  writeString(TAG_1_LEN);
  writeString(TAG_2_LEN);
  if (m.incarnation !== 0) {
    out[at++] = TAG_3_VARINT;
    at = writeVarint(out, at, m.incarnation);
  }
  if (m.seq !== 0) {
    out[at++] = TAG_4_VARINT;
    at = writeVarint(out, at, m.seq);
  }
  writeString(TAG_5_LEN);
  if (m.createdMs !== 0) {
    out[at++] = TAG_6_VARINT;
    at = writeVarint(out, at, m.createdMs);
  }
  for (let j = 0; j < pathParts.length; j += 3) {
    const value = pathParts[j + 1] as string;
    out[at++] = TAG_7_LEN;
    at = writeVarint(out, at, pathParts[j + 2] as number);
    at += out.write(value, at, 'utf8');
  }
  return new Uint8Array(out.buffer, out.byteOffset, at);
}

/** A whole frame (length prefix included): an Envelope with a GossipBatch of the encoded messages. */
export function gossipBatchFrame(encoded: readonly Uint8Array[]): Uint8Array {
  let batchBytes = 0;
  for (const e of encoded) batchBytes += 1 + varintBytes(e.length) + e.length;
  const payloadBytes = 2 + varintBytes(batchBytes) + batchBytes;
  const out = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes);
  new DataView(out.buffer).setUint32(0, payloadBytes, false);
  let at = FRAME_HEADER_BYTES;
  out[at++] = ENVELOPE_BATCH_TAG_0;
  out[at++] = ENVELOPE_BATCH_TAG_1;
  at = writeVarint(out, at, batchBytes);
  for (const e of encoded) {
    out[at++] = TAG_1_LEN;
    at = writeVarint(out, at, e.length);
    out.set(e, at);
    at += e.length;
  }
  return out;
}

/** Envelope field 48 (gossip_event), wire type 2: the varint 386. */
const ENVELOPE_EVENT_TAG_0 = 0x82;
const ENVELOPE_EVENT_TAG_1 = 0x03;
/** Envelope field 1 (request_id), wire type 0. */
const ENVELOPE_REQUEST_ID_TAG = 0x08;

/**
 * A whole frame (length prefix included): the Envelope of a watch event,
 * `{ requestId, body: gossipEvent { message } }`, with `encoded` from
 * encodeGossipMessage — the same bytes as encodeEnvelopeFrame writes, at a
 * fraction of the cost (every watcher gets one per stored message).
 */
export function gossipEventFrame(requestId: number, encoded: Uint8Array): Uint8Array {
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffff_ffff) throw new RangeError('request id out of uint32 range');
  const eventBytes = 1 + varintBytes(encoded.length) + encoded.length;
  const idBytes = requestId === 0 ? 0 : 1 + varintBytes(requestId);
  const payloadBytes = idBytes + 2 + varintBytes(eventBytes) + eventBytes;
  const out = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes);
  new DataView(out.buffer).setUint32(0, payloadBytes, false);
  let at = FRAME_HEADER_BYTES;
  if (requestId !== 0) {
    out[at++] = ENVELOPE_REQUEST_ID_TAG;
    at = writeVarint(out, at, requestId);
  }
  out[at++] = ENVELOPE_EVENT_TAG_0;
  out[at++] = ENVELOPE_EVENT_TAG_1;
  at = writeVarint(out, at, eventBytes);
  out[at++] = TAG_1_LEN;
  at = writeVarint(out, at, encoded.length);
  out.set(encoded, at);
  return out;
}

/** As the generated code reads proto3 strings: invalid UTF-8 is refused, a leading U+FEFF is text. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Thrown inside the reader when the bytes are not the canonical form; caught by decode. */
class NotCanonical extends Error {}

class Reader {
  at: number;
  /** False once a varint was written longer than it needs (valid protobuf, but not what we write). */
  minimal = true;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.at = start;
  }

  /** A varint up to 2^53 - 1; anything longer or larger is not ours to read. */
  varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.at >= this.end) throw new NotCanonical();
      const b = this.bytes[this.at++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(n)) throw new NotCanonical();
        if (b === 0 && i > 0) this.minimal = false;
        return n;
      }
      scale *= 128;
    }
    throw new NotCanonical();
  }

  /** The bounds of a length-delimited field's contents. */
  span(): [number, number] {
    const len = this.varint();
    const start = this.at;
    if (len > this.end - start) throw new NotCanonical();
    this.at = start + len;
    return [start, start + len];
  }

  string(): string {
    const [start, end] = this.span();
    return stringAt(this.bytes, start, end);
  }
}

function isAscii(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i]! > 0x7f) return false;
  return true;
}

/**
 * Buffer's own latin1 reader, called on the frame's bytes as they are: a
 * Buffer view per string (Buffer.from(...).toString) cost about 0.25 µs
 * each, for 5 to 9 strings per message. Not in Node's documented API, so
 * the view is the fallback should a Node lack it.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

function asciiAt(bytes: Uint8Array, start: number, end: number): string {
  return latin1Slice !== undefined ? latin1Slice.call(bytes, start, end) : Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}

function stringAt(bytes: Uint8Array, start: number, end: number): string {
  if (isAscii(bytes, start, end)) return asciiAt(bytes, start, end);
  try {
    return utf8.decode(bytes.subarray(start, end));
  } catch {
    // Invalid UTF-8: the generated decoder refuses the frame.
    throw new NotCanonical();
  }
}

/** Refuses invalid UTF-8 as stringAt does, without making the string (a message we drop unread). */
function checkStringAt(bytes: Uint8Array, start: number, end: number): void {
  if (!isAscii(bytes, start, end)) stringAt(bytes, start, end);
}

/** A message of a batch frame as received. */
export interface ReceivedMessage {
  readonly message: GossipMessage;
  /**
   * The message's bytes when they are exactly what encodeGossipMessage
   * writes for it (fields in number order, nothing zero or empty written,
   * shortest varints): forwarding then appends one path entry to them
   * instead of encoding the message again (see withPathEntry).
   */
  readonly canonical: Uint8Array | undefined;
}

/** Whether this node already holds (or purged) a message: such copies are checked but not built. */
export type HeldCheck = (origin: string, incarnation: number, seq: number) => boolean;

const HELD = Symbol('held');

function readMessage(bytes: Uint8Array, start: number, end: number, isHeld: HeldCheck | undefined): ReceivedMessage | typeof HELD {
  const r = new Reader(bytes, start, end);
  // Strings are located first and made only for a message we keep: a node
  // receives about as many copies it holds already as new ones.
  let idStart = 0;
  let idEnd = 0;
  let origin = '';
  let incarnation = 0;
  let seq = 0;
  let textStart = 0;
  let textEnd = 0;
  let createdMs = 0;
  const pathSpans: number[] = [];
  let canonical = true;
  let lastTag = 0;
  while (r.at < end) {
    const tag = bytes[r.at++]!;
    if (tag < lastTag || (tag === lastTag && tag !== TAG_7_LEN)) canonical = false;
    lastTag = tag;
    switch (tag) {
      case TAG_1_LEN:
        [idStart, idEnd] = r.span();
        if (idStart === idEnd) canonical = false;
        break;
      case TAG_2_LEN:
        origin = r.string();
        if (origin.length === 0) canonical = false;
        break;
      case TAG_3_VARINT:
        incarnation = r.varint();
        if (incarnation === 0) canonical = false;
        break;
      case TAG_4_VARINT:
        seq = r.varint();
        if (seq === 0) canonical = false;
        break;
      case TAG_5_LEN:
        [textStart, textEnd] = r.span();
        if (textStart === textEnd) canonical = false;
        break;
      case TAG_6_VARINT:
        createdMs = r.varint();
        if (createdMs === 0) canonical = false;
        break;
      case TAG_7_LEN: {
        const [a, b] = r.span();
        pathSpans.push(a, b);
        break;
      }
      default:
        throw new NotCanonical();
    }
  }
  if (isHeld !== undefined && seq >= 1 && isHeld(origin, incarnation, seq)) {
    checkStringAt(bytes, idStart, idEnd);
    checkStringAt(bytes, textStart, textEnd);
    for (let j = 0; j < pathSpans.length; j += 2) checkStringAt(bytes, pathSpans[j]!, pathSpans[j + 1]!);
    return HELD;
  }
  const id = stringAt(bytes, idStart, idEnd);
  const text = stringAt(bytes, textStart, textEnd);
  const path: string[] = [];
  for (let j = 0; j < pathSpans.length; j += 2) path.push(stringAt(bytes, pathSpans[j]!, pathSpans[j + 1]!));
  return {
    message: { id, origin, incarnation, seq, text, createdMs, path },
    canonical: canonical && r.minimal ? bytes.subarray(start, end) : undefined,
  };
}

export interface DecodedBatch {
  /** The messages not held, in frame order. */
  readonly fresh: ReceivedMessage[];
  /** How many copies `isHeld` said are held (read and checked, not built). */
  readonly held: number;
}

/**
 * The messages of a frame payload that is exactly an Envelope holding a
 * GossipBatch in canonical form; undefined for any other payload (decode it
 * with the generated code, which accepts or refuses it). With `isHeld`,
 * messages it says are held are counted, not returned; the frame is accepted
 * or refused exactly as without it.
 */
export function decodeGossipBatch(payload: Uint8Array, isHeld?: HeldCheck): DecodedBatch | undefined {
  if (payload.length < 3 || payload[0] !== ENVELOPE_BATCH_TAG_0 || payload[1] !== ENVELOPE_BATCH_TAG_1) return undefined;
  try {
    const r = new Reader(payload, 2, payload.length);
    const [start, end] = r.span();
    if (end !== payload.length) return undefined;
    const fresh: ReceivedMessage[] = [];
    let held = 0;
    const batch = new Reader(payload, start, end);
    while (batch.at < end) {
      if (payload[batch.at++] !== TAG_1_LEN) return undefined;
      const [ms, me] = batch.span();
      const m = readMessage(payload, ms, me, isHeld);
      if (m === HELD) held += 1;
      else fresh.push(m);
    }
    return { fresh, held };
  } catch (err) {
    if (err instanceof NotCanonical) return undefined;
    throw err;
  }
}

/** decodeGossipBatch's messages alone. */
export function decodeGossipBatchPayload(payload: Uint8Array): GossipMessage[] | undefined {
  return decodeGossipBatch(payload)?.fresh.map((m) => m.message);
}

/** The bytes of one path entry (field 7) holding `nodeId`, for withPathEntry. */
export function pathEntryBytes(nodeId: string): Uint8Array {
  const bytes = Buffer.byteLength(nodeId, 'utf8');
  const out = Buffer.allocUnsafe(1 + varintBytes(bytes) + bytes);
  out[0] = TAG_7_LEN;
  const at = writeVarint(out, 1, bytes);
  out.write(nodeId, at, 'utf8');
  return out;
}

/**
 * encodeGossipMessage of a message with one more path entry, from the
 * canonical bytes of the message without it: the path is the last field, so
 * the entry goes at the end (about 10x cheaper than encoding again).
 */
export function withPathEntry(canonical: Uint8Array, entry: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(canonical.length + entry.length);
  out.set(canonical, 0);
  out.set(entry, canonical.length);
  return out;
}
