import { create } from '@bufbuild/protobuf';
import type { GossipMessage } from '../core/gossip/message.js';
import type { StreamDigest } from '../core/gossip/streams.js';
import { GossipMessageSchema, StreamDigestSchema } from '../wire/index.js';
import type { GossipMessage as WireMessage, StreamDigest as WireDigest } from '../wire/index.js';

/** Converts gossip records between the wire (uint64 as bigint) and the core (numbers). */
export function messageToWire(m: GossipMessage): WireMessage {
  return create(GossipMessageSchema, {
    id: m.id,
    origin: m.origin,
    incarnation: BigInt(m.incarnation),
    seq: BigInt(m.seq),
    text: m.text,
    createdMs: BigInt(m.createdMs),
    path: [...m.path],
  });
}

const MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Undefined when a number is out of range (the core then never sees it). */
export function messageFromWire(w: WireMessage | undefined): GossipMessage | undefined {
  if (!w || w.incarnation > MAX || w.seq > MAX || w.createdMs > MAX) return undefined;
  return {
    id: w.id,
    origin: w.origin,
    incarnation: Number(w.incarnation),
    seq: Number(w.seq),
    text: w.text,
    createdMs: Number(w.createdMs),
    path: w.path,
  };
}

export function digestToWire(d: StreamDigest): WireDigest {
  return create(StreamDigestSchema, { origin: d.origin, incarnation: BigInt(d.incarnation), hwm: BigInt(d.hwm), above: d.above.map(BigInt) });
}

export function digestFromWire(w: WireDigest): StreamDigest | undefined {
  if (w.incarnation > MAX || w.hwm > MAX || w.above.some((a) => a > MAX)) return undefined;
  return { origin: w.origin, incarnation: Number(w.incarnation), hwm: Number(w.hwm), above: w.above.map(Number) };
}
