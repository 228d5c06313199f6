// RESP2 request decoder you push bytes into (no socket): multibulk
// `*N\r\n$len\r\n...\r\n` and inline `SET a "b c"\r\n` commands, parsed the
// way Redis 7's networking.c does (processMultibulkBuffer, processInlineBuffer,
// sdssplitargs), with its error wording. Arguments are views into the pushed
// chunks: nothing is copied on the hot path, so a consumer that keeps an
// argument beyond the command must copy it.
//
// Every dimension is bounded before anything is buffered: line length, element
// count, bulk length and the bytes of one unfinished command. Pending bytes
// are kept as a list of chunks and joined once the awaited line or bulk is
// complete, so a peer dribbling one byte at a time costs linear work.

import { KV_LIMITS_DEFAULT } from '../../runtime/kv-access.js';
import type { KvLimits } from '../../runtime/kv-access.js';

/** Redis's PROTO_INLINE_MAX_SIZE: longest inline command and longest `*`/`$` header line. */
export const RESP_LINE_BYTES_MAX = 64 * 1024;
/** Most elements in one multibulk request (Redis before 7 used the same bound). */
export const RESP_ARGS_MAX = 1024 * 1024;
/** Redis's default proto-max-bulk-len; no bulk is ever larger. */
export const RESP_BULK_BYTES_CEILING = 512 * 1024 * 1024;
/** Bookkeeping counted per argument against `commandBytesMax` (a view costs memory even when empty). */
const ARG_OVERHEAD_BYTES = 64;

export interface RespDecoderLimits {
  /** Longest bulk argument; default: the cache's value limit + 1 KiB. */
  readonly bulkBytesMax: number;
  /** Bytes (plus per-argument overhead) of one command still being received. */
  readonly commandBytesMax: number;
}

/** Limits derived from the cache's: a bulk may carry the largest value plus slack for framing tests. */
export function respDecoderLimits(kv: KvLimits = KV_LIMITS_DEFAULT, commandBytesMax?: number): RespDecoderLimits {
  const bulkBytesMax = Math.min(kv.valueBytesMax + 1024, RESP_BULK_BYTES_CEILING);
  return Object.freeze({ bulkBytesMax, commandBytesMax: commandBytesMax ?? Math.max(64 * 1024 * 1024, 2 * bulkBytesMax) });
}

export type RespProtocolErrorCode =
  | 'invalid_multibulk_length'
  | 'invalid_bulk_length'
  | 'expected_dollar'
  | 'unbalanced_quotes'
  | 'inline_too_big'
  | 'multibulk_count_too_big'
  | 'bulk_count_too_big'
  | 'command_too_big';

/**
 * The peer broke the protocol. `message` is Redis's wording without the
 * `ERR ` prefix (e.g. `Protocol error: invalid bulk length`); the server
 * replies `-ERR <message>` and closes that connection.
 */
export class RespProtocolError extends Error {
  override name = 'RespProtocolError';
  constructor(
    readonly code: RespProtocolErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const CR = 0x0d;
const LF = 0x0a;
const STAR = 0x2a;
const DOLLAR = 0x24;

/**
 * An argument's view into its chunk: a Buffer (Buffer.prototype is its
 * prototype's, as for Node's own FastBuffer) made by a plain typed-array
 * constructor, which costs a third of Buffer#subarray.
 */
class ArgBytes extends Uint8Array {}
Object.setPrototypeOf(ArgBytes.prototype, Buffer.prototype);

/** `buf[start, start + len)` as an argument (see ArgBytes). */
function argView(buf: Buffer, start: number, len: number): Buffer {
  return new ArgBytes(buf.buffer as ArrayBuffer, buf.byteOffset + start, len) as unknown as Buffer;
}

/** What the decoder waits for before it can make progress. */
const enum Wait {
  /** A line ending in `term` (inline: LF, headers: CR and one more byte). */
  Line,
  /** `bytesNeeded` bytes from the start of the pending data. */
  Bytes,
}

/**
 * Decodes a client's byte stream into commands: `write(chunk)` as bytes
 * arrive, `onCommand(args)` per complete command, in order. Holds no socket.
 */
export class RespDecoder {
  /** Unconsumed bytes, oldest first; joined only when they can complete something. */
  private parts: Buffer[] = [];
  private pendingBytes = 0;
  private wait: Wait = Wait.Line;
  private lineTerm = LF;
  /** The line terminator already sits in the pending bytes (a header waiting for its LF). */
  private termSeen = false;
  private bytesNeeded = 0;
  /** Multibulk in progress: elements still to read; 0 at a command boundary. */
  private remaining = 0;
  private bulkLen = -1;
  private args: Buffer[] = [];
  private commandBytes = 0;
  /** The integer scanHeader() parsed last (a field, so the scan allocates nothing). */
  private headerValue = NaN;
  private failure: Error | undefined;

  constructor(
    private readonly onCommand: (args: Buffer[]) => void,
    private readonly limits: RespDecoderLimits = respDecoderLimits(),
  ) {}

  /** True while part of a command has arrived and the rest has not. */
  get midCommand(): boolean {
    return this.pendingBytes > 0 || this.remaining > 0;
  }

  /** Bytes held waiting for the rest of a command (not counting arguments already split off). */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Decodes `chunk`, calling `onCommand` for every complete command in order.
   * Throws RespProtocolError after delivering the commands before the fault;
   * the decoder then stays failed (the connection must be closed).
   */
  write(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    if (this.pendingBytes === 0) {
      this.run(chunk);
      return;
    }
    this.parts.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.wait === Wait.Bytes) {
      if (this.pendingBytes < this.bytesNeeded) return;
    } else if (!this.termSeen) {
      if (chunk.indexOf(this.lineTerm) === -1) {
        this.checkLineBound();
        return;
      }
    }
    const joined = Buffer.concat(this.parts, this.pendingBytes);
    this.parts = [];
    this.pendingBytes = 0;
    this.run(joined);
  }

  private run(buf: Buffer): void {
    let pos: number;
    try {
      pos = this.parse(buf);
    } catch (err) {
      this.fail(err);
    }
    if (pos === buf.length) return;
    const tail = buf.subarray(pos);
    this.parts = [tail];
    this.pendingBytes = tail.length;
    this.termSeen = this.wait === Wait.Line && tail.indexOf(this.lineTerm) !== -1;
    if (this.wait === Wait.Line) this.checkLineBound();
  }

  private fail(err: unknown): never {
    this.parts = [];
    this.pendingBytes = 0;
    this.args = [];
    // Anything but a RespProtocolError was thrown by onCommand: passed on as it is.
    this.failure = err instanceof Error ? err : new Error(String(err));
    throw this.failure;
  }

  /** A line still without its terminator may not outgrow RESP_LINE_BYTES_MAX. */
  private checkLineBound(): void {
    if (this.pendingBytes <= RESP_LINE_BYTES_MAX) return;
    try {
      if (this.remaining > 0) throw new RespProtocolError('bulk_count_too_big', 'Protocol error: too big bulk count string');
      if (this.lineTerm === CR) throw new RespProtocolError('multibulk_count_too_big', 'Protocol error: too big mbulk count string');
      throw new RespProtocolError('inline_too_big', 'Protocol error: too big inline request');
    } catch (err) {
      this.fail(err);
    }
  }

  /** Consumes whole commands and headers from `buf`; returns where the unconsumed rest starts. */
  private parse(buf: Buffer): number {
    const end = buf.length;
    let pos = 0;
    for (;;) {
      if (this.remaining === 0) {
        if (pos >= end) return this.waitLine(pos, LF);
        if (buf[pos] === STAR) {
          const next = this.wholeCommand(buf, pos, end);
          if (next > 0) {
            pos = next;
            continue;
          }
        } else {
          const lf = buf.indexOf(LF, pos);
          if (lf === -1) return this.waitLine(pos, LF);
          if (lf - pos > RESP_LINE_BYTES_MAX) throw new RespProtocolError('inline_too_big', 'Protocol error: too big inline request');
          const lineEnd = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
          const args = splitInline(buf, pos, lineEnd);
          pos = lf + 1;
          if (args.length > 0) this.onCommand(args);
          continue;
        }
        const cr = this.scanHeader(buf, pos + 1, end);
        if (cr === -1 || cr + 1 >= end) return this.waitLine(pos, CR);
        if (cr - pos > RESP_LINE_BYTES_MAX) throw new RespProtocolError('multibulk_count_too_big', 'Protocol error: too big mbulk count string');
        const count = this.headerValue;
        if (Number.isNaN(count) || count > RESP_ARGS_MAX) throw new RespProtocolError('invalid_multibulk_length', 'Protocol error: invalid multibulk length');
        pos = cr + 2; // like Redis, the byte after CR is not checked
        if (count <= 0) continue; // Redis ignores `*0` and `*-1`
        this.remaining = count;
        this.commandBytes = 0;
      }
      if (this.bulkLen < 0) {
        if (pos >= end) return this.waitLine(pos, CR);
        if (buf[pos] !== DOLLAR) throw new RespProtocolError('expected_dollar', `Protocol error: expected '$', got '${printable(buf[pos]!)}'`);
        const cr = this.scanHeader(buf, pos + 1, end);
        if (cr === -1 || cr + 1 >= end) return this.waitLine(pos, CR);
        if (cr - pos > RESP_LINE_BYTES_MAX) throw new RespProtocolError('bulk_count_too_big', 'Protocol error: too big bulk count string');
        const len = this.headerValue;
        if (Number.isNaN(len) || len < 0 || len > this.limits.bulkBytesMax) throw new RespProtocolError('invalid_bulk_length', 'Protocol error: invalid bulk length');
        this.commandBytes += len + ARG_OVERHEAD_BYTES;
        if (this.commandBytes > this.limits.commandBytesMax) throw new RespProtocolError('command_too_big', 'Protocol error: too big request');
        pos = cr + 2;
        this.bulkLen = len;
      }
      const len = this.bulkLen;
      if (end - pos < len + 2) {
        this.wait = Wait.Bytes;
        this.bytesNeeded = len + 2;
        return pos;
      }
      this.args.push(argView(buf, pos, len));
      pos += len + 2; // like Redis, the CRLF after a bulk is skipped unchecked
      this.bulkLen = -1;
      if (--this.remaining === 0) {
        const args = this.args;
        this.args = [];
        this.onCommand(args);
      }
    }
  }

  /**
   * The common case in one pass: a whole `*N\r\n$len\r\n...` command
   * already in `buf` at `pos`, with plain headers (digits without sign or
   * leading zero) and every limit respected. Delivers it and returns where
   * the next command starts; returns -1, having changed nothing, for
   * anything else (incomplete, unusual or faulty), which parse() then
   * handles byte by byte with its exact errors.
   */
  private wholeCommand(buf: Buffer, pos: number, end: number): number {
    let i = pos + 1;
    let count = 0;
    let c = i < end ? buf[i]! : 0;
    if (c < 0x31 || c > 0x39) return -1;
    for (; i < end; i++) {
      c = buf[i]!;
      if (c < 0x30 || c > 0x39) break;
      count = count * 10 + (c - 0x30);
    }
    if (c !== CR || i - pos > 8 || count > RESP_ARGS_MAX) return -1;
    i += 2;
    // Headers and bounds first: no view is made for a command that is not all here.
    const bulkMax = this.limits.bulkBytesMax;
    const commandMax = this.limits.commandBytesMax;
    const firstArg = i;
    let commandBytes = 0;
    for (let n = 0; n < count; n++) {
      if (i >= end || buf[i] !== DOLLAR) return -1;
      const lenStart = ++i;
      let len = 0;
      for (; i < end; i++) {
        c = buf[i]!;
        if (c < 0x30 || c > 0x39) break;
        len = len * 10 + (c - 0x30);
      }
      const digits = i - lenStart;
      if (c !== CR || digits === 0 || digits > 10 || (digits > 1 && buf[lenStart] === 0x30) || len > bulkMax) return -1;
      commandBytes += len + ARG_OVERHEAD_BYTES;
      if (commandBytes > commandMax) return -1;
      i += 2 + len + 2; // like Redis, the bytes after CR and after the bulk are not checked
      if (i > end) return -1;
    }
    const args: Buffer[] = [];
    i = firstArg;
    for (let n = 0; n < count; n++) {
      let len = 0;
      for (i++; (c = buf[i]!) !== CR; i++) len = len * 10 + (c - 0x30);
      i += 2;
      args.push(argView(buf, i, len));
      i += len + 2;
    }
    this.onCommand(args);
    return i;
  }

  /**
   * Scans a `*`/`$` header from `start` (after the type byte) to its CR and
   * parses it on the way, in the manner of Redis's string2ll: optional `-`,
   * digits, no leading zeros, no `+` or spaces. Sets `headerValue` (NaN when
   * invalid or past 2^53, which is over every bound); returns the CR's index,
   * or -1 when it has not arrived. A loop in JS: Buffer#indexOf is a call
   * into C++ per header, which costs more than the scan of a few bytes.
   */
  private scanHeader(buf: Buffer, start: number, end: number): number {
    let i = start;
    const negative = i < end && buf[i] === 0x2d;
    if (negative) i++;
    const digitsStart = i;
    let n = 0;
    let valid = true;
    for (; i < end; i++) {
      const c = buf[i]!;
      if (c === CR) break;
      const d = c - 0x30;
      if (d < 0 || d > 9) valid = false;
      else n = n * 10 + d;
    }
    if (i >= end) return -1;
    const digits = i - digitsStart;
    if (digits === 0 || digits > 15 || (buf[digitsStart] === 0x30 && (digits > 1 || negative))) valid = false;
    this.headerValue = valid ? (negative ? -n : n) : NaN;
    return i;
  }

  private waitLine(pos: number, term: number): number {
    this.wait = Wait.Line;
    this.lineTerm = term;
    return pos;
  }
}

/** The offending byte as Redis prints it with %c; CR/LF would break the reply line, so they become spaces. */
function printable(byte: number): string {
  return byte === CR || byte === LF ? ' ' : String.fromCharCode(byte);
}

const SPACE = 0x20;
const TAB = 0x09;
const DQUOTE = 0x22;
const SQUOTE = 0x27;
const BACKSLASH = 0x5c;

/** C isspace in the "C" locale. */
function isSpace(c: number): boolean {
  return c === SPACE || (c >= 0x09 && c <= 0x0d);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/**
 * sdssplitargs over `buf[start, end)`: space-separated words, "double" quotes
 * with \n \r \t \b \a \xHH and \<any> escapes, 'single' quotes with \' only;
 * a closing quote must be followed by a space or the end. As in C, a NUL
 * byte ends the line. Unquoted words are views into `buf`.
 */
export function splitInline(buf: Buffer, start: number, end: number): Buffer[] {
  const nul = buf.indexOf(0, start);
  if (nul !== -1 && nul < end) end = nul;
  const args: Buffer[] = [];
  let p = start;
  for (;;) {
    while (p < end && isSpace(buf[p]!)) p++;
    if (p >= end) return args;
    const wordStart = p;
    while (p < end) {
      const c = buf[p]!;
      if (c === SPACE || c === TAB || c === CR || c === LF || c === DQUOTE || c === SQUOTE) break;
      p++;
    }
    if (p >= end || buf[p] !== DQUOTE && buf[p] !== SQUOTE) {
      args.push(buf.subarray(wordStart, p));
      continue;
    }
    // A quote inside or at the start of a word: build the word byte by byte.
    const out: number[] = [];
    for (let i = wordStart; i < p; i++) out.push(buf[i]!);
    p = quotedWord(buf, p, end, out);
    args.push(Buffer.from(out));
  }
}

/** Continues a word at a quote in `buf[p]`; returns the index after the word. */
function quotedWord(buf: Buffer, p: number, end: number, out: number[]): number {
  let inDouble = false;
  let inSingle = false;
  for (;;) {
    const c = p < end ? buf[p]! : 0;
    if (inDouble) {
      if (c === 0) throw unbalanced();
      if (c === BACKSLASH && p + 3 < end && buf[p + 1] === 0x78 && hexValue(buf[p + 2]!) >= 0 && hexValue(buf[p + 3]!) >= 0) {
        out.push(hexValue(buf[p + 2]!) * 16 + hexValue(buf[p + 3]!));
        p += 3;
      } else if (c === BACKSLASH && p + 1 < end) {
        p++;
        const e = buf[p]!;
        out.push(e === 0x6e ? LF : e === 0x72 ? CR : e === 0x74 ? TAB : e === 0x62 ? 0x08 : e === 0x61 ? 0x07 : e);
      } else if (c === DQUOTE) {
        if (p + 1 < end && !isSpace(buf[p + 1]!)) throw unbalanced();
        return p + 1;
      } else {
        out.push(c);
      }
    } else if (inSingle) {
      if (c === 0) throw unbalanced();
      if (c === BACKSLASH && p + 1 < end && buf[p + 1] === SQUOTE) {
        p++;
        out.push(SQUOTE);
      } else if (c === SQUOTE) {
        if (p + 1 < end && !isSpace(buf[p + 1]!)) throw unbalanced();
        return p + 1;
      } else {
        out.push(c);
      }
    } else if (c === SPACE || c === LF || c === CR || c === TAB || c === 0) {
      return p;
    } else if (c === DQUOTE) {
      inDouble = true;
    } else if (c === SQUOTE) {
      inSingle = true;
    } else {
      out.push(c);
    }
    p++;
  }
}

function unbalanced(): RespProtocolError {
  return new RespProtocolError('unbalanced_quotes', 'Protocol error: unbalanced quotes in request');
}
