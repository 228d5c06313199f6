import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressSortKey, compareEndpoints } from '../../src/core/address.js';
import { ringNeighbours, shouldDial } from '../../src/core/ring.js';

const ep = (id: string, host: string, port = 7000) => ({ id, host, port });

test('addresses order as numbers, not text', () => {
  assert.ok(addressSortKey('10.77.0.9') < addressSortKey('10.77.0.10'));
  assert.ok(addressSortKey('10.77.9.0') < addressSortKey('10.77.10.0'));
  assert.ok(addressSortKey('239.255.255.255') < addressSortKey('::1'));
  assert.equal(addressSortKey('::1'), addressSortKey('0:0:0:0:0:0:0:1'));
});

test('ties on address break on port, then id', () => {
  assert.ok(compareEndpoints(ep('b', '10.77.0.1', 1), ep('a', '10.77.0.1', 2)) < 0);
  assert.ok(compareEndpoints(ep('a', '10.77.0.1', 1), ep('b', '10.77.0.1', 1)) < 0);
});

test('one node alone has no neighbour', () => {
  assert.deepEqual(ringNeighbours(ep('a', '10.77.0.1'), []), []);
});

test('two nodes have each other once, and exactly one of them dials', () => {
  const a = ep('a', '10.77.0.1');
  const b = ep('b', '10.77.0.2');
  assert.deepEqual(ringNeighbours(a, [b]).map((n) => n.id), ['b']);
  assert.deepEqual(ringNeighbours(b, [a]).map((n) => n.id), ['a']);
  assert.notEqual(shouldDial(a, b), shouldDial(b, a));
});

test('neighbours are the nearest below and above, wrapping around', () => {
  const nodes = ['10.77.0.10', '10.77.0.2', '10.77.0.9', '10.77.0.100'].map((h, i) => ep(`n${i}`, h));
  const byHost = (h: string) => nodes.find((n) => n.host === h)!;
  const others = (self: { id: string }) => nodes.filter((n) => n.id !== self.id);
  // Order: .2, .9, .10, .100
  assert.deepEqual(ringNeighbours(byHost('10.77.0.2'), others(byHost('10.77.0.2'))).map((n) => n.host), ['10.77.0.100', '10.77.0.9']);
  assert.deepEqual(ringNeighbours(byHost('10.77.0.10'), others(byHost('10.77.0.10'))).map((n) => n.host), ['10.77.0.9', '10.77.0.100']);
  assert.deepEqual(ringNeighbours(byHost('10.77.0.100'), others(byHost('10.77.0.100'))).map((n) => n.host), ['10.77.0.10', '10.77.0.2']);
});

test('every ring edge is seen from both ends (so the dialer and the acceptor agree)', () => {
  const nodes = Array.from({ length: 9 }, (_, i) => ep(`n${i}`, `10.77.0.${(i * 37) % 250}`, 7000 + (i % 2)));
  for (const a of nodes) {
    for (const b of ringNeighbours(a, nodes.filter((n) => n.id !== a.id))) {
      assert.ok(ringNeighbours(b, nodes.filter((n) => n.id !== b.id)).some((n) => n.id === a.id), `${a.id}-${b.id}`);
    }
  }
});
