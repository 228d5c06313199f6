import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DATAGRAM_MAGIC, FrameDecoder, WireError, decodeDatagram, decodeEnvelope, encodeDatagram, encodeEnvelopeFrame } from '../../src/wire/index.js';

test('an envelope survives encode, frame, decode', () => {
  const frame = encodeEnvelopeFrame({ requestId: 42, response: true, body: { case: 'error', value: { code: 'not_found', message: 'no such thing' } } });
  const [payload] = new FrameDecoder().push(frame);
  const env = decodeEnvelope(payload!);
  assert.equal(env.requestId, 42);
  assert.equal(env.response, true);
  assert.equal(env.body.case, 'error');
  assert.equal(env.body.case === 'error' && env.body.value.message, 'no such thing');
});

test('malformed protobuf is a bad_frame WireError', () => {
  assert.throws(() => decodeEnvelope(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff])), (e: unknown) => e instanceof WireError && e.code === 'bad_frame');
});

test('datagrams carry the magic and a beacon', () => {
  const bytes = encodeDatagram({ body: { case: 'beacon', value: { cluster: 'c', id: 'n1', host: '127.0.0.1', port: 7001, incarnation: 5n } } });
  assert.deepEqual([...bytes.subarray(0, 4)], [...DATAGRAM_MAGIC]);
  const d = decodeDatagram(bytes);
  assert.equal(d.body.case, 'beacon');
  assert.equal(d.body.case === 'beacon' && d.body.value.incarnation, 5n);
});

test('datagrams without the magic, or oversized, are bad_datagram', () => {
  const isBad = (e: unknown) => e instanceof WireError && e.code === 'bad_datagram';
  assert.throws(() => decodeDatagram(new TextEncoder().encode('hello world')), isBad);
  assert.throws(() => decodeDatagram(new Uint8Array(0)), isBad);
  assert.throws(() => decodeDatagram(new Uint8Array([...DATAGRAM_MAGIC, 0xff, 0xff])), isBad);
  assert.throws(() => decodeDatagram(new Uint8Array(4000)), isBad);
});
