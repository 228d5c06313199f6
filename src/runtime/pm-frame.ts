/**
 * Hand-written codec for the frames of seed 004's hot path: msend (Envelope
 * with PmSend) and its answer (PmOk). One msend costs the coordinator a
 * decode and an encode and the client the reverse; the generated code builds
 * them by reflection, several times slower than the message is worth.
 *
 * Encoders write exactly the bytes the generated code (@bufbuild/protobuf
 * toBinary) writes: fields in number order, zero values omitted, the oneof's
 * message written even when empty. Decoders take only the canonical layout
 * those encoders produce and return undefined for anything else (unknown or
 * repeated fields, other field orders, values beyond a JS number, bad UTF-8),
 * so the caller hands such a frame to the generated decoder, which keeps the
 * last word on what is valid. test/unit/pm-frame.test.ts proves both against
 * the generated code.
 */
import { FRAME_HEADER_BYTES } from '../wire/index.js';
import { varintBytes, writeVarint } from '../wire/varint.js';

/** Envelope field tags as varints: (field number << 3) | wire type. */
const TAG_REQUEST_ID = 0x08; // 1, varint
const TAG_RESPONSE = 0x10; // 2, varint
const TAG_PM_SEND = [0x82, 0x04] as const; // 64, length-delimited
const TAG_PM_OK = [0x8a, 0x04] as const; // 65, length-delimited
/** PmSend: participant = 1, text = 2 (strings); PmOk: seq = 1, accepted_ms = 2 (uint64). */
const TAG_1_LEN = 0x0a;
const TAG_2_LEN = 0x12;
const TAG_1_VARINT = 0x08;
const TAG_2_VARINT = 0x10;

const utf8 = new TextEncoder();
/** proto3 strings must be valid UTF-8: the generated decoder throws on anything else, so must we (by declining). */
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface PmSendFrame {
  readonly requestId: number;
  readonly participant: string;
  readonly text: string;
}

export interface PmOkFrame {
  readonly requestId: number;
  readonly seq: number;
  readonly acceptedMs: number;
}

// ---------------------------------------------------------------------------
// Encoding

function writeHeader(out: Uint8Array, at: number, payloadBytes: number): void {
  out[at] = payloadBytes >>> 24;
  out[at + 1] = (payloadBytes >>> 16) & 0xff;
  out[at + 2] = (payloadBytes >>> 8) & 0xff;
  out[at + 3] = payloadBytes & 0xff;
}

/** UTF-8 of `s`: ASCII (the usual case) without a call into the encoder. */
function utf8Bytes(s: string): Uint8Array | string {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return utf8.encode(s);
  return s;
}

function stringBytes(s: Uint8Array | string): number {
  return s.length;
}

function writeString(out: Uint8Array, at: number, s: Uint8Array | string): number {
  if (typeof s === 'string') {
    for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
  } else {
    out.set(s, at);
  }
  return at + s.length;
}

/** One whole frame (length prefix included): Envelope{request_id, body: pm_send{participant, text}}. */
export function encodePmSendFrame(requestId: number, participant: string, text: string): Uint8Array {
  const p = utf8Bytes(participant);
  const t = utf8Bytes(text);
  const pBytes = stringBytes(p);
  const tBytes = stringBytes(t);
  const body = (pBytes > 0 ? 1 + varintBytes(pBytes) + pBytes : 0) + (tBytes > 0 ? 1 + varintBytes(tBytes) + tBytes : 0);
  const payload = (requestId !== 0 ? 1 + varintBytes(requestId) : 0) + 2 + varintBytes(body) + body;
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload);
  writeHeader(out, 0, payload);
  let at = FRAME_HEADER_BYTES;
  if (requestId !== 0) {
    out[at++] = TAG_REQUEST_ID;
    at = writeVarint(out, at, requestId);
  }
  out[at++] = TAG_PM_SEND[0];
  out[at++] = TAG_PM_SEND[1];
  at = writeVarint(out, at, body);
  if (pBytes > 0) {
    out[at++] = TAG_1_LEN;
    at = writeVarint(out, at, pBytes);
    at = writeString(out, at, p);
  }
  if (tBytes > 0) {
    out[at++] = TAG_2_LEN;
    at = writeVarint(out, at, tBytes);
    writeString(out, at, t);
  }
  return out;
}

function pmOkPayloadBytes(requestId: number, seq: number, acceptedMs: number): { payload: number; body: number } {
  const body = (seq !== 0 ? 1 + varintBytes(seq) : 0) + (acceptedMs !== 0 ? 1 + varintBytes(acceptedMs) : 0);
  return { payload: (requestId !== 0 ? 1 + varintBytes(requestId) : 0) + 2 + 2 + varintBytes(body) + body, body };
}

/** Bytes of the whole frame encodePmOkFrameInto writes. */
export function pmOkFrameBytes(requestId: number, seq: number, acceptedMs: number): number {
  return FRAME_HEADER_BYTES + pmOkPayloadBytes(requestId, seq, acceptedMs).payload;
}

/**
 * Writes the whole answer frame Envelope{request_id, response: true,
 * body: pm_ok{seq, accepted_ms}} at `at` (room for pmOkFrameBytes bytes);
 * returns the offset after it. Many answers to one connection go into one buffer.
 */
export function encodePmOkFrameInto(out: Uint8Array, at: number, requestId: number, seq: number, acceptedMs: number): number {
  const { payload, body } = pmOkPayloadBytes(requestId, seq, acceptedMs);
  writeHeader(out, at, payload);
  at += FRAME_HEADER_BYTES;
  if (requestId !== 0) {
    out[at++] = TAG_REQUEST_ID;
    at = writeVarint(out, at, requestId);
  }
  out[at++] = TAG_RESPONSE;
  out[at++] = 1;
  out[at++] = TAG_PM_OK[0];
  out[at++] = TAG_PM_OK[1];
  at = writeVarint(out, at, body);
  if (seq !== 0) {
    out[at++] = TAG_1_VARINT;
    at = writeVarint(out, at, seq);
  }
  if (acceptedMs !== 0) {
    out[at++] = TAG_2_VARINT;
    at = writeVarint(out, at, acceptedMs);
  }
  return at;
}

export function encodePmOkFrame(requestId: number, seq: number, acceptedMs: number): Uint8Array {
  const out = new Uint8Array(pmOkFrameBytes(requestId, seq, acceptedMs));
  encodePmOkFrameInto(out, 0, requestId, seq, acceptedMs);
  return out;
}

// ---------------------------------------------------------------------------
// Decoding: a cursor over one frame payload; any surprise → undefined.

class Cursor {
  at = 0;
  constructor(
    readonly buf: Uint8Array,
    public end: number,
  ) {}

  /** A varint of at most 2^53 − 1 (uint64 values beyond a JS number decline), or -1. */
  varint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.at >= this.end) return -1;
      const b = this.buf[this.at++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return i > 0 && b === 0 ? -1 : v <= Number.MAX_SAFE_INTEGER ? v : -1;
      scale *= 128;
    }
    return -1;
  }

  /** A length-delimited field's length, or -1 when it overruns. */
  length(): number {
    const n = this.varint();
    return n >= 0 && n <= this.end - this.at ? n : -1;
  }

  /** The next two bytes are `tag` (a two-byte field tag). */
  tag2(tag: readonly [number, number]): boolean {
    if (this.at + 2 > this.end || this.buf[this.at] !== tag[0] || this.buf[this.at + 1] !== tag[1]) return false;
    this.at += 2;
    return true;
  }

  /** A string of `n` bytes, or undefined when it is not valid UTF-8. */
  string(n: number): string | undefined {
    const start = this.at;
    this.at += n;
    let ascii = n <= 64;
    for (let i = start; ascii && i < this.at; i++) {
      if (this.buf[i]! >= 0x80) ascii = false;
    }
    // Short ASCII (participant ids, typical texts) without a call into the decoder.
    if (ascii) return String.fromCharCode.apply(null, this.buf.subarray(start, this.at) as unknown as number[]);
    try {
      return utf8Strict.decode(this.buf.subarray(start, this.at));
    } catch {
      return undefined;
    }
  }
}

/** Reads the optional request_id and response of an envelope; response must be `response`. -1 on a surprise. */
function envelopeHead(c: Cursor, response: boolean): number {
  let requestId = 0;
  if (c.at < c.end && c.buf[c.at] === TAG_REQUEST_ID) {
    c.at += 1;
    requestId = c.varint();
    // Zero is written by nobody (proto3 omits it); above uint32 the generated code would truncate.
    if (requestId <= 0 || requestId > 0xffff_ffff) return -1;
  }
  if (c.at < c.end && c.buf[c.at] === TAG_RESPONSE) {
    if (!response || c.at + 2 > c.end || c.buf[c.at + 1] !== 1) return -1;
    c.at += 2;
  } else if (response) {
    return -1;
  }
  return requestId;
}

/** An msend request in its canonical layout, or undefined (let the generated decoder have it). */
export function decodePmSendFrame(payload: Uint8Array): PmSendFrame | undefined {
  const c = new Cursor(payload, payload.length);
  const requestId = envelopeHead(c, false);
  if (requestId < 0 || !c.tag2(TAG_PM_SEND)) return undefined;
  const body = c.length();
  if (body < 0 || c.at + body !== c.end) return undefined;
  let participant = '';
  let text = '';
  if (c.at < c.end && c.buf[c.at] === TAG_1_LEN) {
    c.at += 1;
    const n = c.length();
    if (n <= 0) return undefined;
    const s = c.string(n);
    if (s === undefined) return undefined;
    participant = s;
  }
  if (c.at < c.end && c.buf[c.at] === TAG_2_LEN) {
    c.at += 1;
    const n = c.length();
    if (n <= 0) return undefined;
    const s = c.string(n);
    if (s === undefined) return undefined;
    text = s;
  }
  return c.at === c.end ? { requestId, participant, text } : undefined;
}

/** An msend (or any command's) answer in its canonical layout, or undefined. */
export function decodePmOkFrame(payload: Uint8Array): PmOkFrame | undefined {
  const c = new Cursor(payload, payload.length);
  const requestId = envelopeHead(c, true);
  if (requestId < 0 || !c.tag2(TAG_PM_OK)) return undefined;
  const body = c.length();
  if (body < 0 || c.at + body !== c.end) return undefined;
  let seq = 0;
  let acceptedMs = 0;
  if (c.at < c.end && c.buf[c.at] === TAG_1_VARINT) {
    c.at += 1;
    seq = c.varint();
    if (seq <= 0) return undefined;
  }
  if (c.at < c.end && c.buf[c.at] === TAG_2_VARINT) {
    c.at += 1;
    acceptedMs = c.varint();
    if (acceptedMs <= 0) return undefined;
  }
  return c.at === c.end ? { requestId, seq, acceptedMs } : undefined;
}

// ---------------------------------------------------------------------------
// Delivery: Envelope{body: pm_deliver{repeated PmMessage{seq, text, accepted_ms, sender}}}

const TAG_PM_DELIVER = [0x92, 0x04] as const; // 66, length-delimited
const TAG_3_VARINT = 0x18;
const TAG_4_LEN = 0x22;

export interface PmDeliverMessage {
  readonly seq: number;
  readonly text: string;
  readonly acceptedMs: number;
  readonly sender: string;
}

/** One whole frame delivering `messages` (in the given order), as the generated code writes it. */
export function encodePmDeliverFrame(messages: readonly PmDeliverMessage[]): Uint8Array {
  const texts: (Uint8Array | string)[] = new Array(messages.length);
  const senders: (Uint8Array | string)[] = new Array(messages.length);
  const sizes: number[] = new Array(messages.length);
  let body = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const t = (texts[i] = utf8Bytes(m.text));
    const s = (senders[i] = utf8Bytes(m.sender));
    const size =
      (m.seq !== 0 ? 1 + varintBytes(m.seq) : 0) +
      (t.length > 0 ? 1 + varintBytes(t.length) + t.length : 0) +
      (m.acceptedMs !== 0 ? 1 + varintBytes(m.acceptedMs) : 0) +
      (s.length > 0 ? 1 + varintBytes(s.length) + s.length : 0);
    sizes[i] = size;
    body += 1 + varintBytes(size) + size;
  }
  const payload = 2 + varintBytes(body) + body;
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload);
  writeHeader(out, 0, payload);
  let at = FRAME_HEADER_BYTES;
  out[at++] = TAG_PM_DELIVER[0];
  out[at++] = TAG_PM_DELIVER[1];
  at = writeVarint(out, at, body);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const t = texts[i]!;
    const s = senders[i]!;
    out[at++] = TAG_1_LEN;
    at = writeVarint(out, at, sizes[i]!);
    if (m.seq !== 0) {
      out[at++] = TAG_1_VARINT;
      at = writeVarint(out, at, m.seq);
    }
    if (t.length > 0) {
      out[at++] = TAG_2_LEN;
      at = writeVarint(out, at, t.length);
      at = writeString(out, at, t);
    }
    if (m.acceptedMs !== 0) {
      out[at++] = TAG_3_VARINT;
      at = writeVarint(out, at, m.acceptedMs);
    }
    if (s.length > 0) {
      out[at++] = TAG_4_LEN;
      at = writeVarint(out, at, s.length);
      at = writeString(out, at, s);
    }
  }
  return out;
}

/** A delivery in its canonical layout (no request id, not a response), or undefined. */
export function decodePmDeliverFrame(payload: Uint8Array): PmDeliverMessage[] | undefined {
  const c = new Cursor(payload, payload.length);
  if (!c.tag2(TAG_PM_DELIVER)) return undefined;
  const body = c.length();
  if (body < 0 || c.at + body !== c.end) return undefined;
  const out: PmDeliverMessage[] = [];
  while (c.at < payload.length) {
    if (c.buf[c.at] !== TAG_1_LEN) return undefined;
    c.at += 1;
    const n = c.length();
    if (n < 0) return undefined;
    const end = c.at + n;
    c.end = end;
    let seq = 0;
    let text = '';
    let acceptedMs = 0;
    let sender = '';
    if (c.at < end && c.buf[c.at] === TAG_1_VARINT) {
      c.at += 1;
      seq = c.varint();
      if (seq <= 0) return undefined;
    }
    if (c.at < end && c.buf[c.at] === TAG_2_LEN) {
      c.at += 1;
      const k = c.length();
      if (k <= 0) return undefined;
      const s = c.string(k);
      if (s === undefined) return undefined;
      text = s;
    }
    if (c.at < end && c.buf[c.at] === TAG_3_VARINT) {
      c.at += 1;
      acceptedMs = c.varint();
      if (acceptedMs <= 0) return undefined;
    }
    if (c.at < end && c.buf[c.at] === TAG_4_LEN) {
      c.at += 1;
      const k = c.length();
      if (k <= 0) return undefined;
      const s = c.string(k);
      if (s === undefined) return undefined;
      sender = s;
    }
    if (c.at !== end) return undefined;
    c.end = payload.length;
    out.push({ seq, text, acceptedMs, sender });
  }
  return out;
}
