import type { Hlc } from './hlc.js';

/**
 * One version of a key on a replica: the write that made it. Keys are byte
 * strings held as latin1 JavaScript strings (one char per byte), so a Map
 * can index them; values are bytes. A tombstone has no value.
 */
export interface KvEntry {
  readonly key: string;
  /** Undefined: a tombstone (the key was deleted). */
  readonly value: Uint8Array | undefined;
  readonly hlc: Hlc;
  /** The writer's node id: ties on hlc go to the higher id. */
  readonly node: string;
  /** Wall-clock ms after which the value reads as absent; 0: never. */
  readonly expiresMs: number;
  /**
   * Where the node's store holds this version: its commit and its place in
   * it (src/store/kv-store.ts sets them; the core never reads them). On the
   * entry itself so that the store learns which records turned to garbage
   * without a lookup per record. Entries made on hot paths start with
   * `storedIn: undefined, storedAt: 0`, so setting them keeps their shape.
   */
  storedIn?: object | undefined;
  storedAt?: number;
}

/** What anti-entropy compares: an entry without its value. */
export interface KvVersion {
  readonly key: string;
  readonly hlc: Hlc;
  readonly node: string;
  readonly deleted: boolean;
}

/** >0 when a's write wins over b's, <0 when b's wins, 0 for the same write. */
export function compareWrites(a: { hlc: Hlc; node: string }, b: { hlc: Hlc; node: string }): number {
  if (a.hlc !== b.hlc) return a.hlc > b.hlc ? 1 : -1;
  if (a.node === b.node) return 0;
  return a.node > b.node ? 1 : -1;
}

export function isLive(entry: KvEntry, wallMs: number): boolean {
  return entry.value !== undefined && (entry.expiresMs === 0 || entry.expiresMs > wallMs);
}

export function versionOf(entry: KvEntry): KvVersion {
  return { key: entry.key, hlc: entry.hlc, node: entry.node, deleted: entry.value === undefined };
}

// 32-bit FNV-1a over a string's char codes, then murmur3's finaliser so that
// near keys land in far buckets. Not cryptographic: it only has to spread.
export function hashString32(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seeds of the key's two fingerprint hashes; the first is also what buckets and placement hash with. */
export const KEY_SEED_A = 0x811c9dc5;
export const KEY_SEED_B = 0x01234567;
const NODE_SEED_DELETED = 0x9e3779b9;
const NODE_SEED_LIVE = 0x7f4a7c15;

/** The node part of a version's fingerprint. */
export function nodeHash(node: string, deleted: boolean): number {
  return hashString32(node, deleted ? NODE_SEED_DELETED : NODE_SEED_LIVE);
}

/**
 * XORs a version's fingerprint into `out[at]` (low half) and `out[at + 1]`
 * (high half), from its key's two hashes (seeds KEY_SEED_A and KEY_SEED_B)
 * and its node hash: what `versionFingerprint` computes, without the array.
 */
export function xorFingerprint(out: Uint32Array, at: number, keyA: number, keyB: number, hlc: Hlc, node: number): void {
  const hlcLow = hlc % 0x1_0000_0000;
  const hlcHigh = Math.floor(hlc / 0x1_0000_0000);
  out[at] = out[at]! ^ fmix32(keyA ^ Math.imul(hlcLow, 0xcc9e2d51) ^ node);
  out[at + 1] = out[at + 1]! ^ fmix32(keyB ^ Math.imul(hlcHigh + 0x1b873593, 0x85ebca6b) ^ fmix32(hlcLow + node));
}

/**
 * A 64-bit fingerprint of a version as two 32-bit halves. Buckets XOR the
 * fingerprints of their entries, so a bucket's fingerprint changes with any
 * write and two replicas agree on a bucket exactly when (with probability
 * 1 - 2^-64) they hold the same versions in it.
 */
export function versionFingerprint(key: string, hlc: Hlc, node: string, deleted: boolean): [number, number] {
  const out = new Uint32Array(2);
  xorFingerprint(out, 0, hashString32(key, KEY_SEED_A), hashString32(key, KEY_SEED_B), hlc, nodeHash(node, deleted));
  return [out[0]!, out[1]!];
}
