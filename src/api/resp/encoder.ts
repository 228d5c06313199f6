// RESP2 reply writer. Replies of one batch are appended to one reusable
// buffer and leave in one socket write; bulk values of LARGE_BULK_BYTES or
// more are not copied but queued as their own chunks, and the socket is
// corked around such a multi-chunk batch so it still leaves in one writev.

import type { Socket } from 'node:net';

/** `+line` — a status reply; `line` must not contain CR or LF. */
export class SimpleString {
  readonly bytes: Buffer;
  constructor(readonly line: string) {
    this.bytes = Buffer.from(`+${line}\r\n`, 'latin1');
  }
}

/**
 * `-line` — an error reply whose first word is its code (`ERR`, `NOPROTO`).
 * `line` is a binary (latin1) string, so arguments echoed into it keep their
 * bytes; CR and LF become spaces, as Redis's addReplyErrorFormat does.
 */
export class ErrorReply {
  readonly line: string;
  constructor(line: string) {
    this.line = line.replace(/[\r\n]/g, ' ');
  }
}

/** A reply that is already RESP (used for constant multi-element replies). */
export class RawReply {
  constructor(readonly bytes: Buffer) {}
}

/**
 * What a command handler returns: Uint8Array and string are bulk strings
 * (strings as UTF-8), null/undefined the null bulk, a number an integer, an
 * array a multibulk of replies. `true` is `+OK` and `false` the null bulk, so
 * the cache's `put` result is a reply as it is (SET, SET NX) with no mapping.
 */
export type Reply = Uint8Array | string | number | boolean | null | undefined | SimpleString | ErrorReply | RawReply | readonly Reply[];

export const OK = new SimpleString('OK');
export const PONG = new SimpleString('PONG');
export const NULL_BULK = null;

const CRLF = Buffer.from('\r\n');
const NULL_BULK_BYTES = Buffer.from('$-1\r\n');
/** Bulk values this large are written from their own buffer instead of copied. */
const LARGE_BULK_BYTES = 16 * 1024;
const INITIAL_BYTES = 16 * 1024;
/** Values up to this size are copied byte by byte (see bulk()). */
const SMALL_COPY_BYTES = 32;
/** A batch buffer that grew past this is dropped after use rather than kept per connection. */
const KEEP_BYTES_MAX = 256 * 1024;

/**
 * Encodes replies into one pending batch; flush(socket) sends the batch.
 * One per connection (its buffer is reused from batch to batch).
 */
export class ReplyWriter {
  private buf = Buffer.allocUnsafe(INITIAL_BYTES);
  private len = 0;
  /** Chunks ahead of `buf` in this batch (only when a large bulk was queued). */
  private chunks: Uint8Array[] = [];

  /** Bytes waiting for flush(). */
  get pendingBytes(): number {
    let n = this.len;
    for (const c of this.chunks) n += c.length;
    return n;
  }

  reply(r: Reply): void {
    if (r === null || r === undefined || r === false) this.raw(NULL_BULK_BYTES);
    else if (r === true) this.raw(OK.bytes);
    else if (r instanceof Uint8Array) this.bulk(r);
    else if (typeof r === 'number') this.integer(r);
    else if (typeof r === 'string') this.bulkString(r);
    else if (r instanceof SimpleString || r instanceof RawReply) this.raw(r.bytes);
    else if (r instanceof ErrorReply) this.error(r.line);
    else {
      this.header(0x2a, r.length);
      for (const item of r) this.reply(item);
    }
  }

  error(line: string): void {
    this.reserve(line.length + 3);
    this.buf[this.len++] = 0x2d;
    this.len += this.buf.write(line, this.len, 'latin1');
    this.buf[this.len++] = 0x0d;
    this.buf[this.len++] = 0x0a;
  }

  integer(n: number): void {
    this.header(0x3a, n);
  }

  bulk(value: Uint8Array): void {
    this.header(0x24, value.length);
    if (value.length >= LARGE_BULK_BYTES) {
      this.cut();
      this.chunks.push(value, CRLF);
      return;
    }
    const n = value.length;
    this.reserve(n + 2);
    const b = this.buf;
    let at = this.len;
    // TypedArray#set costs more than a short loop for the few bytes of a typical value.
    if (n <= SMALL_COPY_BYTES) for (let i = 0; i < n; i++) b[at++] = value[i]!;
    else {
      b.set(value, at);
      at += n;
    }
    b[at++] = 0x0d;
    b[at++] = 0x0a;
    this.len = at;
  }

  bulkString(s: string): void {
    this.bulk(Buffer.from(s, 'utf8'));
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  /**
   * Writes everything pending to `socket` in one write (one writev when a
   * large bulk is part of it). Returns the bytes written.
   */
  flush(socket: Socket): number {
    if (this.chunks.length === 0) {
      if (this.len === 0) return 0;
      const n = this.len;
      socket.write(this.buf.subarray(0, n));
      this.len = 0;
      // Socket.write hands the bytes to the kernel at once when it can; only
      // then (nothing left queued) may the buffer be reused for the next batch.
      if (socket.writableLength > 0 || this.buf.length > KEEP_BYTES_MAX) this.buf = Buffer.allocUnsafe(INITIAL_BYTES);
      return n;
    }
    this.cut();
    const chunks = this.chunks;
    this.chunks = [];
    let n = 0;
    socket.cork();
    for (const c of chunks) {
      socket.write(c);
      n += c.length;
    }
    socket.uncork();
    return n;
  }

  /** `<type><n>\r\n` without a string allocation for the number. */
  private header(type: number, n: number): void {
    this.reserve(24);
    const b = this.buf;
    b[this.len++] = type;
    if (n < 0 || !Number.isSafeInteger(n)) {
      this.len += b.write(String(Math.trunc(n)), this.len, 'latin1');
    } else if (n < 10) {
      b[this.len++] = 0x30 + n;
    } else {
      let digits = 1;
      for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
      let i = this.len + digits - 1;
      for (let x = n; i >= this.len; x = Math.floor(x / 10)) b[i--] = 0x30 + (x % 10);
      this.len += digits;
    }
    b[this.len++] = 0x0d;
    b[this.len++] = 0x0a;
  }

  /** Moves the small bytes written so far into `chunks` (copied: `buf` is reused). */
  private cut(): void {
    if (this.len === 0) return;
    this.chunks.push(Buffer.from(this.buf.subarray(0, this.len)));
    this.len = 0;
  }

  private reserve(bytes: number): void {
    if (this.len + bytes <= this.buf.length) return;
    if (bytes >= LARGE_BULK_BYTES && this.len + bytes > KEEP_BYTES_MAX) {
      // A big simple/error/raw reply: flush what we have into a chunk and size a fresh buffer.
      this.cut();
      if (bytes <= this.buf.length) return;
    }
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + bytes));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
}
