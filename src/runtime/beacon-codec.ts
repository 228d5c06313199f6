import { create } from '@bufbuild/protobuf';
import type { BeaconInfo } from '../core/membership.js';
import { BeaconSchema } from '../wire/index.js';
import type { Beacon } from '../wire/index.js';

/** Converts beacons between the wire (uint64 as bigint) and the core (numbers), bounding every field. */
export function beaconToWire(b: BeaconInfo): Beacon {
  return create(BeaconSchema, {
    cluster: b.cluster,
    id: b.id,
    host: b.host,
    port: b.port,
    incarnation: BigInt(b.incarnation),
    oldestPendingMs: BigInt(b.oldestPendingMs),
    leaving: b.leaving,
    cacheDigest: b.cacheDigest ?? 0n,
  });
}

export function beaconFromWire(b: Beacon): BeaconInfo | undefined {
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (b.incarnation > max || b.oldestPendingMs > max) return undefined;
  if (b.id.length === 0 || b.id.length > 64 || b.host.length === 0 || b.host.length > 64 || b.cluster.length > 64) return undefined;
  return {
    cluster: b.cluster,
    id: b.id,
    host: b.host,
    port: b.port,
    incarnation: Number(b.incarnation),
    oldestPendingMs: Number(b.oldestPendingMs),
    leaving: b.leaving,
    cacheDigest: b.cacheDigest,
  };
}
