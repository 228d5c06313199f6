import { compareWrites } from '../core/kv/entry.js';
import type { KvEntry } from '../core/kv/entry.js';
import type { KvReplica } from '../core/kv/replica.js';
import type { KvCluster } from './kv-cluster.js';
import { describe, KvMonitor, sameContent, versionKey } from './kv-invariants.js';
import type { Violation } from './invariants.js';
import type { KvPartitionCluster } from './kv-partition-cluster.js';
import type { KvPartitionListener } from './kv-partition-node.js';

/**
 * The full-replication monitor (kv-invariants.ts) watches a partitioned run
 * as well: it only needs a cluster to listen to, and KvPartitionListener is
 * a KvListener. (Its constructor is typed to KvCluster, whose private members
 * no other class can have; it calls nothing but addListener.)
 */
export function kvMonitorOf(cluster: KvPartitionCluster): KvMonitor {
  return new KvMonitor({ addListener: (l: KvPartitionListener) => cluster.addListener(l) } as unknown as KvCluster);
}

/**
 * What a partitioned run must show as it goes, beyond KvMonitor's checks
 * (no invented values, unique versions, a node's clock never back): every
 * value a read returns, at any moment, is one a client wrote for that key.
 * It also counts what the coverage checks want (hand-overs, reads asked of
 * owners, writes that failed for want of an owner, acknowledgements that
 * rest on a newer version rather than on a commit of the write itself).
 */
export class PartitionMonitor implements KvPartitionListener {
  readonly violations: Violation[] = [];
  readonly counts = { reads: 0, readKeys: 0, remoteReadKeys: 0, unavailable: 0, handOvers: 0, handedOverKeys: 0, droppedPending: 0, ackedByNonOwnerWriter: 0, acked: 0, ackedSuperseded: 0, ackedOnUncommitted: 0 };
  /** versionKey -> nodes that committed it. */
  private readonly committedAt = new Map<string, Set<string>>();
  /** key -> the values clients wrote for it (latin1 text of the bytes). */
  private readonly valuesOf = new Map<string, Set<string>>();
  private readonly violationsMax = 50;

  constructor(
    private readonly cluster: KvPartitionCluster,
    /** Per key, the highest version that reached a disk (KvMonitor's). */
    private readonly durableMax: ReadonlyMap<string, KvEntry>,
  ) {
    cluster.addListener(this);
  }

  onWrite(_nodeId: string, _writeId: number, entry: KvEntry): void {
    if (entry.value === undefined) return;
    let set = this.valuesOf.get(entry.key);
    if (!set) this.valuesOf.set(entry.key, (set = new Set()));
    set.add(latin1(entry.value));
  }

  onCommit(nodeId: string, entries: readonly KvEntry[]): void {
    for (const e of entries) {
      const k = versionKey(e);
      let set = this.committedAt.get(k);
      if (!set) this.committedAt.set(k, (set = new Set()));
      set.add(nodeId);
    }
  }

  onAck(nodeId: string, _writeId: number, entry: KvEntry): void {
    this.counts.acked += 1;
    // An owner answers an apply whose entry lost to what it holds (nothing to
    // commit): fine when that newer version is on a disk; when it is not (yet),
    // the acknowledgement rests on an uncommitted version. The final check says
    // whether the acknowledged write was lost.
    const at = this.committedAt.get(versionKey(entry));
    if (!at || at.size === 0) {
      const max = this.durableMax.get(entry.key);
      if (max && compareWrites(max, entry) > 0) this.counts.ackedSuperseded += 1;
      else this.counts.ackedOnUncommitted += 1;
    }
    const service = this.cluster.node(nodeId).service;
    if (service && !service.owners.ownsBucket(service.replica.bucketOf(entry.key))) this.counts.ackedByNonOwnerWriter += 1;
  }

  onUnavailable(): void {
    this.counts.unavailable += 1;
  }

  onRead(nodeId: string, keys: readonly string[], values: readonly (Uint8Array | undefined)[], asked: number, nowMs: number): void {
    this.counts.reads += 1;
    this.counts.readKeys += keys.length;
    this.counts.remoteReadKeys += asked;
    keys.forEach((key, i) => {
      const v = values[i];
      if (v !== undefined && !this.valuesOf.get(key)?.has(latin1(v))) this.fail(nowMs, 'reads-return-written-values', `a read of ${JSON.stringify(key)} at ${nodeId} returned a value no client wrote for it`);
    });
  }

  onHandOver(_nodeId: string, _bucket: number, keys: readonly string[]): void {
    this.counts.handOvers += 1;
    this.counts.handedOverKeys += keys.length;
  }

  onDroppedPending(_nodeId: string, _bucket: number, entries: readonly KvEntry[]): void {
    this.counts.droppedPending += entries.length;
  }

  /** The nodes that committed this version (any time, any incarnation). */
  committers(entry: KvEntry): ReadonlySet<string> {
    return this.committedAt.get(versionKey(entry)) ?? new Set();
  }

  private fail(atMs: number, invariant: string, detail: string): void {
    if (this.violations.length < this.violationsMax) this.violations.push({ atMs, invariant, detail });
  }
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** Every entry a replica holds, tombstones and expired values included, by key. */
export function entriesOf(replica: KvReplica): Map<string, KvEntry> {
  const out = new Map<string, KvEntry>();
  for (const v of replica.versionsIn(Array.from({ length: replica.bucketCount }, (_, b) => b))) out.set(v.key, replica.raw(v.key)!);
  return out;
}

export interface PartitionSettledReport {
  readonly violations: Violation[];
  /** Keys compared on their owners. */
  readonly keys: number;
}

/**
 * The state a quiet partitioned cluster must reach once the faults stop
 * (every member running, every member's view exactly the members, nothing
 * waiting for a commit, no sync round under way that was planned before a
 * hand-over), with the owners computed from the members (all the
 * nodes unless told):
 * (a) for every key, each of its owners holds the same entry, whose version
 *     is the highest (hlc, node) of the writes of that key that reached any
 *     disk (so at least every acknowledged write), and a client wrote it;
 * (b) no node holds a key of a bucket it does not own, in memory or on
 *     disk (the hand-over finished), and each disk holds what memory does.
 */
export function checkPartitionSettled(cluster: KvPartitionCluster, monitor: KvMonitor, members: readonly string[] = cluster.nodeIds()): PartitionSettledReport {
  const nowMs = cluster.nowMs;
  const violations: Violation[] = [];
  const fail = (invariant: string, detail: string): void => {
    if (violations.length < 50) violations.push({ atMs: nowMs, invariant, detail });
  };
  const ids = [...members];
  const notRunning = ids.filter((id) => cluster.node(id).status !== 'running');
  if (notRunning.length > 0) {
    fail('settled', `not running: ${notRunning.join(',')}`);
    return { violations, keys: 0 };
  }
  const partial = ids.filter((id) => [...cluster.node(id).view].sort().join() !== ids.filter((o) => o !== id).sort().join());
  if (partial.length > 0) {
    fail('settled', `views not complete: ${partial.join(',')}`);
    return { violations, keys: 0 };
  }
  for (const id of ids) {
    const pending = cluster.node(id).service!.pendingCount;
    if (pending > 0) fail('settled', `${id} has ${pending} write(s) waiting for the commit`);
    // A round planned before a hand-over brings the dropped bucket back (to hand it over again later).
    const stale = cluster.node(id).service!.staleRounds;
    if (stale > 0) fail('settled', `${id} has ${stale} sync round(s) under way that will fetch back a bucket it handed over`);
  }
  if (violations.length > 0) return { violations, keys: 0 };

  const placement = cluster.placementOf(ids);
  const held = new Map<string, Map<string, KvEntry>>();
  for (const id of ids) {
    const replica = cluster.node(id).service!.replica;
    const mine = entriesOf(replica);
    held.set(id, mine);
    const disk = cluster.node(id).disk;
    if (disk.size !== mine.size) fail('disk-matches-memory', `${id} holds ${mine.size} keys in memory, ${disk.size} on disk`);
    for (const e of mine.values()) {
      const d = disk.get(e.key);
      if (!d || !sameContent(d, e)) fail('disk-matches-memory', `${id} holds ${describe(e)} in memory, ${d ? describe(d) : 'nothing'} on disk`);
      const bucket = replica.bucketOf(e.key);
      if (!placement.isOwner(bucket, id)) fail('handed-over', `${id} still holds ${describe(e)} of bucket ${bucket}, owned by ${placement.ownersOf(bucket).join(',')}`);
    }
    for (const d of disk.all()) if (!mine.has(d.key)) fail('disk-matches-memory', `${id} has ${describe(d)} on disk, nothing in memory`);
  }

  const bucketOf = (key: string): number => cluster.node(ids[0]!).service!.replica.bucketOf(key);
  const keys = new Set<string>(monitor.durableMax.keys());
  for (const mine of held.values()) for (const k of mine.keys()) keys.add(k);
  const acked = new Map<string, KvEntry[]>();
  for (const a of monitor.acknowledged()) {
    keys.add(a.key);
    const list = acked.get(a.key);
    if (list) list.push(a);
    else acked.set(a.key, [a]);
  }
  for (const key of keys) {
    const owners = placement.ownersOf(bucketOf(key));
    const first = held.get(owners[0]!)!.get(key);
    for (const o of owners.slice(1)) {
      const e = held.get(o)!.get(key);
      if (!first || !e || !sameContent(first, e)) fail('owners-agree', `${JSON.stringify(key)}: owner ${owners[0]} holds ${first ? describe(first) : 'nothing'}, owner ${o} ${e ? describe(e) : 'nothing'}`);
    }
    const max = monitor.durableMax.get(key);
    if (!first) {
      if (max) fail('highest-durable-survives', `${JSON.stringify(key)}: nothing on owner ${owners[0]}; ${describe(max)} reached a disk`);
    } else {
      if (!max) fail('highest-durable-survives', `${describe(first)} survived, but no write of its key reached a disk`);
      else if (compareWrites(first, max) !== 0) fail('highest-durable-survives', `${JSON.stringify(key)}: ${describe(first)} survived on ${owners[0]}; the highest write that reached a disk is ${describe(max)}`);
      if (!monitor.isWritten(first)) fail('no-invented-values', `${describe(first)} survived, which no client wrote`);
    }
    for (const a of acked.get(key) ?? []) {
      if (!first || compareWrites(first, a) < 0) fail('acknowledged-not-lost', `acknowledged ${describe(a)} lost; ${first ? describe(first) : 'nothing'} survived on ${owners[0]}`);
    }
  }
  return { violations, keys: keys.size };
}

/**
 * (c) Reads once settled: every node reads every key through its own read
 * path (its replica for the buckets it owns, an owner's for the rest) and
 * must get the surviving value (absent for a delete, and for a value expired
 * on the clocks of every node; the caller waits until no TTL is pending).
 * Runs the cluster until every read answered or `limitMs` passed.
 */
export function checkPartitionReads(cluster: KvPartitionCluster, monitor: KvMonitor, keys: readonly string[], limitMs: number): Violation[] {
  const violations: Violation[] = [];
  const fail = (invariant: string, detail: string): void => {
    if (violations.length < 50) violations.push({ atMs: cluster.nowMs, invariant, detail });
  };
  const answers = new Map<string, (Uint8Array | undefined)[]>();
  const ids = cluster.nodeIds();
  for (const id of ids) cluster.read(id, keys, (values) => answers.set(id, values));
  const deadline = cluster.nowMs + limitMs;
  while (answers.size < ids.length && cluster.nowMs < deadline) cluster.runFor(10);
  for (const id of ids) {
    const values = answers.get(id);
    if (!values) {
      fail('reads-answer', `a read of ${keys.length} keys at ${id} did not answer within ${limitMs} ms`);
      continue;
    }
    const wallMs = cluster.wallMs(id);
    keys.forEach((key, i) => {
      const max = monitor.durableMax.get(key);
      const want = max && max.value !== undefined && (max.expiresMs === 0 || max.expiresMs > wallMs) ? max.value : undefined;
      const got = values[i];
      if (!sameBytes(got, want)) {
        fail('reads-see-the-survivor', `a read of ${JSON.stringify(key)} at ${id} returned ${got === undefined ? 'nothing' : `${got.length} bytes`}; the survivor is ${max ? describe(max) : 'nothing'}`);
      }
    });
  }
  return violations;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
