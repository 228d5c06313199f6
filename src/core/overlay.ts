import { compareEndpoints } from './address.js';
import type { Endpoint } from './address.js';

/**
 * The gossip overlay (seed 003: "each node can communicate with 3 other
 * nodes"; DESIGN.md section 2).
 *
 * Static: the cluster file's `links`, exactly.
 *
 * Dynamic: the ring of live members (nearest below and above in
 * (IP, port, id) order) plus one chord per node from a perfect matching of
 * the members, drawn by a PRNG seeded with a hash of the member ids. Every
 * node that sees the same members draws the same matching, so both ends of a
 * chord agree without talking. A ring plus a random matching is a random
 * cubic graph, whose diameter is O(log N) with high probability (Bollobás
 * and Chung, "The diameter of a cycle plus a random matching", 1988);
 * `test/unit/overlay.test.ts` measures it up to 128 nodes. Pairs that would
 * repeat a ring edge are redrawn. With an odd count one node is left over
 * and joins the node opposite it on the ring (that one gets degree 4).
 */
export function staticNeighbours(selfId: string, links: readonly (readonly [string, string])[]): string[] {
  const out = new Set<string>();
  for (const [a, b] of links) {
    if (a === selfId && b !== selfId) out.add(b);
    else if (b === selfId && a !== selfId) out.add(a);
  }
  return [...out].sort();
}

/** Every edge of the dynamic overlay over `members` (ids as keys, both directions). */
export function dynamicOverlay(members: readonly Endpoint[]): Map<string, Set<string>> {
  const ring = uniqueSorted(members);
  const n = ring.length;
  const adj = new Map<string, Set<string>>(ring.map((m) => [m.id, new Set<string>()]));
  const link = (a: string, b: string) => {
    if (a === b) return;
    adj.get(a)!.add(b);
    adj.get(b)!.add(a);
  };
  for (let i = 0; i < n && n > 1; i++) link(ring[i]!.id, ring[(i + 1) % n]!.id);
  if (n < 4) return adj;

  const index = new Map(ring.map((m, i) => [m.id, i]));
  const ringAdjacent = (a: number, b: number) => Math.abs(a - b) === 1 || Math.abs(a - b) === n - 1;
  const random = mulberry32(fnv1a(ring.map((m) => m.id).join('\u0000')));
  let order = ring.map((m) => index.get(m.id)!);
  for (let attempt = 0; attempt < 32; attempt++) {
    shuffle(order, random);
    if (pairsOf(order).every(([a, b]) => !ringAdjacent(a, b))) break;
    // Repair locally before redrawing everything: swap a bad pair's second half with a later pair.
    order = repairPairs(order, ringAdjacent);
    if (pairsOf(order).every(([a, b]) => !ringAdjacent(a, b))) break;
  }
  for (const [a, b] of pairsOf(order)) link(ring[a]!.id, ring[b]!.id);
  if (n % 2 === 1) {
    const left = order[n - 1]!;
    link(ring[left]!.id, ring[(left + Math.floor(n / 2)) % n]!.id);
  }
  return adj;
}

/** `self`'s neighbours in the dynamic overlay of self + live others, in ring order. */
export function dynamicNeighbours(self: Endpoint, liveOthers: readonly Endpoint[]): Endpoint[] {
  const all = uniqueSorted([self, ...liveOthers]);
  const ids = dynamicOverlay(all).get(self.id) ?? new Set<string>();
  return all.filter((m) => ids.has(m.id));
}

/** Longest shortest path (in hops) of a graph; Infinity when it is not connected. */
export function diameter(adj: ReadonlyMap<string, ReadonlySet<string>>): number {
  let worst = 0;
  for (const start of adj.keys()) {
    const dist = new Map<string, number>([[start, 0]]);
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      const u = queue[i]!;
      for (const v of adj.get(u) ?? []) {
        if (!dist.has(v)) {
          dist.set(v, dist.get(u)! + 1);
          queue.push(v);
        }
      }
    }
    if (dist.size < adj.size) return Number.POSITIVE_INFINITY;
    for (const d of dist.values()) worst = Math.max(worst, d);
  }
  return worst;
}

function pairsOf(order: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i + 1 < order.length; i += 2) out.push([order[i]!, order[i + 1]!]);
  return out;
}

function repairPairs(order: number[], bad: (a: number, b: number) => boolean): number[] {
  const o = [...order];
  const pairs = Math.floor(o.length / 2);
  for (let p = 0; p < pairs; p++) {
    if (!bad(o[2 * p]!, o[2 * p + 1]!)) continue;
    for (let q = 0; q < pairs; q++) {
      if (q === p) continue;
      // Swap second elements of pairs p and q if that makes both good.
      const [a, b, c, d] = [o[2 * p]!, o[2 * p + 1]!, o[2 * q]!, o[2 * q + 1]!];
      if (!bad(a, d) && !bad(c, b)) {
        o[2 * p + 1] = d;
        o[2 * q + 1] = b;
        break;
      }
    }
  }
  return o;
}

function uniqueSorted(members: readonly Endpoint[]): Endpoint[] {
  const byId = new Map<string, Endpoint>();
  for (const m of members) if (!byId.has(m.id)) byId.set(m.id, m);
  return [...byId.values()].sort(compareEndpoints);
}

/** FNV-1a, 32 bits: a stable seed from the member ids (not a security boundary). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function shuffle(a: number[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}
