import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import type { GossipMessage } from '../../src/core/gossip/message.js';
import { messageFromWire, messageToWire } from '../../src/runtime/gossip-codec.js';
import { decodeGossipBatch, decodeGossipBatchPayload, encodeGossipMessage, gossipBatchFrame, gossipEventFrame, pathEntryBytes, withPathEntry } from '../../src/runtime/gossip-frame.js';
import { decodeEnvelope, encodeEnvelopeFrame, EnvelopeSchema, FRAME_HEADER_BYTES, GossipMessageSchema } from '../../src/wire/index.js';

/** The hand-written gossip frame codec writes and reads exactly what the generated protobuf code does. */

function message(over: Partial<GossipMessage> = {}): GossipMessage {
  return { id: 'AbC0123xyz9', origin: 'n1', incarnation: 1_700_000_000_123, seq: 42, text: 'hello', createdMs: 1_763_000_000_000, path: ['n1', 'n2'], ...over };
}

const samples: GossipMessage[] = [
  message(),
  message({ text: 'héllo wörld ✓ 😀', path: [] }),
  message({ incarnation: 0, seq: 1, createdMs: 0 }),
  message({ seq: Number.MAX_SAFE_INTEGER, incarnation: Number.MAX_SAFE_INTEGER, createdMs: Number.MAX_SAFE_INTEGER }),
  message({ text: 'x'.repeat(70_000), path: Array.from({ length: 64 }, (_, i) => `node-${i}`) }),
  message({ text: '\ufeffbom first', id: '', origin: '' }),
  message({ text: 'lone \ud800 surrogate', path: ['', 'a'] }),
  message({ seq: 127, incarnation: 128, createdMs: 2 ** 32 }),
];

function generatedFrame(ms: readonly GossipMessage[]): Uint8Array {
  return encodeEnvelopeFrame({ body: { case: 'gossipBatch', value: { messages: ms.map(messageToWire) } } });
}

function handFrame(ms: readonly GossipMessage[]): Uint8Array {
  return gossipBatchFrame(ms.map(encodeGossipMessage));
}

function generatedDecode(payload: Uint8Array): GossipMessage[] {
  const env = decodeEnvelope(payload);
  assert.equal(env.body.case, 'gossipBatch');
  return env.body.value.messages.map((m) => messageFromWire(m)!);
}

test('one message encodes to the bytes of GossipMessageSchema', () => {
  for (const m of samples) assert.deepEqual(Buffer.from(encodeGossipMessage(m)), Buffer.from(toBinary(GossipMessageSchema, messageToWire(m))));
});

test('a batch frame is byte-identical to encodeEnvelopeFrame, for 0, 1 and many messages', () => {
  for (const ms of [[], [samples[0]!], samples]) assert.deepEqual(Buffer.from(handFrame(ms)), Buffer.from(generatedFrame(ms)));
});

test('decoding a canonical batch gives what the generated decoder gives', () => {
  for (const ms of [[], [samples[0]!], samples]) {
    const payload = generatedFrame(ms).subarray(FRAME_HEADER_BYTES);
    const hand = decodeGossipBatchPayload(payload);
    assert.ok(hand, 'canonical batch decoded');
    assert.deepEqual(hand, generatedDecode(payload));
  }
});

test('frames it does not read canonically are left to the generated decoder', () => {
  const wire = messageToWire(samples[0]!);
  const withRequestId = toBinary(EnvelopeSchema, create(EnvelopeSchema, { requestId: 7, body: { case: 'gossipBatch', value: { messages: [wire] } } }));
  assert.equal(decodeGossipBatchPayload(withRequestId), undefined);
  const other = toBinary(EnvelopeSchema, create(EnvelopeSchema, { body: { case: 'ping', value: { sentMs: 1n } } }));
  assert.equal(decodeGossipBatchPayload(other), undefined);
  const payload = generatedFrame([samples[0]!]).subarray(FRAME_HEADER_BYTES);
  // An unknown field (99, varint) after the batch, and one inside a message.
  assert.equal(decodeGossipBatchPayload(Buffer.concat([payload, Buffer.from([0x98, 0x06, 0x01])])), undefined);
  const msg = encodeGossipMessage(samples[0]!);
  const withUnknown = Buffer.concat([Buffer.from(msg), Buffer.from([0x40, 0x05])]);
  const batch = Buffer.concat([Buffer.from([0x0a, withUnknown.length]), withUnknown]);
  const env = Buffer.concat([Buffer.from([0x8a, 0x02, batch.length]), batch]);
  assert.equal(decodeGossipBatchPayload(env), undefined);
  assert.equal(generatedDecode(env)[0]!.text, samples[0]!.text, 'the generated decoder skips the unknown field');
  // seq over 2^53: the generated decoder reads it, and the core conversion refuses it.
  const bigSeq = create(GossipMessageSchema, { ...wire, seq: 2n ** 60n });
  const big = toBinary(EnvelopeSchema, create(EnvelopeSchema, { body: { case: 'gossipBatch', value: { messages: [bigSeq] } } }));
  assert.equal(decodeGossipBatchPayload(big), undefined);
});

test('malformed frames: never read out of bounds; whatever it accepts the generated decoder accepts the same', () => {
  const payload = Buffer.from(generatedFrame(samples.slice(0, 3)).subarray(FRAME_HEADER_BYTES));
  // Truncations.
  for (let cut = 0; cut < payload.length; cut += 7) {
    const p = payload.subarray(0, cut);
    const hand = decodeGossipBatchPayload(p);
    if (hand) assert.deepEqual(hand, generatedDecode(p));
  }
  // Invalid UTF-8 in the text: the generated decoder refuses it, the hand decoder defers.
  const bad = Buffer.from(payload);
  const at = bad.indexOf('hello');
  bad[at] = 0xff;
  assert.equal(decodeGossipBatchPayload(bad), undefined);
  assert.throws(() => decodeEnvelope(bad));
  // Random byte flips (seeded).
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let i = 0; i < 2_000; i++) {
    const p = Buffer.from(payload);
    for (let k = 0; k < 3; k++) p[Math.floor(rand() * p.length)] = Math.floor(rand() * 256);
    const hand = decodeGossipBatchPayload(p);
    if (hand === undefined) continue;
    assert.deepEqual(hand, generatedDecode(p));
  }
});

test('a watch event frame is the bytes encodeEnvelopeFrame writes for a gossipEvent', () => {
  for (const requestId of [0, 1, 127, 128, 300, 0xffff_ffff]) {
    for (const m of samples) {
      const generated = encodeEnvelopeFrame({ requestId, body: { case: 'gossipEvent', value: { message: messageToWire(m) } } });
      assert.deepEqual(Buffer.from(gossipEventFrame(requestId, encodeGossipMessage(m))), Buffer.from(generated));
      const back = decodeEnvelope(generated.subarray(FRAME_HEADER_BYTES));
      assert.equal(back.body.case, 'gossipEvent');
    }
  }
  assert.throws(() => gossipEventFrame(-1, encodeGossipMessage(message())), RangeError);
  assert.throws(() => gossipEventFrame(2 ** 32, encodeGossipMessage(message())), RangeError);
});

test('a canonical message comes with its bytes, and one more path entry appended to them is what encodeGossipMessage writes', () => {
  const payload = generatedFrame(samples).subarray(FRAME_HEADER_BYTES);
  const batch = decodeGossipBatch(payload)!;
  assert.equal(batch.held, 0);
  batch.fresh.forEach((r, i) => {
    const m = samples[i]!;
    assert.deepEqual(r.message, generatedDecode(payload)[i]);
    // Sample 5 writes no id and no origin (both empty): still canonical.
    assert.ok(r.canonical, `sample ${i} canonical`);
    assert.deepEqual(Buffer.from(r.canonical), Buffer.from(encodeGossipMessage(m)));
    for (const hop of ['n9', 'node-with-a-longer-id', 'é']) {
      const forwarded = withPathEntry(r.canonical, pathEntryBytes(hop));
      assert.deepEqual(Buffer.from(forwarded), Buffer.from(encodeGossipMessage({ ...m, path: [...m.path, hop] })));
    }
  });
});

test('bytes that decode to the same message but are not written canonically come without them', () => {
  const m = samples[0]!;
  const canonical = Buffer.from(encodeGossipMessage(m));
  const batchOf = (msg: Uint8Array): Uint8Array => {
    const inner = Buffer.concat([Buffer.from([0x0a, msg.length]), msg]);
    return Buffer.concat([Buffer.from([0x8a, 0x02, inner.length]), inner]);
  };
  // The same message with: an explicit zero createdMs field; a 2-byte varint for seq 42; seq after text.
  const idOriginInc = canonical.subarray(0, canonical.indexOf(0x20));
  const variants = [
    Buffer.concat([Buffer.from(encodeGossipMessage({ ...m, createdMs: 0 })).subarray(0, -8), Buffer.from([0x30, 0x00]), Buffer.from(encodeGossipMessage({ ...m, createdMs: 0 })).subarray(-8)]),
    Buffer.concat([idOriginInc, Buffer.from([0x20, 0xaa, 0x00]), canonical.subarray(idOriginInc.length + 2)]),
  ];
  const textAt = canonical.indexOf(0x2a, idOriginInc.length + 2);
  variants.push(Buffer.concat([idOriginInc, canonical.subarray(textAt), canonical.subarray(idOriginInc.length, textAt)]));
  for (const v of variants) {
    const p = batchOf(v);
    const got = decodeGossipBatch(p)!;
    assert.deepEqual(got.fresh.map((r) => r.message), generatedDecode(p));
    assert.equal(got.fresh[0]!.canonical, undefined);
  }
});

test('copies the node holds are counted, not returned; the frame is refused exactly as without the check', () => {
  const payload = Buffer.from(generatedFrame(samples.slice(0, 3)).subarray(FRAME_HEADER_BYTES));
  const heldSeq42 = (origin: string, _inc: number, seq: number): boolean => origin === 'n1' && seq === 42;
  const got = decodeGossipBatch(payload, heldSeq42)!;
  assert.equal(got.held, 2);
  assert.deepEqual(got.fresh.map((r) => r.message), [generatedDecode(payload)[2]]);
  // Invalid UTF-8 in a held message's text still refuses the frame.
  const bad = Buffer.from(payload);
  bad[bad.indexOf('hello')] = 0xff;
  assert.equal(decodeGossipBatch(bad, heldSeq42), undefined);
  assert.equal(decodeGossipBatch(bad, () => true), undefined);
  // A seq 0 message is never "held" (the core refuses it as invalid).
  const zero = generatedFrame([message({ seq: 0 })]).subarray(FRAME_HEADER_BYTES);
  assert.equal(decodeGossipBatch(zero, () => true)!.fresh.length, 1);
});
