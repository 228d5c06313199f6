import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePmDeliverFrame, decodePmOkFrame, decodePmSendFrame, encodePmDeliverFrame, encodePmOkFrame, encodePmOkFrameInto, encodePmSendFrame, pmOkFrameBytes } from '../../src/runtime/pm-frame.js';
import type { PmDeliverMessage } from '../../src/runtime/pm-frame.js';
import { FRAME_HEADER_BYTES, decodeEnvelope, encodeEnvelopeFrame } from '../../src/wire/index.js';
import type { Envelope } from '../../src/wire/index.js';
import { SimRandom } from '../../src/sim/random.js';

const payloadOf = (frame: Uint8Array): Uint8Array => frame.subarray(FRAME_HEADER_BYTES);
const generatedSend = (requestId: number, participant: string, text: string): Uint8Array => encodeEnvelopeFrame({ requestId, body: { case: 'pmSend', value: { participant, text } } });
const generatedOk = (requestId: number, seq: number, acceptedMs: number): Uint8Array =>
  encodeEnvelopeFrame({ requestId, response: true, body: { case: 'pmOk', value: { seq: BigInt(seq), acceptedMs: BigInt(acceptedMs) } } });

const REQUEST_IDS = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 0xffff_ffff];
const STRINGS = ['', 'a', 's0', 't0__000000042', 'x'.repeat(64), 'y'.repeat(65), 'z'.repeat(300), 'héllo', 'multi\nline \\ back', '日本語', '😀 emoji', '\ud800 lone', '\ufeffbom', 'w'.repeat(70_000)];
const NUMBERS = [0, 1, 127, 128, 300, 2 ** 32, 1_795_319_096_847, Number.MAX_SAFE_INTEGER];

test('msend frames are byte-identical to the generated encoding', () => {
  for (const requestId of REQUEST_IDS) {
    for (const participant of STRINGS.slice(0, 10)) {
      for (const text of STRINGS) assert.deepEqual(encodePmSendFrame(requestId, participant, text), generatedSend(requestId, participant, text), `${requestId} ${participant} ${text.slice(0, 20)}`);
    }
  }
});

test('answer frames are byte-identical to the generated encoding, alone or packed', () => {
  const packed: Uint8Array[] = [];
  for (const requestId of REQUEST_IDS) {
    for (const seq of NUMBERS) {
      for (const acceptedMs of NUMBERS) {
        const want = generatedOk(requestId, seq, acceptedMs);
        assert.deepEqual(encodePmOkFrame(requestId, seq, acceptedMs), want, `${requestId} ${seq} ${acceptedMs}`);
        assert.equal(pmOkFrameBytes(requestId, seq, acceptedMs), want.length);
        packed.push(want);
      }
    }
  }
  const out = new Uint8Array(packed.reduce((a, f) => a + f.length, 0));
  let at = 0;
  for (const requestId of REQUEST_IDS) for (const seq of NUMBERS) for (const acceptedMs of NUMBERS) at = encodePmOkFrameInto(out, at, requestId, seq, acceptedMs);
  assert.equal(at, out.length);
  assert.deepEqual(out, Uint8Array.from(packed.flatMap((f) => [...f])));
});

test('decoders read what the generated code writes', () => {
  for (const requestId of REQUEST_IDS) {
    for (const participant of STRINGS.slice(0, 10)) {
      for (const text of STRINGS) {
        const got = decodePmSendFrame(payloadOf(generatedSend(requestId, participant, text)));
        // A lone surrogate is not text: the encoders write U+FFFD, so that is what comes back.
        const clean = (s: string): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(s));
        assert.deepEqual(got, { requestId, participant: clean(participant), text: clean(text) });
      }
    }
    for (const seq of NUMBERS) for (const acceptedMs of NUMBERS) assert.deepEqual(decodePmOkFrame(payloadOf(generatedOk(requestId, seq, acceptedMs))), { requestId, seq, acceptedMs });
  }
});

/** Appends raw bytes to a payload (an unknown field, a repeated field, trailing garbage). */
const plus = (payload: Uint8Array, ...extra: number[]): Uint8Array => Uint8Array.from([...payload, ...extra]);

test('anything but the canonical layout is declined, for the generated decoder to judge', () => {
  const send = payloadOf(generatedSend(7, 'p1', 'hello'));
  const ok = payloadOf(generatedOk(7, 5, 1_000));
  const declined: [string, Uint8Array][] = [
    ['empty', new Uint8Array()],
    ['truncated', send.subarray(0, send.length - 1)],
    ['unknown envelope field after the body', plus(send, 0x18, 0x01)],
    ['a second body', plus(send, ...payloadOf(generatedSend(0, 'p2', 'x')))],
    ['response flag on a request', payloadOf(encodeEnvelopeFrame({ requestId: 7, response: true, body: { case: 'pmSend', value: { participant: 'p', text: 't' } } }))],
    ['another body', payloadOf(encodeEnvelopeFrame({ requestId: 7, body: { case: 'pmAck', value: { seq: 3n } } }))],
    ['an answer that is not a response', payloadOf(encodeEnvelopeFrame({ requestId: 7, body: { case: 'pmOk', value: { seq: 3n } } }))],
    ['an error answer', payloadOf(encodeEnvelopeFrame({ requestId: 7, response: true, body: { case: 'error', value: { code: 'x', message: 'y' } } }))],
    // Envelope{request_id: 7, pm_send{participant: "p", participant: "q"}}: the generated decoder keeps the last.
    ['repeated participant', Uint8Array.from([0x08, 0x07, 0x82, 0x04, 0x06, 0x0a, 0x01, 0x70, 0x0a, 0x01, 0x71])],
    ['text before participant', Uint8Array.from([0x08, 0x07, 0x82, 0x04, 0x06, 0x12, 0x01, 0x74, 0x0a, 0x01, 0x70])],
    ['unknown PmSend field', Uint8Array.from([0x08, 0x07, 0x82, 0x04, 0x05, 0x0a, 0x01, 0x70, 0x18, 0x01])],
    ['invalid UTF-8', Uint8Array.from([0x08, 0x07, 0x82, 0x04, 0x04, 0x12, 0x02, 0xc3, 0x28])],
    ['overlong varint', Uint8Array.from([0x08, 0x87, 0x00, 0x82, 0x04, 0x03, 0x12, 0x01, 0x74])],
    ['request id above uint32', Uint8Array.from([0x08, 0x80, 0x80, 0x80, 0x80, 0x10, 0x82, 0x04, 0x00])],
    ['length past the end', Uint8Array.from([0x08, 0x07, 0x82, 0x04, 0x09, 0x12, 0x01, 0x74])],
    ['seq beyond 2^53', payloadOf(encodeEnvelopeFrame({ requestId: 7, response: true, body: { case: 'pmOk', value: { seq: 2n ** 60n } } }))],
    ['unknown PmOk field', plus(ok.subarray(0, ok.length), 0x18, 0x01)],
  ];
  for (const [what, payload] of declined) {
    assert.equal(decodePmSendFrame(payload), undefined, `send: ${what}`);
    assert.equal(decodePmOkFrame(payload), undefined, `ok: ${what}`);
  }
  // The generated decoder refuses the bad ones outright: the connection drops them as before.
  assert.throws(() => decodeEnvelope(Uint8Array.from([0x08, 0x07, 0x82, 0x04, 0x04, 0x12, 0x02, 0xc3, 0x28])), /malformed/);
  assert.throws(() => decodeEnvelope(send.subarray(0, send.length - 1)), /malformed/);
});

/** Whatever a decoder accepts, the generated decoder reads the same (with nothing left over as unknown fields). */
function agreesWithGenerated(payload: Uint8Array): void {
  const send = decodePmSendFrame(payload);
  const ok = decodePmOkFrame(payload);
  if (!send && !ok) return;
  const env: Envelope = decodeEnvelope(payload);
  const unknown = (m: { $unknown?: unknown[] }): number => m.$unknown?.length ?? 0;
  assert.equal(unknown(env), 0);
  if (send) {
    assert.equal(env.body.case, 'pmSend');
    if (env.body.case !== 'pmSend') return;
    assert.equal(unknown(env.body.value), 0);
    assert.deepEqual(send, { requestId: env.requestId, participant: env.body.value.participant, text: env.body.value.text });
    assert.equal(env.response, false);
  }
  if (ok) {
    assert.equal(env.body.case, 'pmOk');
    if (env.body.case !== 'pmOk') return;
    assert.equal(unknown(env.body.value), 0);
    assert.deepEqual(ok, { requestId: env.requestId, seq: Number(env.body.value.seq), acceptedMs: Number(env.body.value.acceptedMs) });
    assert.equal(env.response, true);
  }
}

test('fuzz: mutated frames are either declined or read exactly as the generated decoder reads them', () => {
  const rnd = new SimRandom(4004);
  const seeds = [payloadOf(generatedSend(9, 'p1', 'hello')), payloadOf(generatedSend(0, '', 'é')), payloadOf(generatedOk(9, 12, 1_795_319_096_847)), payloadOf(generatedOk(0, 0, 5))];
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = Uint8Array.from(seeds[rnd.int(0, seeds.length - 1)]!);
    const mutations = rnd.int(1, 3);
    let b: Uint8Array = bytes;
    for (let m = 0; m < mutations; m++) {
      const at = rnd.int(0, b.length);
      const kind = rnd.int(0, 2);
      if (kind === 0 && b.length > 0) b[Math.min(at, b.length - 1)] = rnd.int(0, 255);
      else if (kind === 1) b = Uint8Array.from([...b.subarray(0, at), rnd.int(0, 255), ...b.subarray(at)]);
      else b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1)]);
    }
    agreesWithGenerated(b);
    if (decodePmSendFrame(b) || decodePmOkFrame(b)) accepted += 1;
  }
  // Enough mutants stay well formed for the comparison to mean something.
  assert.ok(accepted > 500, `only ${accepted} mutants were read`);
});

const generatedDeliver = (messages: readonly PmDeliverMessage[]): Uint8Array =>
  encodeEnvelopeFrame({ body: { case: 'pmDeliver', value: { messages: messages.map((m) => ({ seq: BigInt(m.seq), text: m.text, acceptedMs: BigInt(m.acceptedMs), sender: m.sender })) } } });

test('delivery frames are byte-identical to the generated encoding and read back', () => {
  const clean = (s: string): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(s));
  const batches: PmDeliverMessage[][] = [[]];
  let seq = 0;
  for (const text of STRINGS) {
    batches.push([{ seq: ++seq, text, acceptedMs: 1_795_319_096_847, sender: 's1' }]);
    batches.push(STRINGS.slice(0, 9).map((sender, i) => ({ seq: NUMBERS[i % NUMBERS.length]!, text, acceptedMs: NUMBERS[(i + 3) % NUMBERS.length]!, sender })));
  }
  batches.push(Array.from({ length: 1_000 }, (_, i) => ({ seq: 100_000 + i, text: `bulk${String(i).padStart(9, '0')}`, acceptedMs: 1_795_319_096_847 + i, sender: 'bulk' })));
  for (const batch of batches) {
    const want = generatedDeliver(batch);
    assert.deepEqual(encodePmDeliverFrame(batch), want);
    assert.deepEqual(decodePmDeliverFrame(payloadOf(want)), batch.map((m) => ({ ...m, text: clean(m.text), sender: clean(m.sender) })));
  }
});

test('a delivery in any other layout is declined', () => {
  const one = payloadOf(generatedDeliver([{ seq: 3, text: 'hi', acceptedMs: 9, sender: 'p' }]));
  const declined: [string, Uint8Array][] = [
    ['with a request id', payloadOf(encodeEnvelopeFrame({ requestId: 4, body: { case: 'pmDeliver', value: { messages: [{ seq: 3n, text: 'hi' }] } } }))],
    ['truncated', one.subarray(0, one.length - 1)],
    ['unknown PmMessage field', Uint8Array.from([0x92, 0x04, 0x06, 0x0a, 0x04, 0x08, 0x03, 0x28, 0x01])],
    ['fields out of order', Uint8Array.from([0x92, 0x04, 0x07, 0x0a, 0x05, 0x12, 0x01, 0x74, 0x08, 0x03])],
    ['inner length past the message', Uint8Array.from([0x92, 0x04, 0x06, 0x0a, 0x04, 0x12, 0x05, 0x74, 0x74])],
    ['an ack', payloadOf(encodeEnvelopeFrame({ body: { case: 'pmAck', value: { seq: 3n } } }))],
    ['seq beyond 2^53', payloadOf(encodeEnvelopeFrame({ body: { case: 'pmDeliver', value: { messages: [{ seq: 2n ** 60n }] } } }))],
  ];
  for (const [what, payload] of declined) assert.equal(decodePmDeliverFrame(payload), undefined, what);
  // Out of order is still a valid delivery to the generated decoder: declining hands it over, it is not refused.
  assert.equal(decodeEnvelope(Uint8Array.from([0x92, 0x04, 0x07, 0x0a, 0x05, 0x12, 0x01, 0x74, 0x08, 0x03])).body.case, 'pmDeliver');
});

test('fuzz: mutated deliveries are either declined or read exactly as the generated decoder reads them', () => {
  const rnd = new SimRandom(4066);
  const seed = payloadOf(generatedDeliver([{ seq: 3, text: 'hi', acceptedMs: 9, sender: 'p' }, { seq: 4, text: 'é', acceptedMs: 1_795_319_096_847, sender: 'q' }]));
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    let b = Uint8Array.from(seed);
    for (let m = rnd.int(1, 3); m > 0; m--) {
      const at = rnd.int(0, b.length);
      const kind = rnd.int(0, 2);
      if (kind === 0 && b.length > 0) b[Math.min(at, b.length - 1)] = rnd.int(0, 255);
      else if (kind === 1) b = Uint8Array.from([...b.subarray(0, at), rnd.int(0, 255), ...b.subarray(at)]);
      else b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1)]);
    }
    const got = decodePmDeliverFrame(b);
    if (!got) continue;
    accepted += 1;
    const env = decodeEnvelope(b);
    assert.equal(env.body.case, 'pmDeliver');
    if (env.body.case !== 'pmDeliver') continue;
    assert.equal(env.requestId, 0);
    assert.equal(env.response, false);
    assert.equal(env.$unknown?.length ?? 0, 0);
    assert.equal(env.body.value.$unknown?.length ?? 0, 0);
    assert.deepEqual(got, env.body.value.messages.map((m) => {
      assert.equal(m.$unknown?.length ?? 0, 0);
      return { seq: Number(m.seq), text: m.text, acceptedMs: Number(m.acceptedMs), sender: m.sender };
    }));
  }
  assert.ok(accepted > 500, `only ${accepted} mutants were read`);
});
