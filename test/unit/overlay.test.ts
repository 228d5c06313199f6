import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compareEndpoints } from '../../src/core/address.js';
import type { Endpoint } from '../../src/core/address.js';
import { diameter, dynamicNeighbours, dynamicOverlay, staticNeighbours } from '../../src/core/overlay.js';
import { ringNeighbours } from '../../src/core/ring.js';
import { SimRandom } from '../../src/sim/random.js';

/** `n` members with random ids and addresses (some sharing a host), as a cluster might have. */
function members(rng: SimRandom, n: number): Endpoint[] {
  const hosts = Array.from({ length: rng.int(1, n) }, () => `10.${rng.int(0, 3)}.${rng.int(0, 255)}.${rng.int(1, 254)}`);
  const ids = new Set<string>();
  while (ids.size < n) ids.add(`${rng.pick(['n', 'node-', 'h'])}${rng.int(0, 100_000)}`);
  return [...ids].map((id, i) => ({ id, host: rng.pick(hosts), port: 7_000 + i }));
}

const edges = (adj: ReadonlyMap<string, ReadonlySet<string>>): string[] =>
  [...adj].flatMap(([a, ns]) => [...ns].map((b) => `${a}>${b}`)).sort();

describe('static overlay', () => {
  test('a node has exactly the other ends of its links, each once, in order', () => {
    const links: [string, string][] = [['a', 'b'], ['c', 'a'], ['a', 'd'], ['b', 'c'], ['d', 'a'], ['a', 'a'], ['e', 'f']];
    assert.deepEqual(staticNeighbours('a', links), ['b', 'c', 'd']);
    assert.deepEqual(staticNeighbours('b', links), ['a', 'c']);
    assert.deepEqual(staticNeighbours('f', links), ['e']);
    assert.deepEqual(staticNeighbours('z', links), []);
  });
});

describe('dynamic overlay', () => {
  test('small clusters: alone no neighbour, two nodes each other, three a triangle', () => {
    const rng = new SimRandom(1);
    const [a, b, c] = members(rng, 3) as [Endpoint, Endpoint, Endpoint];
    assert.deepEqual(dynamicNeighbours(a, []), []);
    assert.deepEqual(dynamicNeighbours(a, [b]).map((e) => e.id), [b.id]);
    for (const self of [a, b, c]) {
      const others = [a, b, c].filter((m) => m !== self);
      const ids = (es: readonly Endpoint[]): string[] => es.map((e) => e.id).sort();
      assert.deepEqual(ids(dynamicNeighbours(self, others)), ids(ringNeighbours(self, others)), 'the ring, nothing more');
    }
  });

  test('n = 4..128: degree 3 (odd n: the leftover node gets 3, its partner 4), symmetric, ring included, connected, diameter <= 2 log2(n) + 2, independent of input order', () => {
    const rng = new SimRandom(2024);
    const worst: string[] = [];
    for (let n = 4; n <= 128; n++) {
      let worstDiameter = 0;
      for (let set = 0; set < 4; set++) {
        const ms = members(rng, n);
        const adj = dynamicOverlay(ms);
        assert.equal(adj.size, n);
        const degrees = [...adj.values()].map((s) => s.size);
        if (n % 2 === 0) assert.ok(degrees.every((d) => d === 3), `n=${n}: degrees ${degrees.join(',')}`);
        else {
          assert.equal(degrees.filter((d) => d === 4).length, 1, `n=${n}: one node of degree 4`);
          assert.equal(degrees.filter((d) => d === 3).length, n - 1, `n=${n}: the rest degree 3`);
        }
        for (const [a, ns] of adj) {
          assert.ok(!ns.has(a), 'no self-loop');
          for (const b of ns) assert.ok(adj.get(b)!.has(a), `n=${n}: ${a}-${b} is symmetric`);
        }
        const ring = [...ms].sort(compareEndpoints);
        ring.forEach((m, i) => {
          const next = ring[(i + 1) % n]!.id;
          assert.ok(adj.get(m.id)!.has(next), `n=${n}: ring edge ${m.id}-${next}`);
        });
        const d = diameter(adj);
        assert.ok(d <= 2 * Math.log2(n) + 2, `n=${n}: diameter ${d}`);
        worstDiameter = Math.max(worstDiameter, d);
        assert.deepEqual(edges(dynamicOverlay(rng.shuffle(ms))), edges(adj), `n=${n}: same overlay from any input order`);
      }
      if ([4, 5, 8, 16, 17, 32, 64, 100, 127, 128].includes(n)) worst.push(`n=${n}: ${worstDiameter} (bound ${(2 * Math.log2(n) + 2).toFixed(1)})`);
    }
    console.log(`dynamic overlay diameter, worst of 4 random id sets:\n  ${worst.join('\n  ')}`);
  });

  test('every node computes its own neighbours from the same members and they agree with the whole overlay', () => {
    const rng = new SimRandom(7);
    for (const n of [4, 9, 16, 33, 64]) {
      const ms = members(rng, n);
      const adj = dynamicOverlay(ms);
      for (const self of ms) {
        const mine = dynamicNeighbours(self, rng.shuffle(ms.filter((m) => m !== self))).map((e) => e.id).sort();
        assert.deepEqual(mine, [...adj.get(self.id)!].sort());
      }
    }
  });

  test('diameter: Infinity when not connected, hops otherwise', () => {
    const path = new Map([['a', new Set(['b'])], ['b', new Set(['a', 'c'])], ['c', new Set(['b'])]]);
    assert.equal(diameter(path), 2);
    assert.equal(diameter(new Map([['a', new Set<string>()], ['b', new Set<string>()]])), Number.POSITIVE_INFINITY);
  });
});
