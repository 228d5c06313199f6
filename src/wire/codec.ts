import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { WireError } from './errors.js';
import { encodeFrame } from './frame.js';
import { DATAGRAM_BYTES_MAX, DATAGRAM_MAGIC } from './limits.js';
import { DatagramSchema, EnvelopeSchema } from './gen/grapevine/v1/grapevine_pb.js';
import type { Datagram, Envelope } from './gen/grapevine/v1/grapevine_pb.js';

export type EnvelopeInit = MessageInitShape<typeof EnvelopeSchema>;
export type DatagramInit = MessageInitShape<typeof DatagramSchema>;

/** Encodes one envelope as a length-prefixed frame. */
export function encodeEnvelopeFrame(init: EnvelopeInit): Uint8Array {
  return encodeFrame(toBinary(EnvelopeSchema, create(EnvelopeSchema, init)));
}

/** Decodes one frame payload; throws WireError('bad_frame') on malformed protobuf. */
export function decodeEnvelope(payload: Uint8Array): Envelope {
  try {
    return fromBinary(EnvelopeSchema, payload);
  } catch (cause) {
    throw new WireError('bad_frame', 'malformed envelope', { cause });
  }
}

export function encodeDatagram(init: DatagramInit): Uint8Array {
  const body = toBinary(DatagramSchema, create(DatagramSchema, init));
  const out = new Uint8Array(DATAGRAM_MAGIC.length + body.length);
  out.set(DATAGRAM_MAGIC, 0);
  out.set(body, DATAGRAM_MAGIC.length);
  return out;
}

/** Decodes a datagram; throws WireError('bad_datagram') when it is not one of ours. */
export function decodeDatagram(bytes: Uint8Array): Datagram {
  if (bytes.length > DATAGRAM_BYTES_MAX) throw new WireError('bad_datagram', `datagram of ${bytes.length} bytes is over ${DATAGRAM_BYTES_MAX}`);
  for (let i = 0; i < DATAGRAM_MAGIC.length; i++) {
    if (bytes[i] !== DATAGRAM_MAGIC[i]) throw new WireError('bad_datagram', 'datagram without the grapevine magic');
  }
  try {
    return fromBinary(DatagramSchema, bytes.subarray(DATAGRAM_MAGIC.length));
  } catch (cause) {
    throw new WireError('bad_datagram', 'malformed datagram', { cause });
  }
}
