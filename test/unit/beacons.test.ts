// The beacon service's receive and send paths without sockets: a sender's
// repeated datagram is recognised by its bytes (not decoded again), any
// change is decoded, garbage is still refused, and our own beacon is
// encoded once until one of its fields changes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BeaconInfo } from '../../src/core/membership.js';
import { beaconToWire } from '../../src/runtime/beacon-codec.js';
import { BeaconService } from '../../src/runtime/beacons.js';
import { createLogger } from '../../src/runtime/log.js';
import { encodeDatagram } from '../../src/wire/index.js';

const beacon = (over: Partial<BeaconInfo> = {}): BeaconInfo => ({
  cluster: 'c', id: 'n1', host: '10.77.0.1', port: 7000, incarnation: 5, oldestPendingMs: 0, cacheDigest: 0n, leaving: false, ...over,
});
const bytesOf = (b: BeaconInfo): Buffer => Buffer.from(encodeDatagram({ body: { case: 'beacon', value: beaconToWire(b) } }));

interface Internals {
  onDatagram(msg: Buffer, from: string, via: 'multicast' | 'unicast'): void;
  encoded(b: BeaconInfo): Uint8Array;
}

function service(heard: { info: BeaconInfo; from: string }[]): Internals {
  const svc = new BeaconService({
    multicast: { group: '239.1.2.3', port: 7001, interface: '127.0.0.1', ttl: 1 },
    host: '127.0.0.1',
    port: 7000,
    log: createLogger('silent'),
    clock: () => 0,
    onBeacon: (info, from) => heard.push({ info, from }),
  } as ConstructorParameters<typeof BeaconService>[0]);
  return svc as unknown as Internals;
}

test('a repeated datagram gives the same beacon; a changed one is decoded; garbage is dropped', () => {
  const heard: { info: BeaconInfo; from: string }[] = [];
  const svc = service(heard);
  svc.onDatagram(bytesOf(beacon()), 'a:1', 'multicast');
  svc.onDatagram(bytesOf(beacon()), 'a:1', 'multicast');
  svc.onDatagram(bytesOf(beacon({ oldestPendingMs: 123 })), 'a:1', 'multicast');
  svc.onDatagram(bytesOf(beacon({ id: 'n2' })), 'b:1', 'multicast');
  svc.onDatagram(Buffer.from('not a beacon'), 'a:1', 'multicast');
  svc.onDatagram(bytesOf(beacon({ oldestPendingMs: 123 })), 'a:1', 'multicast');
  assert.deepEqual(heard, [
    { info: beacon(), from: 'a:1' },
    { info: beacon(), from: 'a:1' },
    { info: beacon({ oldestPendingMs: 123 }), from: 'a:1' },
    { info: beacon({ id: 'n2' }), from: 'b:1' },
    { info: beacon({ oldestPendingMs: 123 }), from: 'a:1' },
  ]);
});

test('our beacon is encoded once until a field changes', () => {
  const svc = service([]);
  const first = svc.encoded(beacon());
  assert.deepEqual(Buffer.from(first), bytesOf(beacon()));
  assert.equal(svc.encoded(beacon()), first, 'the same bytes object');
  for (const change of [{ oldestPendingMs: 9 }, { leaving: true }, { incarnation: 6 }, { port: 7002 }, { cacheDigest: 42n }]) {
    // Each change on its own, after the base beacon, so a field the cache ignores shows.
    assert.deepEqual(Buffer.from(svc.encoded(beacon())), bytesOf(beacon()));
    const b = beacon(change);
    assert.deepEqual(Buffer.from(svc.encoded(b)), bytesOf(b), `after ${JSON.stringify(Object.keys(change))}`);
  }
});
