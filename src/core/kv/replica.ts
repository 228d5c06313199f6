import { KEY_SEED_A, KEY_SEED_B, compareWrites, hashString32, isLive, nodeHash, versionOf, xorFingerprint } from './entry.js';
import type { KvEntry, KvVersion } from './entry.js';
import { HybridClock, hlcOf, hlcWallMs } from './hlc.js';
import type { Hlc } from './hlc.js';

/**
 * One node's replica of the cache (seed 000): last writer wins per key by
 * (HLC, node id), deletes are tombstones, and a fingerprint per bucket of
 * keys lets two replicas find what differs between them by comparing
 * `bucketCount` numbers, so catching up costs what differs, not what is held.
 *
 * Pure state: the runtime persists what `write`/`apply` return and sends it on.
 */
export interface KvReplicaConfig {
  readonly selfId: string;
  /** Fixed for a cluster: replicas with another count cannot compare digests. */
  readonly bucketCount: number;
  /** Keys (live, expired and tombstones) this replica may hold; a local write of a new key beyond it is refused. */
  readonly keysMax: number;
  /** How far ahead of our wall clock a peer's timestamps may be before we count it as skew. */
  readonly clockAheadMaxMs: number;
  /**
   * Called with each version this replica stops holding (a newer one
   * replaced it, or its key was purged or handed over): the runtime's store
   * counts its record as garbage. Never called for a version not held.
   */
  readonly onDropped?: (entry: KvEntry) => void;
}

export const KV_REPLICA_DEFAULTS = Object.freeze({
  bucketCount: 1024,
  keysMax: 2_000_000,
  clockAheadMaxMs: 60_000,
});

/** Remote entries may take the store this far past keysMax, so replicas still converge when every node is near full. */
const REMOTE_HEADROOM = 1.25;
/**
 * Every stamp this replica issues stays below a ceiling that is on disk
 * before the stamp can leave the node; a restarted node starts its clock at
 * the ceiling, so it never issues a stamp it issued before its crash (a
 * write lost in the crash may already be on a peer or an owner under that
 * stamp). The ceiling runs this far ahead: one small disk write per second
 * of stamps, and a restart moves the clock at most this much ahead.
 */
const CEILING_LEASE = hlcOf(1_000);

/** Bytes an entry costs on the wire beyond its key and value (hlc, node id, framing), roughly. */
export const ENTRY_OVERHEAD_BYTES = 48;

export type WriteRefusal = 'full';

export interface Reconciliation {
  /** Ours is newer or they lack it: send these. */
  readonly push: KvEntry[];
  /** Theirs is newer or we lack it: ask for these keys. */
  readonly fetch: string[];
}

export class KvReplica {
  readonly clock: HybridClock;
  private readonly entries = new Map<string, KvEntry>();
  private readonly bucketKeys: Set<string>[];
  /** Per bucket: low and high 32 bits of the XOR of its versions' fingerprints. */
  private readonly fingerprints: Uint32Array;
  private sortedKeys: string[] | undefined;
  private live = 0;
  private ceiling = 0;
  private ceilingDue = false;
  /** The node hashes of the last writer seen (most versions come from a few writers). */
  private hashedNode = '';
  private hashedNodeLive = nodeHash('', false);
  private hashedNodeDeleted = nodeHash('', true);
  readonly stats = { applied: 0, stale: 0, dropped: 0, purged: 0, future: 0 };

  constructor(private readonly config: KvReplicaConfig) {
    if (!Number.isInteger(config.bucketCount) || config.bucketCount < 1 || config.bucketCount > 65_536) throw new RangeError('bucketCount must be 1..65536');
    this.clock = new HybridClock(config.clockAheadMaxMs);
    this.bucketKeys = Array.from({ length: config.bucketCount }, () => new Set<string>());
    this.fingerprints = new Uint32Array(config.bucketCount * 2);
  }

  get selfId(): string {
    return this.config.selfId;
  }

  get bucketCount(): number {
    return this.config.bucketCount;
  }

  /** Keys held, tombstones and expired ones included. */
  get size(): number {
    return this.entries.size;
  }

  /** Keys held with a value (expired ones included until purged). */
  get valueCount(): number {
    return this.live;
  }

  bucketOf(key: string): number {
    return hashString32(key, KEY_SEED_A) % this.config.bucketCount;
  }

  /** Loads persisted entries at start (then call restoreClock). */
  restore(entries: Iterable<KvEntry>): void {
    for (const e of entries) {
      const held = this.entries.get(e.key);
      if (held && compareWrites(held, e) >= 0) continue;
      this.replace(held, e);
    }
  }

  /**
   * After `restore`: the clock moves past every stored version that is not
   * from the far future, and to the persisted ceiling (0: none yet).
   */
  restoreClock(wallMs: number, ceiling = 0): void {
    for (const e of this.entries.values()) this.clock.observe(e.hlc, wallMs);
    this.clock.advanceTo(ceiling);
    this.ceiling = ceiling;
  }

  /** A new ceiling to put on disk before the last stamp may leave the node; undefined when none is due. */
  takeCeiling(): number | undefined {
    if (!this.ceilingDue) return undefined;
    this.ceilingDue = false;
    return this.ceiling;
  }

  private issue(wallMs: number): Hlc {
    const hlc = this.clock.now(wallMs);
    this.raiseCeiling(hlc);
    return hlc;
  }

  private raiseCeiling(hlc: Hlc): void {
    if (hlc < this.ceiling) return;
    this.ceiling = hlc + CEILING_LEASE;
    this.ceilingDue = true;
  }

  /** The entry of `key` if it has a value that has not expired. */
  get(key: string, wallMs: number): KvEntry | undefined {
    const e = this.entries.get(key);
    return e && isLive(e, wallMs) ? e : undefined;
  }

  /** The held version whatever its state (tombstone, expired). */
  raw(key: string): KvEntry | undefined {
    return this.entries.get(key);
  }

  /**
   * A local put (value) or delete (undefined), stamped with a fresh HLC so it
   * wins over everything this replica has seen. Returns the entry to persist
   * and flood, or 'full' when a new key would pass keysMax.
   */
  write(key: string, value: Uint8Array | undefined, wallMs: number, expiresMs = 0): KvEntry | WriteRefusal {
    const held = this.entries.get(key);
    if (!held && value !== undefined && this.entries.size >= this.config.keysMax) return 'full';
    let hlc = this.issue(wallMs);
    // A held version the clock did not adopt (restored from the far future)
    // must still lose to this write, here and on every replica.
    if (held && compareWrites(held, { hlc, node: this.config.selfId }) >= 0) {
      hlc = held.hlc + 1;
      this.raiseCeiling(hlc);
    }
    // The held key string, not the caller's: one string per key stays in the old generation.
    const entry: KvEntry = { key: held ? held.key : key, value, hlc, node: this.config.selfId, expiresMs: value === undefined ? 0 : expiresMs, storedIn: undefined, storedAt: 0 };
    this.replace(held, entry);
    this.stats.applied += 1;
    return entry;
  }

  /**
   * An entry from another replica. True when it won (it is now held: persist
   * it and flood it on); false when what we hold is as new or newer, or the
   * store is past its headroom (anti-entropy will offer it again).
   */
  apply(entry: KvEntry, wallMs: number): boolean {
    // From further ahead than a clock may be: refused for now (anti-entropy
    // offers it again; it is taken once our clock is within reach of it).
    if (!this.clock.observe(entry.hlc, wallMs)) {
      this.stats.future += 1;
      return false;
    }
    const held = this.entries.get(entry.key);
    if (held && compareWrites(held, entry) >= 0) {
      this.stats.stale += 1;
      return false;
    }
    if (!held && this.entries.size >= this.config.keysMax * REMOTE_HEADROOM) {
      this.stats.dropped += 1;
      return false;
    }
    this.replace(held, entry);
    this.stats.applied += 1;
    return true;
  }

  /**
   * Forgets tombstones written before `horizon` and values that expired
   * before its wall time: every live replica has passed them (the runtime
   * computes the horizon from the members' beacons). Returns the keys removed.
   */
  purge(horizon: Hlc, limit: number): string[] {
    const horizonMs = hlcWallMs(horizon);
    const removed: string[] = [];
    for (const e of this.entries.values()) {
      if (removed.length >= limit) break;
      const gone = e.value === undefined ? e.hlc < horizon : e.expiresMs !== 0 && e.expiresMs < horizonMs;
      if (gone) removed.push(e.key);
    }
    for (const key of removed) this.remove(key);
    this.stats.purged += removed.length;
    return removed;
  }

  /**
   * Forgets every key of a bucket without leaving tombstones: a partitioned
   * replica hands a bucket it no longer owns over to its owners, then drops it.
   */
  dropBucket(bucket: number): string[] {
    const keys = [...(this.bucketKeys[bucket] ?? [])];
    for (const key of keys) this.remove(key);
    return keys;
  }

  /** Buckets that hold at least one key. */
  nonEmptyBuckets(): number[] {
    const out: number[] = [];
    for (let b = 0; b < this.config.bucketCount; b++) if (this.bucketKeys[b]!.size > 0) out.push(b);
    return out;
  }

  /** A version for a write that this replica does not keep (a partitioned cache's non-owner stamps it for the owners). */
  stamp(key: string, value: Uint8Array | undefined, wallMs: number, expiresMs = 0): KvEntry {
    return { key, value, hlc: this.issue(wallMs), node: this.config.selfId, expiresMs: value === undefined ? 0 : expiresMs, storedIn: undefined, storedAt: 0 };
  }

  /** Whether an incoming entry is already below the purge horizon (applying it would resurrect what was purged). */
  static belowHorizon(entry: KvEntry, horizon: Hlc): boolean {
    if (entry.value === undefined) return entry.hlc < horizon;
    return entry.expiresMs !== 0 && entry.expiresMs < hlcWallMs(horizon);
  }

  /** The bucket fingerprints, little-endian (low, high) 32-bit pairs. */
  digest(): Uint8Array {
    const out = new Uint8Array(this.fingerprints.length * 4);
    const view = new DataView(out.buffer);
    for (let i = 0; i < this.fingerprints.length; i++) view.setUint32(i * 4, this.fingerprints[i]!, true);
    return out;
  }

  /**
   * Buckets whose fingerprint differs from a peer's digest (among `only`
   * when given: a partitioned cache compares the buckets both own);
   * undefined when the digest has another shape.
   */
  differingBuckets(remote: Uint8Array, only?: ReadonlySet<number>): number[] | undefined {
    if (remote.length !== this.fingerprints.length * 4) return undefined;
    const view = new DataView(remote.buffer, remote.byteOffset, remote.byteLength);
    const out: number[] = [];
    for (let b = 0; b < this.config.bucketCount; b++) {
      if (only && !only.has(b)) continue;
      if (view.getUint32(b * 8, true) !== this.fingerprints[b * 2] || view.getUint32(b * 8 + 4, true) !== this.fingerprints[b * 2 + 1]) out.push(b);
    }
    return out;
  }

  bucketSize(bucket: number): number {
    return this.bucketKeys[bucket]?.size ?? 0;
  }

  /**
   * Anti-entropy step 2, the answer to a peer's digest: our versions of the
   * differing buckets, whole buckets only, about `versionsMax` at most (one
   * bucket always, however large). Undefined when the digest has another shape.
   */
  answerDigest(remote: Uint8Array, versionsMax: number, only?: ReadonlySet<number>): { buckets: number[]; versions: KvVersion[]; more: boolean } | undefined {
    const differing = this.differingBuckets(remote, only);
    if (!differing) return undefined;
    const buckets: number[] = [];
    let count = 0;
    for (const b of differing) {
      const n = this.bucketSize(b);
      if (buckets.length > 0 && count + n > versionsMax) break;
      buckets.push(b);
      count += n;
    }
    return { buckets, versions: this.versionsIn(buckets), more: buckets.length < differing.length };
  }

  /** Anti-entropy step 3, the answer to a fetch: the entries held of these keys, about `bytesMax` of them at most. */
  answerFetch(keys: readonly string[], bytesMax: number): KvEntry[] {
    const out: KvEntry[] = [];
    let bytes = 0;
    for (const key of keys) {
      const e = this.entries.get(key);
      if (!e) continue;
      const size = key.length + (e.value?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
      if (out.length > 0 && bytes + size > bytesMax) break;
      bytes += size;
      out.push(e);
    }
    return out;
  }

  /** Every version held in these buckets. */
  versionsIn(buckets: readonly number[]): KvVersion[] {
    const out: KvVersion[] = [];
    for (const b of buckets) {
      for (const key of this.bucketKeys[b] ?? []) out.push(versionOf(this.entries.get(key)!));
    }
    return out;
  }

  /**
   * Compares a peer's versions of whole buckets with ours: what to send them
   * and what to ask them for. Keys the peer listed outside these buckets are ignored.
   */
  reconcile(buckets: readonly number[], theirs: readonly KvVersion[]): Reconciliation {
    const inBuckets = new Set(buckets);
    const theirsByKey = new Map<string, KvVersion>();
    for (const v of theirs) if (inBuckets.has(this.bucketOf(v.key))) theirsByKey.set(v.key, v);
    const push: KvEntry[] = [];
    const fetch: string[] = [];
    for (const b of inBuckets) {
      for (const key of this.bucketKeys[b] ?? []) {
        const mine = this.entries.get(key)!;
        const their = theirsByKey.get(key);
        if (!their || compareWrites(mine, their) > 0) push.push(mine);
      }
    }
    for (const [key, their] of theirsByKey) {
      const mine = this.entries.get(key);
      if (!mine || compareWrites(their, mine) > 0) fetch.push(key);
    }
    return { push, fetch };
  }

  /**
   * Keys with a value in bytewise order strictly after `after`, passing
   * `match`, at most `limit`. The sorted key list is rebuilt only when keys
   * were added or removed since the last scan.
   */
  scan(after: string | undefined, limit: number, wallMs: number, match?: (key: string) => boolean): { keys: string[]; more: boolean } {
    const sorted = (this.sortedKeys ??= [...this.entries.keys()].sort(compareBytes));
    let i = after === undefined ? 0 : upperBound(sorted, after);
    const keys: string[] = [];
    for (; i < sorted.length; i++) {
      const e = this.entries.get(sorted[i]!);
      if (!e || !isLive(e, wallMs) || (match && !match(e.key))) continue;
      if (keys.length === limit) return { keys, more: true };
      keys.push(e.key);
    }
    return { keys, more: false };
  }

  private replace(held: KvEntry | undefined, entry: KvEntry): void {
    // The key's hashes once for both versions: the first also picks the bucket.
    const keyA = hashString32(entry.key, KEY_SEED_A);
    const keyB = hashString32(entry.key, KEY_SEED_B);
    const bucket = keyA % this.config.bucketCount;
    if (held) {
      this.toggle(bucket, keyA, keyB, held);
      if (held.value !== undefined) this.live -= 1;
    } else {
      this.bucketKeys[bucket]!.add(entry.key);
      this.sortedKeys = undefined;
    }
    this.toggle(bucket, keyA, keyB, entry);
    if (entry.value !== undefined) this.live += 1;
    this.entries.set(entry.key, entry);
    if (held) this.config.onDropped?.(held);
  }

  private remove(key: string): void {
    const held = this.entries.get(key);
    if (!held) return;
    const keyA = hashString32(key, KEY_SEED_A);
    const bucket = keyA % this.config.bucketCount;
    this.toggle(bucket, keyA, hashString32(key, KEY_SEED_B), held);
    if (held.value !== undefined) this.live -= 1;
    this.bucketKeys[bucket]!.delete(key);
    this.entries.delete(key);
    this.sortedKeys = undefined;
    this.config.onDropped?.(held);
  }

  /** XORs a version into its bucket's fingerprint (versionFingerprint, with the key's hashes given). */
  private toggle(bucket: number, keyA: number, keyB: number, e: KvEntry): void {
    if (e.node !== this.hashedNode) {
      this.hashedNode = e.node;
      this.hashedNodeLive = nodeHash(e.node, false);
      this.hashedNodeDeleted = nodeHash(e.node, true);
    }
    xorFingerprint(this.fingerprints, bucket * 2, keyA, keyB, e.hlc, e.value === undefined ? this.hashedNodeDeleted : this.hashedNodeLive);
  }
}

/** Latin1 strings compare by char code, which is bytewise order. */
function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function upperBound(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
