// The hand-written kv batch codec (src/runtime/kv-batch-codec.ts) against the
// generated @bufbuild/protobuf code: the encoder writes the same bytes as
// encodeEnvelopeFrame, and for any input, valid or not, the decoder either
// declines (undefined: the generic path decides) or yields exactly what the
// generic decode + entryFromWire yields; it never throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import type { KvEntry } from '../../src/core/kv/entry.js';
import { decodeKvBatchEnvelope, encodeKvBatchFrame } from '../../src/runtime/kv-batch-codec.js';
import type { DecodedKvBatch } from '../../src/runtime/kv-batch-codec.js';
import { entryFromWire, entryToWire } from '../../src/runtime/kv-codec.js';
import { EnvelopeSchema, FRAME_HEADER_BYTES, KvBatchSchema, KvEntrySchema, decodeEnvelope, encodeEnvelopeFrame } from '../../src/wire/index.js';

const LIMITS = { keyBytesMax: 64, valueBytesMax: 4_096 };

/** xorshift32: the same cases on every run. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

function bytes(r: (n: number) => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = r(256);
  return out;
}

const NODES = ['n1', 'node-2', 'a', 'x'.repeat(256), 'nø', 'n🌿', '\ufeffbom'];
const HLCS = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, 1_700_000_000_000 * 1024 + 1023, Number.MAX_SAFE_INTEGER];

function randomEntry(r: (n: number) => number): KvEntry {
  const keyLength = r(5) === 0 ? 1 + r(LIMITS.keyBytesMax) : 1 + r(16);
  const key = Buffer.from(bytes(r, keyLength)).toString('latin1');
  const kind = r(10);
  const value = kind === 0 ? undefined : kind === 1 ? new Uint8Array(0) : bytes(r, kind === 2 ? r(LIMITS.valueBytesMax) : r(40));
  const hlc = r(3) === 0 ? HLCS[r(HLCS.length)]! : 1_700_000_000_000 * 1024 + r(1_000_000);
  const expiresMs = value === undefined || r(3) !== 0 ? 0 : HLCS[r(HLCS.length)]!;
  return { key, value, hlc, node: NODES[r(NODES.length)]!, expiresMs };
}

/** What the generic path makes of a frame payload: the batch, or the error it throws, or another envelope. */
function generic(payload: Uint8Array): DecodedKvBatch | 'throws' | 'other' {
  let env;
  try {
    env = decodeEnvelope(payload);
  } catch {
    return 'throws';
  }
  if (env.body.case !== 'kvBatch' || env.requestId !== 0 || env.response) return 'other';
  return { entries: env.body.value.entries.map((w) => entryFromWire(w, LIMITS)), repair: env.body.value.repair };
}

/** The hand decoder agrees with the generic one, or declines. */
function assertAgrees(payload: Uint8Array, what: string): DecodedKvBatch | undefined {
  const fast = decodeKvBatchEnvelope(payload, LIMITS);
  if (fast === undefined) return undefined;
  assert.deepStrictEqual(fast, generic(payload), what);
  return fast;
}

const payloadOf = (frame: Uint8Array): Uint8Array => frame.subarray(FRAME_HEADER_BYTES);

test('the encoder writes the bytes encodeEnvelopeFrame writes', () => {
  const r = rng(1);
  for (let round = 0; round < 400; round++) {
    const entries = Array.from({ length: round % 7 === 0 ? 0 : 1 + r(20) }, () => randomEntry(r));
    const repair = r(2) === 0;
    const mine = encodeKvBatchFrame(entries, repair);
    const theirs = encodeEnvelopeFrame({ body: { case: 'kvBatch', value: { entries: entries.map(entryToWire), repair } } });
    assert.deepStrictEqual(Buffer.from(mine), Buffer.from(theirs), `round ${round}`);
  }
});

test('the decoder reads back what was written, as the generic path does', () => {
  const r = rng(2);
  for (let round = 0; round < 400; round++) {
    const entries = Array.from({ length: r(20) }, () => randomEntry(r));
    const payload = payloadOf(encodeKvBatchFrame(entries, r(2) === 0));
    const plainNodes = entries.every((e) => Buffer.byteLength(e.node) === e.node.length);
    const fast = assertAgrees(payload, `round ${round}`);
    // Every ASCII-only batch takes the fast path; others are left to the generic decoder.
    assert.equal(fast !== undefined, plainNodes, `round ${round}`);
  }
});

test('values are copied out of the frame, so the frame can be reused or dropped', () => {
  const value = new Uint8Array([1, 2, 3, 4]);
  const frame = Buffer.from(encodeKvBatchFrame([{ key: 'k', value, hlc: 5, node: 'n1', expiresMs: 0 }]));
  const got = decodeKvBatchEnvelope(frame.subarray(FRAME_HEADER_BYTES), LIMITS)!.entries[0]!;
  assert.ok(!Buffer.isBuffer(got.value));
  assert.notEqual(got.value!.buffer, frame.buffer);
  frame.fill(0);
  assert.deepStrictEqual([...got.value!], [1, 2, 3, 4]);
});

test('out-of-range fields make that entry invalid, as entryFromWire does, and the rest still count', () => {
  const ok: KvEntry = { key: 'k', value: new Uint8Array([1]), hlc: 9, node: 'n1', expiresMs: 0, storedIn: undefined, storedAt: 0 };
  const cases: [string, object][] = [
    ['key over the limit', { key: new Uint8Array(LIMITS.keyBytesMax + 1).fill(0x61) }],
    ['empty key', { key: new Uint8Array(0) }],
    ['value over the limit', { value: new Uint8Array(LIMITS.valueBytesMax + 1) }],
    ['tombstone with a value over the limit', { value: new Uint8Array(LIMITS.valueBytesMax + 1), deleted: true }],
    ['hlc past 2^53', { hlc: 2n ** 53n }],
    ['hlc of 8 varint bytes', { hlc: 2n ** 55n + 3n }],
    ['expiry past 2^53', { expiresMs: 2n ** 53n + 1n }],
    ['no node', { node: '' }],
    ['node id over 256 bytes', { node: 'n'.repeat(257) }],
  ];
  for (const [what, fields] of cases) {
    const bad = create(KvEntrySchema, { key: new Uint8Array([0x6b]), hlc: 9n, node: 'n1', ...fields });
    const payload = toBinary(EnvelopeSchema, create(EnvelopeSchema, { body: { case: 'kvBatch', value: { entries: [entryToWire(ok), bad, entryToWire(ok)] } } }));
    const fast = assertAgrees(payload, what);
    assert.ok(fast, what);
    assert.equal(fast.entries.length, 3, what);
    assert.equal(fast.entries[1], undefined, what);
    assert.deepStrictEqual(fast.entries[0], { ...ok, value: new Uint8Array([1]) }, what);
  }
});

test('unknown fields are skipped at every level, or left to the generic decoder', () => {
  const unknown = [
    { no: 7, wireType: 0, data: new Uint8Array([0x96, 0x01]) },
    { no: 99, wireType: 2, data: new Uint8Array([3, 1, 2, 3]) },
    { no: 1000, wireType: 1, data: new Uint8Array(8) },
    { no: 12, wireType: 5, data: new Uint8Array(4) },
  ];
  const entry = create(KvEntrySchema, { key: new Uint8Array([0x6b]), value: new Uint8Array([7]), hlc: 3n, node: 'n1' });
  entry.$unknown = unknown;
  const batch = create(KvBatchSchema, { entries: [entry], repair: true });
  batch.$unknown = unknown;
  const payload = toBinary(EnvelopeSchema, create(EnvelopeSchema, { body: { case: 'kvBatch', value: batch } }));
  const fast = assertAgrees(payload, 'unknown fields');
  assert.ok(fast);
  assert.equal(fast.repair, true);
  assert.equal(fast.entries[0]?.key, 'k');
  // An envelope with another field besides the batch: not the plain form.
  const withId = toBinary(EnvelopeSchema, create(EnvelopeSchema, { requestId: 3, body: { case: 'kvBatch', value: batch } }));
  assert.equal(decodeKvBatchEnvelope(withId, LIMITS), undefined);
  const other = toBinary(EnvelopeSchema, create(EnvelopeSchema, { body: { case: 'ping', value: { sentMs: 1n } } }));
  assert.equal(decodeKvBatchEnvelope(other, LIMITS), undefined);
});

test('the plain form in other spellings: repeated fields (the last wins), fields out of order, long varints', () => {
  const field = (no: number, wire: number, body: number[]) => [(no << 3) | wire, ...body];
  const len = (no: number, data: number[]) => field(no, 2, [data.length, ...data]);
  const entry = [
    ...field(3, 0, [0x85, 0x80, 0x80, 0x00]), // hlc 5, non-minimal
    ...len(4, [0x6e, 0x31]),
    ...len(1, [0x61]),
    ...len(1, [0x62]), // key: the last one, 'b'
    ...len(2, [9]),
    ...field(6, 0, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // expiry 2^49
  ];
  const batch = [...field(2, 0, [1]), ...len(1, entry), ...field(2, 0, [0])];
  const payload = new Uint8Array([0xb2, 0x04, batch.length, ...batch]);
  const fast = assertAgrees(payload, 'spellings');
  assert.ok(fast);
  assert.deepStrictEqual(fast, { entries: [{ key: 'b', value: new Uint8Array([9]), hlc: 5, node: 'n1', expiresMs: 2 ** 49, storedIn: undefined, storedAt: 0 }], repair: false });
  // A 10-byte varint: the generic decoder's (it truncates past 64 bits).
  const long = [...len(1, [0x61]), ...len(4, [0x6e]), ...field(3, 0, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02])];
  const longBatch = len(1, long);
  assert.equal(decodeKvBatchEnvelope(new Uint8Array([0xb2, 0x04, longBatch.length, ...longBatch]), LIMITS), undefined);
});

test('malformed and mutated frames: the decoder never throws, and agrees whenever it answers', () => {
  const r = rng(3);
  let answered = 0;
  let declined = 0;
  for (let round = 0; round < 3_000; round++) {
    const entries = Array.from({ length: 1 + r(4) }, () => ({ ...randomEntry(r), node: 'n1' }));
    const clean = payloadOf(encodeKvBatchFrame(entries, r(2) === 0));
    let payload: Uint8Array;
    switch (r(4)) {
      case 0: {
        payload = Uint8Array.from(clean);
        for (let i = 0, n = 1 + r(3); i < n; i++) {
          const at = r(payload.length);
          payload[at] = payload[at]! ^ (1 << r(8));
        }
        break;
      }
      case 1:
        payload = clean.slice(0, r(clean.length));
        break;
      case 2: {
        const at = r(clean.length);
        payload = new Uint8Array([...clean.subarray(0, at), ...bytes(r, 1 + r(4)), ...clean.subarray(at)]);
        break;
      }
      default:
        payload = new Uint8Array([0xb2, 0x04, ...bytes(r, r(40))]);
    }
    let fast: DecodedKvBatch | undefined;
    assert.doesNotThrow(() => (fast = decodeKvBatchEnvelope(payload, LIMITS)), `round ${round}`);
    if (fast === undefined) {
      declined += 1;
      continue;
    }
    answered += 1;
    assert.deepStrictEqual(fast, generic(payload), `round ${round}: ${Buffer.from(payload).toString('hex')}`);
  }
  assert.ok(answered > 100 && declined > 100, `answered ${answered}, declined ${declined}`);
});

test('a frame whose batch length runs past its end, or stops short of it, is declined', () => {
  const payload = payloadOf(encodeKvBatchFrame([{ key: 'k', value: new Uint8Array([1]), hlc: 1, node: 'n1', expiresMs: 0 }]));
  assert.equal(decodeKvBatchEnvelope(payload.subarray(0, payload.length - 1), LIMITS), undefined);
  assert.equal(generic(payload.subarray(0, payload.length - 1)), 'throws');
  assert.equal(decodeKvBatchEnvelope(new Uint8Array([...payload, 0x08, 0x01]), LIMITS), undefined);
  // An announced length of 2^28 and more: declined at once, without reading on.
  assert.equal(decodeKvBatchEnvelope(new Uint8Array([0xb2, 0x04, 0x80, 0x80, 0x80, 0x80, 0x01]), LIMITS), undefined);
});
