import type { SimRandom } from './random.js';

export type Link = readonly [string, string];

/**
 * A random connected graph in which every node has degree 3 (seed 003:
 * "each node can communicate with 3 other nodes"), drawn by the pairing
 * model: three stubs per node, shuffled and paired; draws with a loop, a
 * double edge or more than one component are thrown away. With an odd count
 * the stub total would be odd, so one node gets a fourth stub (the closest
 * to 3-regular there is). Needs at least 4 nodes.
 */
export function randomCubicLinks(rng: SimRandom, ids: readonly string[]): Link[] {
  if (ids.length < 4) throw new RangeError(`a cubic graph needs at least 4 nodes, got ${ids.length}`);
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const stubs = ids.flatMap((id) => [id, id, id]);
    if (ids.length % 2 === 1) stubs.push(rng.pick(ids));
    const order = rng.shuffle(stubs);
    const links: Link[] = [];
    const seen = new Set<string>();
    let simple = true;
    for (let i = 0; i < order.length && simple; i += 2) {
      const [a, b] = [order[i]!, order[i + 1]!];
      const key = a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
      if (a === b || seen.has(key)) simple = false;
      seen.add(key);
      links.push(a < b ? [a, b] : [b, a]);
    }
    if (simple && isConnected(ids, links)) return links;
  }
  throw new Error(`no simple connected cubic graph on ${ids.length} nodes after 10000 draws`);
}

/** Whether `ids` form one component over `links` (links to other ids are ignored). */
export function isConnected(ids: readonly string[], links: readonly Link[]): boolean {
  if (ids.length === 0) return true;
  const members = new Set(ids);
  const adj = new Map<string, string[]>(ids.map((id) => [id, []]));
  for (const [a, b] of links) {
    if (!members.has(a) || !members.has(b)) continue;
    adj.get(a)!.push(b);
    adj.get(b)!.push(a);
  }
  const reached = new Set([ids[0]!]);
  const queue = [ids[0]!];
  for (let i = 0; i < queue.length; i++) {
    for (const v of adj.get(queue[i]!)!) {
      if (!reached.has(v)) {
        reached.add(v);
        queue.push(v);
      }
    }
  }
  return reached.size === ids.length;
}
