import { create } from '@bufbuild/protobuf';
import type { KvEntry, KvVersion } from '../core/kv/entry.js';
import { isHlc } from '../core/kv/hlc.js';
import { KvEntrySchema } from '../wire/index.js';
import type { KvEntry as WireEntry, KvVersion as WireVersion } from '../wire/index.js';

/** Conversions between the wire's cache messages and the core's; undefined for a field out of range. */
export const NODE_ID_BYTES_MAX = 256;

export function keyToBytes(key: string): Uint8Array {
  return Buffer.from(key, 'latin1');
}

export function keyFromBytes(bytes: Uint8Array): string {
  // RESP arguments are Buffers already: no second view per lookup.
  if (Buffer.isBuffer(bytes)) return bytes.toString('latin1');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

export function entryToWire(e: KvEntry): WireEntry {
  return create(KvEntrySchema, {
    key: keyToBytes(e.key),
    value: e.value ?? new Uint8Array(0),
    hlc: BigInt(e.hlc),
    node: e.node,
    deleted: e.value === undefined,
    expiresMs: BigInt(e.expiresMs),
  });
}

export function entryFromWire(w: WireEntry, limits: { keyBytesMax: number; valueBytesMax: number }): KvEntry | undefined {
  const hlc = Number(w.hlc);
  const expiresMs = Number(w.expiresMs);
  if (!isHlc(hlc) || !Number.isSafeInteger(expiresMs) || expiresMs < 0) return undefined;
  if (w.key.length === 0 || w.key.length > limits.keyBytesMax || w.value.length > limits.valueBytesMax) return undefined;
  if (w.node.length === 0 || w.node.length > NODE_ID_BYTES_MAX) return undefined;
  // A copy: the decoded bytes are a view into the whole received frame, which
  // a long-lived value would otherwise keep alive (and Buffer's own slice()
  // would share that memory too).
  return { key: keyFromBytes(w.key), value: w.deleted ? undefined : new Uint8Array(w.value), hlc, node: w.node, expiresMs: w.deleted ? 0 : expiresMs, storedIn: undefined, storedAt: 0 };
}

export function versionToWire(v: KvVersion): Omit<WireVersion, '$typeName' | '$unknown'> {
  return { key: keyToBytes(v.key), hlc: BigInt(v.hlc), node: v.node, deleted: v.deleted };
}

export function versionFromWire(w: WireVersion): KvVersion | undefined {
  const hlc = Number(w.hlc);
  if (!isHlc(hlc) || w.key.length === 0 || w.node.length === 0 || w.node.length > NODE_ID_BYTES_MAX) return undefined;
  return { key: keyFromBytes(w.key), hlc, node: w.node, deleted: w.deleted };
}
