import type { KvEntry } from '../core/kv/entry.js';
import { varintBytes, writeBytes, writeLatin1, writeVarint } from '../wire/varint.js';

/**
 * The records of the cache's log (src/store/kv-store.ts): one blob holds the
 * versions of one group commit, each as
 *
 *   kind     u8       0 value, 1 tombstone, 2 forget (the key is dropped)
 *   key      varint length + bytes (the latin1 key string, one char per byte)
 *   -- value and tombstone only:
 *   hlc      varint
 *   node     varint length + UTF-8 bytes
 *   -- value only:
 *   expires  varint (ms, 0: never)
 *   value    varint length + bytes
 *
 * Varints are little-endian base 128 of non-negative safe integers. Decoding
 * checks every length against the blob and throws on anything malformed (a
 * damaged file must not load as a different cache).
 */
export const RECORD_VALUE = 0;
export const RECORD_TOMBSTONE = 1;
export const RECORD_FORGET = 2;
const VARINT_BYTES_MAX = 8;

/** Writes records into one blob; the node ids' bytes are remembered (a commit has few writers). */
export class LogBlobWriter {
  private lastNode = '';
  private lastNodeBytes: Buffer = Buffer.alloc(0);

  private nodeBytes(node: string): Buffer {
    if (node !== this.lastNode) {
      this.lastNode = node;
      this.lastNodeBytes = Buffer.from(node, 'utf8');
    }
    return this.lastNodeBytes;
  }

  /** The blob of these versions (`skip[i]` true: leave entry i out). */
  entries(entries: readonly KvEntry[], skip?: readonly boolean[]): Buffer {
    let size = 0;
    for (let i = 0; i < entries.length; i++) {
      if (skip?.[i]) continue;
      const e = entries[i]!;
      const node = this.nodeBytes(e.node).length;
      size += 1 + varintBytes(e.key.length) + e.key.length + varintBytes(e.hlc) + varintBytes(node) + node;
      if (e.value !== undefined) size += varintBytes(e.expiresMs) + varintBytes(e.value.length) + e.value.length;
    }
    const out = Buffer.allocUnsafe(size);
    let pos = 0;
    for (let i = 0; i < entries.length; i++) {
      if (skip?.[i]) continue;
      const e = entries[i]!;
      const value = e.value;
      out[pos++] = value === undefined ? RECORD_TOMBSTONE : RECORD_VALUE;
      pos = writeVarint(out, pos, e.key.length);
      pos = writeLatin1(out, pos, e.key);
      pos = writeVarint(out, pos, e.hlc);
      const node = this.nodeBytes(e.node);
      pos = writeVarint(out, pos, node.length);
      pos = writeBytes(out, pos, node);
      if (value !== undefined) {
        pos = writeVarint(out, pos, e.expiresMs);
        pos = writeVarint(out, pos, value.length);
        pos = writeBytes(out, pos, value);
      }
    }
    if (pos !== size) throw new Error(`cache log writer wrote ${pos} of ${size} bytes`);
    return out;
  }

  /** The blob of forget records for these keys. */
  forgets(keys: readonly string[]): Buffer {
    let size = 0;
    for (const k of keys) size += 1 + varintBytes(k.length) + k.length;
    const out = Buffer.allocUnsafe(size);
    let pos = 0;
    for (const k of keys) {
      out[pos++] = RECORD_FORGET;
      pos = writeVarint(out, pos, k.length);
      pos = writeLatin1(out, pos, k);
    }
    return out;
  }
}

export class LogBlobError extends Error {
  override name = 'LogBlobError';
}

/**
 * Reads the records of one blob in order. `next()` moves to the next record
 * (false at the end); the fields are then those of that record, and
 * `recordStart`/`recordEnd` bound its bytes (the cleaner copies records whole).
 */
export class LogBlobReader {
  private readonly u8: Uint8Array;
  private readonly text: Buffer;
  private pos = 0;
  kind = RECORD_VALUE;
  key = '';
  hlc = 0;
  node = '';
  expiresMs = 0;
  recordStart = 0;
  recordEnd = 0;
  private valueStart = 0;
  private valueEnd = 0;

  constructor(blob: Uint8Array) {
    this.u8 = new Uint8Array(blob.buffer, blob.byteOffset, blob.byteLength);
    this.text = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  }

  next(): boolean {
    if (this.pos >= this.u8.length) return false;
    this.recordStart = this.pos;
    this.kind = this.u8[this.pos++]!;
    if (this.kind > RECORD_FORGET) throw new LogBlobError(`cache log record of unknown kind ${this.kind}`);
    const keyEnd = this.lengthEnd();
    this.key = this.text.toString('latin1', this.pos, keyEnd);
    this.pos = keyEnd;
    this.valueStart = this.valueEnd = 0;
    if (this.kind === RECORD_FORGET) {
      this.hlc = this.expiresMs = 0;
      this.node = '';
    } else {
      this.hlc = this.varint();
      const nodeEnd = this.lengthEnd();
      if (!this.sameNode(this.pos, nodeEnd)) this.node = this.text.toString('utf8', this.pos, nodeEnd);
      this.pos = nodeEnd;
      this.expiresMs = 0;
      if (this.kind === RECORD_VALUE) {
        this.expiresMs = this.varint();
        this.valueEnd = this.lengthEnd();
        this.valueStart = this.pos;
        this.pos = this.valueEnd;
      }
    }
    this.recordEnd = this.pos;
    return true;
  }

  /** The record's value, copied out of the blob (undefined for a tombstone or forget record). */
  value(): Uint8Array | undefined {
    return this.kind === RECORD_VALUE ? this.u8.slice(this.valueStart, this.valueEnd) : undefined;
  }

  /** The record's bytes as written (a view into the blob). */
  bytes(): Uint8Array {
    return this.u8.subarray(this.recordStart, this.recordEnd);
  }

  /** The record as an entry (value or tombstone records). */
  entry(): KvEntry {
    return { key: this.key, value: this.value(), hlc: this.hlc, node: this.node, expiresMs: this.expiresMs, storedIn: undefined, storedAt: 0 };
  }

  /**
   * Whether bytes [start, stop) are the node id read last (a blob has few
   * writers): the cleaner reads every record, and a string per record is garbage.
   */
  private sameNode(start: number, stop: number): boolean {
    const last = this.node;
    if (last.length !== stop - start || last.length === 0) return false;
    for (let i = 0; i < last.length; i++) {
      const c = last.charCodeAt(i);
      if (c > 0x7f || c !== this.u8[start + i]) return false;
    }
    return true;
  }

  private varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (this.pos >= this.u8.length) break;
      const b = this.u8[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(value)) break;
        return value;
      }
      scale *= 0x80;
    }
    throw new LogBlobError('malformed varint in a cache log record');
  }

  private lengthEnd(): number {
    const length = this.varint();
    const end = this.pos + length;
    if (end > this.u8.length) throw new LogBlobError('cache log record runs past its blob');
    return end;
  }
}
