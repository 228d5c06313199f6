import { compareEndpoints } from './address.js';
import type { Endpoint } from './address.js';

/**
 * The ring of seeds 000/001: live members ordered by (IP, port, id); each
 * node's neighbours are the nearest member below and above, wrapping.
 * One member alone has no neighbour; two members have each other once.
 */
export function ringNeighbours(self: Endpoint, live: readonly Endpoint[]): Endpoint[] {
  const sorted = uniqueSorted([self, ...live]);
  const n = sorted.length;
  if (n <= 1) return [];
  const i = sorted.findIndex((m) => m.id === self.id);
  const below = sorted[(i - 1 + n) % n]!;
  const above = sorted[(i + 1) % n]!;
  return below.id === above.id ? [below] : [below, above];
}

/**
 * Exactly one side of each link dials: the one that sorts first. The other
 * side accepts. This is what makes two nodes share exactly one connection.
 */
export function shouldDial(self: Endpoint, peer: Endpoint): boolean {
  return compareEndpoints(self, peer) < 0;
}

function uniqueSorted(members: readonly Endpoint[]): Endpoint[] {
  const byId = new Map<string, Endpoint>();
  for (const m of members) if (!byId.has(m.id)) byId.set(m.id, m);
  return [...byId.values()].sort(compareEndpoints);
}
