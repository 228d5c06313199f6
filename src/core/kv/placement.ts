import { hashString32 } from './entry.js';

/**
 * Where keys live when the cluster file says `replicas: R` (seed 002's DHT):
 * the key space is cut into the replica's fixed buckets, and each bucket is
 * placed by consistent hashing on a ring of virtual nodes (`vnodesPerMember`
 * points per member): its owners are the first R distinct members clockwise
 * from the bucket's point. When a member joins or leaves, only the buckets
 * next to its points change owners (about R/N of them), and every node that
 * sees the same members computes the same owners.
 */
export const VNODES_PER_MEMBER = 64;

export class Placement {
  private readonly owners: (readonly string[])[];

  constructor(
    readonly members: readonly string[],
    readonly replicas: number,
    readonly bucketCount: number,
    vnodesPerMember = VNODES_PER_MEMBER,
  ) {
    const distinct = [...new Set(members)].sort();
    const ring: { point: number; id: string }[] = [];
    for (const id of distinct) {
      for (let v = 0; v < vnodesPerMember; v++) ring.push({ point: hashString32(`${id}#${v}`), id });
    }
    // Equal points (a 2^-32 chance per pair) order by id, so every node agrees.
    ring.sort((a, b) => a.point - b.point || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const want = Math.min(replicas, distinct.length);
    this.owners = Array.from({ length: bucketCount }, (_, bucket) => {
      const out: string[] = [];
      if (ring.length === 0) return out;
      let i = lowerBound(ring, hashString32(`bucket:${bucket}`));
      while (out.length < want) {
        const id = ring[i % ring.length]!.id;
        if (!out.includes(id)) out.push(id);
        i++;
      }
      return out;
    });
  }

  /** The bucket's owners, the first one first (reads ask it first). */
  ownersOf(bucket: number): readonly string[] {
    return this.owners[bucket] ?? [];
  }

  isOwner(bucket: number, id: string): boolean {
    return this.ownersOf(bucket).includes(id);
  }

  /** Buckets that `a` and `b` both own. */
  shared(a: string, b: string): number[] {
    const out: number[] = [];
    for (let bucket = 0; bucket < this.bucketCount; bucket++) {
      const o = this.owners[bucket]!;
      if (o.includes(a) && o.includes(b)) out.push(bucket);
    }
    return out;
  }

  /** Buckets `id` owns. */
  ownedBy(id: string): number[] {
    const out: number[] = [];
    for (let bucket = 0; bucket < this.bucketCount; bucket++) if (this.owners[bucket]!.includes(id)) out.push(bucket);
    return out;
  }
}

function lowerBound(ring: readonly { point: number }[], point: number): number {
  let lo = 0;
  let hi = ring.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ring[mid]!.point < point) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
