import type { KvEntry } from '../core/kv/entry.js';
import { Placement } from '../core/kv/placement.js';
import type { FramedConnection } from './connection.js';
import { entryToWire, keyToBytes } from './kv-codec.js';
import type { Logger } from './log.js';

/**
 * A partitioned cache (`replicas: R` in the cluster file): which node owns
 * which bucket, writes sent straight to a key's owners, reads of keys this
 * node does not own asked of an owner, and the hand-over of buckets a node
 * stopped owning. The placement is recomputed whenever the live members
 * change; every node with the same view computes the same owners.
 */
export interface KvPartitionOptions {
  readonly selfId: string;
  readonly replicas: number;
  readonly bucketCount: number;
  /** Live member ids, this node's included. */
  readonly members: () => readonly string[];
  readonly rpc: (peerId: string) => Promise<FramedConnection>;
  readonly log: Logger;
  readonly requestTimeoutMs: number;
  readonly monotonicMs: () => number;
}

/** For this long after the owners changed, a local miss also asks the other owners (the new owner may still be catching up). */
const HANDOFF_WINDOW_MS = 10_000;

interface OwnerBatch {
  entries: KvEntry[];
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

export class KvPartition {
  private placement: Placement;
  private membersKey = '';
  private changedAtMs = -Infinity;
  private readonly outbox = new Map<string, OwnerBatch>();
  private flushScheduled = false;
  /**
   * Per bucket this node holds but no longer owns: the owners that confirmed
   * they hold the same versions, and the bucket's fingerprint they confirmed.
   */
  private readonly confirmed = new Map<number, { fingerprint: string; owners: Set<string> }>();

  constructor(private readonly options: KvPartitionOptions) {
    this.placement = new Placement([options.selfId], options.replicas, options.bucketCount);
    this.refresh();
  }

  /** Recomputes the placement when the live members changed; true when it did. */
  refresh(): boolean {
    const members = [...new Set([...this.options.members(), this.options.selfId])].sort();
    const key = members.join('\n');
    if (key === this.membersKey) return false;
    this.membersKey = key;
    this.placement = new Placement(members, this.options.replicas, this.options.bucketCount);
    this.changedAtMs = this.options.monotonicMs();
    this.confirmed.clear();
    this.options.log.info({ members: members.length, replicas: this.options.replicas, owned: this.placement.ownedBy(this.options.selfId).length }, 'cache placement changed');
    return true;
  }

  owners(bucket: number): readonly string[] {
    return this.placement.ownersOf(bucket);
  }

  ownsBucket(bucket: number): boolean {
    return this.placement.isOwner(bucket, this.options.selfId);
  }

  /** Whether a local miss may be a key a new owner has not caught up on yet. */
  inHandoff(): boolean {
    return this.options.monotonicMs() - this.changedAtMs < HANDOFF_WINDOW_MS;
  }

  /**
   * Sends entries to their remote owners (batched per owner per turn); the
   * promise of each entry settles when every one of its remote owners answered
   * or failed. Resolves the number of owners that committed it, per entry.
   */
  sendToOwners(entry: KvEntry, bucket: number): Promise<number> {
    const remote = this.owners(bucket).filter((id) => id !== this.options.selfId);
    return Promise.allSettled(remote.map((owner) => this.enqueue(owner, entry))).then((results) => results.filter((r) => r.status === 'fulfilled').length);
  }

  /** Asks owners (first to last) for the keys; undefined values for keys no owner answered. */
  async readFromOwners(keys: readonly string[], bucketOf: (key: string) => number, skipSelf: boolean): Promise<Map<string, Uint8Array | undefined>> {
    const byOwnerList = new Map<string, string[]>();
    for (const key of keys) {
      const owners = this.owners(bucketOf(key)).filter((id) => !skipSelf || id !== this.options.selfId);
      const group = owners.join('\n');
      const list = byOwnerList.get(group);
      if (list) list.push(key);
      else byOwnerList.set(group, [key]);
    }
    const out = new Map<string, Uint8Array | undefined>();
    await Promise.all(
      [...byOwnerList].map(async ([group, groupKeys]) => {
        for (const owner of group === '' ? [] : group.split('\n')) {
          try {
            const conn = await this.options.rpc(owner);
            const answer = await conn.request({ body: { case: 'kvGetRequest', value: { keys: groupKeys.map(keyToBytes), local: true } } }, this.options.requestTimeoutMs);
            if (answer.body.case !== 'kvGetResponse') continue;
            const values = answer.body.value.values;
            groupKeys.forEach((k, i) => {
              const v = values[i];
              if (v?.found) out.set(k, v.value);
              else if (!out.has(k)) out.set(k, undefined);
            });
            if (!skipSelf || groupKeys.every((k) => out.get(k) !== undefined)) return;
          } catch {
            // That owner is unreachable: try the next one.
          }
        }
      }),
    );
    return out;
  }

  /**
   * The buckets to compare with each other member: those both own, plus
   * those this node holds without owning them any more, where the peer owns them.
   */
  syncPlan(heldBuckets: readonly number[]): Map<string, number[]> {
    const plan = new Map<string, number[]>();
    const add = (peer: string, bucket: number) => {
      const list = plan.get(peer);
      if (list) list.push(bucket);
      else plan.set(peer, [bucket]);
    };
    const held = new Set(heldBuckets);
    for (let b = 0; b < this.options.bucketCount; b++) {
      const owners = this.owners(b);
      const mine = owners.includes(this.options.selfId);
      if (!mine && !held.has(b)) continue;
      for (const peer of owners) if (peer !== this.options.selfId) add(peer, b);
    }
    return plan;
  }

  /**
   * After a complete sync round with `peer` over `compared` buckets, of which
   * `differing` differed: the buckets this node may now drop, because every
   * owner has confirmed it holds the same versions — the same fingerprint
   * (a write that lands here meanwhile changes it, and the confirmations
   * start over, so the write is not dropped with the bucket).
   */
  confirm(peer: string, compared: readonly number[], differing: ReadonlySet<number>, fingerprintOf: (bucket: number) => string): number[] {
    const drop: number[] = [];
    for (const b of compared) {
      if (this.ownsBucket(b) || differing.has(b)) continue;
      const fingerprint = fingerprintOf(b);
      let c = this.confirmed.get(b);
      if (!c || c.fingerprint !== fingerprint) {
        c = { fingerprint, owners: new Set<string>() };
        this.confirmed.set(b, c);
      }
      c.owners.add(peer);
      if (this.owners(b).every((o) => c.owners.has(o))) {
        drop.push(b);
        this.confirmed.delete(b);
      }
    }
    return drop;
  }

  private enqueue(owner: string, entry: KvEntry): Promise<void> {
    return new Promise((resolve, reject) => {
      let batch = this.outbox.get(owner);
      if (!batch) {
        batch = { entries: [], waiters: [] };
        this.outbox.set(owner, batch);
      }
      batch.entries.push(entry);
      batch.waiters.push({ resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** One apply request per owner per turn. */
  private flush(): void {
    this.flushScheduled = false;
    const batches = [...this.outbox];
    this.outbox.clear();
    for (const [owner, batch] of batches) {
      this.options
        .rpc(owner)
        .then((conn) => conn.request({ body: { case: 'kvApplyRequest', value: { entries: batch.entries.map(entryToWire) } } }, this.options.requestTimeoutMs))
        .then((answer) => {
          if (answer.body.case !== 'kvApplyResponse') throw new Error(answer.body.case === 'error' ? answer.body.value.message : `owner ${owner} answered ${answer.body.case ?? 'nothing'}`);
          for (const w of batch.waiters) w.resolve();
        })
        .catch((err: Error) => {
          for (const w of batch.waiters) w.reject(err);
        });
    }
  }
}
