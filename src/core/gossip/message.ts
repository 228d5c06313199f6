/**
 * Gossip messages (seed 003, DESIGN.md section 2). Every message belongs to a
 * stream: its origin node in one incarnation. Within a stream the origin
 * numbers its messages 1, 2, 3, ... — which makes "what do you lack?" a cheap
 * question (per-stream high-water marks) and needs no counter on disk: a
 * restarted node starts a new stream.
 */
export interface GossipMessage {
  /** base62 of the first 64 bits of SHA-256(origin, incarnation, seq, text). */
  readonly id: string;
  readonly origin: string;
  readonly incarnation: number;
  readonly seq: number;
  readonly text: string;
  /** Origin's wall clock at submit (ms). */
  readonly createdMs: number;
  /** Node ids the message travelled through, origin first (seed 003's "Recvd From"). */
  readonly path: readonly string[];
}

/**
 * SHA-256 over the UTF-8 bytes of a string, injected (core does no I/O and
 * imports no node: module). The digest comes as bytes, or as a string of one
 * char per byte (latin1): Node's one-shot hash returns that without the
 * Buffer it allocates for bytes, which was most of the cost of an id.
 */
export type Sha256 = (utf8: string) => Uint8Array | string;

export const MESSAGE_BYTES_MAX_DEFAULT = 64 * 1024;
/** A path longer than this is cut to its last entries: it is advisory, never trusted for routing. */
export const PATH_LENGTH_MAX = 64;
export const MESSAGE_ID_CHARS = 11;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const encoder = new TextEncoder();

/** Byte i of a digest given as bytes or as a latin1 string. */
function byteAt(d: Uint8Array | string, i: number): number {
  return typeof d === 'string' ? d.charCodeAt(i) : d[i]!;
}

export function streamKey(origin: string, incarnation: number): string {
  return `${origin}/${incarnation}`;
}

export function messageId(sha256: Sha256, origin: string, incarnation: number, seq: number, text: string): string {
  // NUL separators: node ids cannot contain NUL, so fields cannot run together.
  // The string goes to the hash as it is (hashed as UTF-8; a lone surrogate as U+FFFD, as TextEncoder writes it).
  const d = sha256(`${origin}\u0000${incarnation}\u0000${seq}\u0000${text}`);
  // The first 64 bits as two 32-bit halves, divided by 62 digit by digit in
  // plain numbers (every intermediate stays below 2^38): BigInt arithmetic
  // here cost more than the hash itself, on every message a node receives.
  let hi = ((byteAt(d, 0) << 24) | (byteAt(d, 1) << 16) | (byteAt(d, 2) << 8) | byteAt(d, 3)) >>> 0;
  let lo = ((byteAt(d, 4) << 24) | (byteAt(d, 5) << 16) | (byteAt(d, 6) << 8) | byteAt(d, 7)) >>> 0;
  let out = '';
  for (let i = 0; i < MESSAGE_ID_CHARS; i++) {
    const hiRem = hi % 62;
    hi = (hi - hiRem) / 62;
    const rest = hiRem * 0x1_0000_0000 + lo;
    const rem = rest % 62;
    lo = (rest - rem) / 62;
    out = BASE62[rem]! + out;
  }
  return out;
}

export function isMessageId(id: string): boolean {
  return id.length === MESSAGE_ID_CHARS && /^[0-9A-Za-z]+$/.test(id);
}

export function utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

export type TextProblem = { readonly code: 'empty' } | { readonly code: 'too_large'; readonly bytes: number; readonly maxBytes: number };

/** Why `text` cannot be a message, or undefined when it can. */
export function checkText(text: string, maxBytes: number): TextProblem | undefined {
  if (text.length === 0) return { code: 'empty' };
  // A UTF-16 code unit is at most 3 UTF-8 bytes: most texts need no encoding to be judged.
  if (text.length * 3 <= maxBytes) return undefined;
  const bytes = utf8Bytes(text);
  if (bytes > maxBytes) return { code: 'too_large', bytes, maxBytes };
  return undefined;
}
