import type { KvEntry } from '../core/kv/entry.js';
import { Placement } from '../core/kv/placement.js';
import type { RpcConn } from './kv-partition-rpc.js';
import type { Scheduler } from './scheduler.js';

/**
 * src/runtime/kv-partition.ts (KvPartition) restated for the simulator,
 * which may not import the runtime; keep the two in step:
 *
 * - the placement is recomputed when the live members change (refresh), and
 *   the hand-over confirmations are forgotten then;
 * - sendToOwners batches entries per remote owner per turn (one apply
 *   request each) and tells, per entry, how many owners answered that they
 *   committed it, once every one of them answered or failed;
 * - readFromOwners asks the owners first to last for the keys (skipping
 *   this node), and goes on to the next owner while a key was not found;
 * - syncPlan and confirm decide which buckets to compare with whom, and
 *   which buckets this node may drop after every owner confirmed them.
 */
export interface PartitionOwnersOptions {
  readonly selfId: string;
  readonly replicas: number;
  readonly bucketCount: number;
  readonly scheduler: Scheduler;
  /** Live member ids as this node's membership sees them. */
  readonly members: () => readonly string[];
  readonly rpc: (peer: string, ok: (conn: RpcConn) => void, fail: () => void) => void;
  readonly requestTimeoutMs: () => number;
  /** kv-partition.ts HANDOFF_WINDOW_MS. */
  readonly handoffWindowMs: number;
  /** Placements are pure functions of (members, R, buckets): shared between nodes with the same view. */
  readonly placementOf?: (members: readonly string[]) => Placement;
  readonly onPlacement?: (placement: Placement) => void;
}

interface OwnerBatch {
  readonly entries: KvEntry[];
  readonly waiters: { resolve: () => void; reject: () => void }[];
}

export class PartitionOwners {
  private placementNow: Placement;
  /** Per bucket, whether this node owns it under placementNow (isOwner, looked up once per placement). */
  private owned: Uint8Array;
  private membersKey = '';
  private changedAtMs = -Infinity;
  private readonly outbox = new Map<string, OwnerBatch>();
  private flushScheduled = false;
  private alive = true;
  /** Per bucket this node holds but no longer owns: the owners that confirmed they hold the same versions (and, with the proposed fix, which). */
  private readonly confirmed = new Map<number, { fingerprint: string | undefined; peers: Set<string> }>();
  readonly stats = { refreshes: 0, applyRequests: 0, applyFailures: 0, remoteReads: 0 };

  constructor(private readonly o: PartitionOwnersOptions) {
    this.placementNow = this.place([o.selfId]);
    this.owned = this.ownedUnder(this.placementNow);
    this.refresh();
  }

  get placement(): Placement {
    return this.placementNow;
  }

  halt(): void {
    this.alive = false;
  }

  /** Recomputes the placement when the live members changed; true when it did. */
  refresh(): boolean {
    const members = [...new Set([...this.o.members(), this.o.selfId])].sort();
    const key = members.join('\n');
    if (key === this.membersKey) return false;
    this.membersKey = key;
    this.placementNow = this.place(members);
    this.owned = this.ownedUnder(this.placementNow);
    this.changedAtMs = this.o.scheduler.nowMs;
    this.confirmed.clear();
    this.stats.refreshes += 1;
    this.o.onPlacement?.(this.placementNow);
    return true;
  }

  private place(members: readonly string[]): Placement {
    return this.o.placementOf ? this.o.placementOf(members) : new Placement(members, this.o.replicas, this.o.bucketCount);
  }

  owners(bucket: number): readonly string[] {
    return this.placementNow.ownersOf(bucket);
  }

  ownsBucket(bucket: number): boolean {
    return this.owned[bucket] === 1;
  }

  private ownedUnder(placement: Placement): Uint8Array {
    const owned = new Uint8Array(this.o.bucketCount);
    for (const b of placement.ownedBy(this.o.selfId)) owned[b] = 1;
    return owned;
  }

  inHandoff(): boolean {
    return this.o.scheduler.nowMs - this.changedAtMs < this.o.handoffWindowMs;
  }

  /** Calls `done` with the number of remote owners that committed the entry, once each answered or failed. */
  sendToOwners(entry: KvEntry, bucket: number, done: (committed: number) => void): void {
    const remote = this.owners(bucket).filter((id) => id !== this.o.selfId);
    let settled = 0;
    let committed = 0;
    const one = (ok: boolean): void => {
      settled += 1;
      if (ok) committed += 1;
      if (settled === remote.length) done(committed);
    };
    // Promise.allSettled([]) settles after the current task.
    if (remote.length === 0) {
      this.o.scheduler.after(0, () => done(0));
      return;
    }
    for (const owner of remote) this.enqueue(owner, entry, () => one(true), () => one(false));
  }

  /** Asks owners (first to last) for the keys; undefined values for keys no owner answered. */
  readFromOwners(keys: readonly string[], bucketOf: (key: string) => number, skipSelf: boolean, done: (values: Map<string, Uint8Array | undefined>) => void): void {
    const byOwnerList = new Map<string, string[]>();
    for (const key of keys) {
      const owners = this.owners(bucketOf(key)).filter((id) => !skipSelf || id !== this.o.selfId);
      const group = owners.join('\n');
      const list = byOwnerList.get(group);
      if (list) list.push(key);
      else byOwnerList.set(group, [key]);
    }
    const out = new Map<string, Uint8Array | undefined>();
    let groupsLeft = byOwnerList.size;
    const groupDone = (): void => {
      groupsLeft -= 1;
      if (groupsLeft === 0) done(out);
    };
    for (const [group, groupKeys] of byOwnerList) {
      const owners = group === '' ? [] : group.split('\n');
      const tryOwner = (i: number): void => {
        if (!this.alive) return;
        if (i >= owners.length) return groupDone();
        const next = (): void => tryOwner(i + 1);
        this.o.rpc(owners[i]!, (conn) => {
          this.stats.remoteReads += 1;
          conn.request({ kind: 'get-request', keys: groupKeys }, this.o.requestTimeoutMs(), (answer) => {
            if (answer.kind !== 'get-response') return next();
            groupKeys.forEach((k, j) => {
              const v = answer.values[j];
              if (v !== undefined) out.set(k, v);
              else if (!out.has(k)) out.set(k, undefined);
            });
            if (!skipSelf || groupKeys.every((k) => out.get(k) !== undefined)) return groupDone();
            next();
          }, next);
        }, next);
      };
      // `await` on the first rpc() runs after the current task at the earliest.
      this.o.scheduler.after(0, () => tryOwner(0));
    }
    if (byOwnerList.size === 0) this.o.scheduler.after(0, () => done(out));
  }

  /** The buckets to compare with each other member: those both own, plus held ones we no longer own, where the peer owns them. */
  syncPlan(heldBuckets: readonly number[]): Map<string, number[]> {
    const plan = new Map<string, number[]>();
    const held = new Set(heldBuckets);
    for (let b = 0; b < this.o.bucketCount; b++) {
      const owners = this.owners(b);
      const mine = this.owned[b] === 1;
      if (!mine && !held.has(b)) continue;
      for (const peer of owners) {
        if (peer === this.o.selfId) continue;
        const list = plan.get(peer);
        if (list) list.push(b);
        else plan.set(peer, [b]);
      }
    }
    return plan;
  }

  /**
   * After a complete sync round with `peer`: the buckets this node may now
   * drop (every owner confirmed the same versions). `fingerprintOf` (the
   * proposed fix): the bucket's fingerprint the peer confirmed; confirmations
   * of another fingerprint no longer count.
   */
  confirm(peer: string, compared: readonly number[], differing: ReadonlySet<number>, fingerprintOf?: (bucket: number) => string): number[] {
    const drop: number[] = [];
    for (const b of compared) {
      if (this.ownsBucket(b) || differing.has(b)) continue;
      const fingerprint = fingerprintOf?.(b);
      let c = this.confirmed.get(b);
      if (!c || c.fingerprint !== fingerprint) this.confirmed.set(b, (c = { fingerprint, peers: new Set() }));
      const set = c.peers;
      set.add(peer);
      if (this.owners(b).every((o) => set.has(o))) {
        drop.push(b);
        this.confirmed.delete(b);
      }
    }
    return drop;
  }

  private enqueue(owner: string, entry: KvEntry, resolve: () => void, reject: () => void): void {
    let batch = this.outbox.get(owner);
    if (!batch) {
      batch = { entries: [], waiters: [] };
      this.outbox.set(owner, batch);
    }
    batch.entries.push(entry);
    batch.waiters.push({ resolve, reject });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.o.scheduler.after(0, () => this.flush());
    }
  }

  /** One apply request per owner per turn. */
  private flush(): void {
    this.flushScheduled = false;
    if (!this.alive) return;
    const batches = [...this.outbox];
    this.outbox.clear();
    for (const [owner, batch] of batches) {
      this.stats.applyRequests += 1;
      const fail = (): void => {
        if (!this.alive) return;
        this.stats.applyFailures += 1;
        for (const w of batch.waiters) w.reject();
      };
      this.o.rpc(owner, (conn) => {
        conn.request({ kind: 'apply-request', entries: batch.entries }, this.o.requestTimeoutMs(), (answer) => {
          if (!this.alive) return;
          if (answer.kind !== 'apply-response') return fail();
          for (const w of batch.waiters) w.resolve();
        }, fail);
      }, fail);
    }
  }
}
