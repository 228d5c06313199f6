import { compareWrites } from '../core/kv/entry.js';
import type { KvEntry } from '../core/kv/entry.js';
import type { KvCluster } from './kv-cluster.js';
import type { KvListener } from './kv-node.js';
import type { Violation } from './invariants.js';

/** One version a client wrote: (key, hlc, node) and what it said (more than once only if a version was stamped twice). */
interface Written {
  readonly entry: KvEntry;
  readonly others: KvEntry[];
  acked: boolean;
}

type Version = Pick<KvEntry, 'hlc' | 'node'>;

/**
 * Watches a cache run and checks, as it goes:
 * - no invented values: every entry a commit puts on any disk is one a
 *   client wrote, with that key, hlc, node, value and expiry;
 * - versions are unique: no two different local writes share (key, hlc, node);
 * - a node's HLC never goes back, across restarts included: each local
 *   write is above every earlier write of that node that reached a disk
 *   anywhere (acknowledged or not) — else the new, acknowledged write can
 *   lose to (or tie with) an older one of the same node.
 * It records what the final check needs: the highest version per key that
 * reached any disk, and the acknowledged writes.
 */
export class KvMonitor implements KvListener {
  readonly violations: Violation[] = [];
  readonly counts = { writes: 0, puts: 0, deletes: 0, ttlPuts: 0, acked: 0, refused: 0, commits: 0, lostOwn: 0, lostApplied: 0, crashes: 0, servedUncommitted: 0, restamped: 0 };
  /** `key\0hlc\0node` -> the write. */
  readonly written = new Map<string, Written>();
  /** Per key, the highest version that reached any node's disk. */
  readonly durableMax = new Map<string, KvEntry>();
  /** Per writer node, its highest version that reached any disk. */
  private readonly writerDurableMax = new Map<string, number>();
  private readonly violationsMax = 50;

  constructor(cluster: KvCluster) {
    cluster.addListener(this);
  }

  onLifecycle(_nodeId: string, kind: 'start' | 'crash'): void {
    if (kind === 'crash') this.counts.crashes += 1;
  }

  onWrite(nodeId: string, writeId: number, entry: KvEntry, nowMs: number): void {
    this.counts.writes += 1;
    if (entry.value === undefined) this.counts.deletes += 1;
    else if (entry.expiresMs !== 0) this.counts.ttlPuts += 1;
    else this.counts.puts += 1;
    if (entry.node !== nodeId) this.fail(nowMs, 'write-shape', `${nodeId} stamped a write as ${entry.node}`);
    const floor = this.writerDurableMax.get(nodeId);
    if (floor !== undefined && entry.hlc <= floor) {
      this.fail(nowMs, 'hlc-never-back', `${nodeId} stamped ${describe(entry)} at or below its own earlier write hlc ${floor} that reached a disk`);
    }
    const k = versionKey(entry);
    const held = this.written.get(k);
    if (held) {
      // The same write again is harmless: its first stamping died uncommitted
      // (or hlc-never-back has already said otherwise) and the clock, restored
      // from the disk, retraced its steps. Another write under it is not.
      this.counts.restamped += 1;
      if (!sameContent(held.entry, entry)) this.fail(nowMs, 'versions-unique', `${nodeId} (write ${writeId}) stamped ${describe(entry)}, the version of an earlier write ${describe(held.entry)}`);
      held.others.push(entry);
      return;
    }
    this.written.set(k, { entry, others: [], acked: false });
  }

  onRefused(): void {
    this.counts.refused += 1;
  }

  onCommit(nodeId: string, entries: readonly KvEntry[], nowMs: number): void {
    this.counts.commits += 1;
    for (const e of entries) {
      if (!this.isWritten(e)) {
        this.fail(nowMs, 'no-invented-values', `${nodeId} stores ${describe(e)}, which no client wrote`);
        continue;
      }
      const max = this.durableMax.get(e.key);
      if (!max || compareWrites(e, max) > 0) this.durableMax.set(e.key, e);
      if (e.hlc > (this.writerDurableMax.get(e.node) ?? -1)) this.writerDurableMax.set(e.node, e.hlc);
    }
  }

  onAck(nodeId: string, _writeId: number, entry: KvEntry, nowMs: number): void {
    this.counts.acked += 1;
    const w = this.written.get(versionKey(entry));
    if (!w) return this.fail(nowMs, 'ack-only-writes', `${nodeId} acknowledged unknown ${describe(entry)}`);
    w.acked = true;
  }

  onLost(_nodeId: string, entries: readonly KvEntry[], ownWriteIds: readonly number[]): void {
    this.counts.lostOwn += ownWriteIds.length;
    this.counts.lostApplied += entries.length - ownWriteIds.length;
  }

  onServedUncommitted(_nodeId: string, _peer: string, entries: readonly KvEntry[]): void {
    this.counts.servedUncommitted += entries.length;
  }

  /** Every acknowledged write. */
  acknowledged(): KvEntry[] {
    return [...this.written.values()].filter((w) => w.acked).map((w) => w.entry);
  }

  /** Whether a client wrote exactly this entry (key, version, value, expiry). */
  isWritten(entry: KvEntry): boolean {
    const w = this.written.get(versionKey(entry));
    return !!w && (sameContent(w.entry, entry) || w.others.some((o) => sameContent(o, entry)));
  }

  isAcked(entry: KvEntry): boolean {
    return this.written.get(versionKey(entry))?.acked ?? false;
  }

  private fail(atMs: number, invariant: string, detail: string): void {
    if (this.violations.length < this.violationsMax) this.violations.push({ atMs, invariant, detail });
  }
}

export function versionKey(v: Pick<KvEntry, 'key'> & Version): string {
  return `${v.key}\u0000${v.hlc}\u0000${v.node}`;
}

export function sameContent(a: KvEntry, b: KvEntry): boolean {
  return a.key === b.key && a.hlc === b.hlc && a.node === b.node && a.expiresMs === b.expiresMs && sameBytes(a.value, b.value);
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function describe(e: KvEntry): string {
  const key = JSON.stringify(e.key);
  const what = e.value === undefined ? 'delete' : `put ${e.value.length}B${e.expiresMs ? ` ttl→${e.expiresMs}` : ''} #${fingerprint(e.value)}`;
  return `${key}@${e.hlc}/${e.node} ${what}`;
}

function fingerprint(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** Every entry a replica holds, tombstones and expired values included, by key. */
export function replicaEntries(cluster: KvCluster, id: string): Map<string, KvEntry> {
  const replica = cluster.node(id).service!.replica;
  const buckets = Array.from({ length: replica.bucketCount }, (_, b) => b);
  const out = new Map<string, KvEntry>();
  for (const v of replica.versionsIn(buckets)) out.set(v.key, replica.raw(v.key)!);
  return out;
}

export interface KvConvergenceReport {
  readonly violations: Violation[];
  /** Keys compared on every node. */
  readonly keys: number;
}

/**
 * The state a quiet cluster must reach once the faults stop (every node
 * running): nothing waits for a commit; (1) every replica holds the same
 * contents — the same digest and the same entries, byte for byte — and
 * each one's disk holds what its memory does; (2) per key, the surviving
 * version is the highest (hlc, node) that reached any disk, so it is at
 * least every acknowledged write of that key; (3) every surviving entry
 * is a write some client made, with its value.
 */
export function checkKvConverged(cluster: KvCluster, monitor: KvMonitor): KvConvergenceReport {
  const nowMs = cluster.nowMs;
  const violations: Violation[] = [];
  const fail = (invariant: string, detail: string): void => {
    if (violations.length < 50) violations.push({ atMs: nowMs, invariant, detail });
  };
  const ids = cluster.nodeIds();
  const notRunning = ids.filter((id) => cluster.node(id).status !== 'running');
  if (notRunning.length > 0) {
    fail('settled', `not running: ${notRunning.join(',')}`);
    return { violations, keys: 0 };
  }
  for (const id of ids) {
    const pending = cluster.node(id).service!.pendingCount;
    if (pending > 0) fail('settled', `${id} has ${pending} write(s) waiting for the commit`);
  }
  const first = ids[0]!;
  const digest0 = cluster.node(first).service!.replica.digest();
  for (const id of ids.slice(1)) {
    if (!sameBytes(cluster.node(id).service!.replica.digest(), digest0)) fail('identical-replicas', `${id}'s digest differs from ${first}'s`);
  }
  if (violations.length > 0) return { violations, keys: 0 };

  const reference = replicaEntries(cluster, first);
  for (const id of ids) {
    const mine = id === first ? reference : replicaEntries(cluster, id);
    if (id !== first) compareReplicas(first, reference, id, mine, fail);
    const disk = cluster.node(id).disk;
    if (disk.size !== mine.size) fail('disk-matches-memory', `${id} holds ${mine.size} keys in memory, ${disk.size} on disk`);
    for (const e of mine.values()) {
      const d = disk.get(e.key);
      if (!d || !sameContent(d, e)) fail('disk-matches-memory', `${id} holds ${describe(e)} in memory, ${d ? describe(d) : 'nothing'} on disk`);
    }
  }

  for (const [key, max] of monitor.durableMax) {
    const held = reference.get(key);
    if (!held) fail('highest-durable-survives', `${JSON.stringify(key)}: nothing survived; ${describe(max)} reached a disk`);
    else if (compareWrites(held, max) !== 0) fail('highest-durable-survives', `${JSON.stringify(key)}: ${describe(held)} survived; the highest write that reached a disk is ${describe(max)}`);
  }
  for (const a of monitor.acknowledged()) {
    const held = reference.get(a.key);
    if (!held || compareWrites(held, a) < 0) fail('acknowledged-not-lost', `acknowledged ${describe(a)} lost; ${held ? describe(held) : 'nothing'} survived`);
  }
  for (const e of reference.values()) {
    if (!monitor.isWritten(e)) fail('no-invented-values', `${describe(e)} survived, which no client wrote`);
    if (!monitor.durableMax.has(e.key)) fail('highest-durable-survives', `${describe(e)} survived, but no write of its key reached a disk`);
  }
  return { violations, keys: reference.size };
}

function compareReplicas(aId: string, a: Map<string, KvEntry>, bId: string, b: Map<string, KvEntry>, fail: (invariant: string, detail: string) => void): void {
  for (const [key, ea] of a) {
    const eb = b.get(key);
    if (!eb || !sameContent(ea, eb)) fail('identical-replicas', `${JSON.stringify(key)}: ${aId} holds ${describe(ea)}, ${bId} ${eb ? describe(eb) : 'nothing'}`);
  }
  for (const [key, eb] of b) if (!a.has(key)) fail('identical-replicas', `${JSON.stringify(key)}: ${aId} holds nothing, ${bId} ${describe(eb)}`);
}
