import type { KvEntry } from '../core/kv/entry.js';
import type { Placement } from '../core/kv/placement.js';
import { ENTRY_OVERHEAD_BYTES, KV_REPLICA_DEFAULTS, KvReplica } from '../core/kv/replica.js';
import type { KvListener } from './kv-node.js';
import { PartitionOwners } from './kv-partition-owners.js';
import { SimPeerRpc } from './kv-partition-rpc.js';
import type { PartFrame, PartRequest, PartResponse, RpcConn } from './kv-partition-rpc.js';
import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';
import type { StreamNet } from './streams.js';

/**
 * One incarnation of a node's cache service with `replicas: R`, driving
 * KvReplica as src/runtime/kv-service.ts does when it has a KvPartition (the
 * sim may not import the runtime; keep the two in step):
 *
 * - put/del at any node: the node stamps the write (its clock ceiling on
 *   disk first); when it owns the key's bucket it applies and commits it in
 *   its own group commit; it sends it to every other owner in an apply
 *   request (one per owner per turn). The writer is acknowledged once every
 *   owner answered or failed (request timeout) and at least one committed;
 *   else the write fails ("unavailable"). A delete first reads the key.
 * - an owner applies what an apply request carries (whether or not it
 *   thinks it owns the bucket) and answers after its commit;
 * - get: keys of buckets this node owns are read here (and, within the
 *   hand-off window after the owners changed, a miss is asked of the other
 *   owners); the rest are asked of an owner (get with `local`);
 * - every sync interval and when the placement changes: anti-entropy with
 *   each co-owner restricted to the buckets both own, plus the buckets held
 *   here but no longer owned (with their owners); after a complete round the
 *   buckets that every owner confirmed are dropped (the hand-over).
 *
 * As in kv-node.ts, a "turn" is a window of [0, turnMsMax] simulated ms whose
 * writes share one commit at its end; a crash inside it loses them.
 */
export interface KvPartitionKnobs {
  readonly turnMsMax: number;
  /** kv-service partitionSyncIntervalMs (5 s in the runtime). */
  readonly syncIntervalMs: number;
  readonly syncVersionsMax: number;
  readonly syncBytesMax: number;
  readonly syncTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly dialTimeoutMs: number;
  readonly frameBytesTarget: number;
  readonly pendingWritesMax: number;
  readonly handoffWindowMs: number;
  /**
   * As kv-service does (the fix this simulation found; false shows the bug): a bucket is handed
   * over only if its fingerprint is still the one the owners confirmed (the
   * digest of the round), and a confirmation counts only for the fingerprint
   * it was given for. Without it, an entry that arrives while the last
   * owner's answer is on its way is dropped with the bucket (seed 184).
   */
  readonly handOverChecksFingerprint: boolean;
  /**
   * As kv-service does (found by this simulation): an owner answers an apply request after the
   * commit of everything it holds uncommitted. Without it, an entry that lost
   * to an uncommitted newer version is acknowledged at once, and a crash
   * before the commit loses both.
   */
  readonly applyAnswersAfterCommit: boolean;
  /**
   * As kv-service does (found by this simulation): an owner that refuses an entry stamped too
   * far ahead of its clock answers the apply with an error instead of success,
   * so the writer does not count it as stored.
   */
  readonly applyRefusesFuture: boolean;
}

export const KV_PARTITION_SIM_DEFAULTS: KvPartitionKnobs = Object.freeze({
  turnMsMax: 2,
  syncIntervalMs: 5_000,
  syncVersionsMax: 4_096,
  syncBytesMax: 512 * 1024,
  syncTimeoutMs: 30_000,
  requestTimeoutMs: 2_000,
  dialTimeoutMs: 2_000,
  frameBytesTarget: 1024 * 1024,
  pendingWritesMax: 200_000,
  handoffWindowMs: 10_000,
  handOverChecksFingerprint: true,
  applyAnswersAfterCommit: true,
  applyRefusesFuture: true,
});

/** The fixes kv-service/kv-partition now have, all on (see KvPartitionKnobs). */
export const KV_PARTITION_FIXES: Pick<KvPartitionKnobs, 'handOverChecksFingerprint' | 'applyAnswersAfterCommit' | 'applyRefusesFuture'> = Object.freeze({
  handOverChecksFingerprint: true,
  applyAnswersAfterCommit: true,
  applyRefusesFuture: true,
});

/** What checkers hear about a partitioned run, beyond what the full-replication monitor hears. */
export interface KvPartitionListener extends KvListener {
  /** A write failed: no owner committed it (as far as the writer learnt). */
  onUnavailable?(nodeId: string, writeId: number, entry: KvEntry, nowMs: number): void;
  /** A read at `nodeId` answered (undefined: absent). */
  onRead?(nodeId: string, keys: readonly string[], values: readonly (Uint8Array | undefined)[], asked: number, nowMs: number): void;
  /** A bucket this node no longer owns was dropped after every owner confirmed it. */
  onHandOver?(nodeId: string, bucket: number, keys: readonly string[], owners: readonly string[], nowMs: number): void;
  /** An apply request was taken in: `won` of its entries are now held, `pending` writes wait for the commit (tests may crash the node here). */
  onApply?(nodeId: string, entries: readonly KvEntry[], won: number, pending: number, nowMs: number): void;
  /** Keys dropped from memory while some of their versions still waited for the commit (they reach the disk after the drop). */
  onDroppedPending?(nodeId: string, bucket: number, entries: readonly KvEntry[], nowMs: number): void;
}

/** The durable store of one node (src/store/kv-store.ts): upserts per group commit, removes on hand-over, the clock ceiling. */
export class PartitionDisk {
  private readonly rows = new Map<string, KvEntry>();
  commits = 0;
  ceiling = 0;

  get size(): number {
    return this.rows.size;
  }

  write(entries: readonly KvEntry[]): void {
    if (entries.length === 0) return;
    this.commits += 1;
    for (const e of entries) this.rows.set(e.key, e);
  }

  remove(keys: readonly string[]): void {
    for (const k of keys) this.rows.delete(k);
  }

  get(key: string): KvEntry | undefined {
    return this.rows.get(key);
  }

  all(): KvEntry[] {
    return [...this.rows.values()];
  }
}

export interface KvPartitionContext {
  readonly selfId: string;
  readonly bucketCount: number;
  readonly replicas: number;
  readonly scheduler: Scheduler;
  readonly net: StreamNet<PartFrame>;
  readonly random: SimRandom;
  readonly knobs: () => KvPartitionKnobs;
  readonly wallMs: () => number;
  readonly members: () => readonly string[];
  readonly placementOf?: (members: readonly string[]) => Placement;
  readonly notify: (call: (l: KvPartitionListener) => void) => void;
}

interface PendingWrite {
  readonly entry: KvEntry;
  readonly writeId?: number;
  readonly onDone?: () => void;
}

export type WriteOutcome = 'acknowledged' | 'unavailable' | 'busy' | 'absent' | 'crashed';

export class KvPartitionNode {
  readonly replica: KvReplica;
  readonly rpc: SimPeerRpc;
  readonly owners: PartitionOwners;
  readonly stats = { received: 0, stale: 0, future: 0, dropped: 0, synced: 0, pushed: 0, syncRounds: 0, handedOver: 0, bucketsDropped: 0, localWrites: 0, acked: 0, unavailable: 0, strayApplies: 0 };
  private pending: PendingWrite[] = [];
  /** Told after the next group commit (applyAnswersAfterCommit). */
  private barriers: (() => void)[] = [];
  private flushScheduled = false;
  private readonly syncing = new Set<string>();
  /** The bucket lists of the rounds syncAll planned, until each round ends (or never starts). */
  private readonly rounds = new Set<readonly number[]>();
  private alive = true;

  constructor(
    private readonly ctx: KvPartitionContext,
    private readonly disk: PartitionDisk,
  ) {
    this.replica = new KvReplica({ selfId: ctx.selfId, bucketCount: ctx.bucketCount, keysMax: KV_REPLICA_DEFAULTS.keysMax, clockAheadMaxMs: KV_REPLICA_DEFAULTS.clockAheadMaxMs });
    this.replica.restore(disk.all());
    this.replica.restoreClock(ctx.wallMs(), disk.ceiling);
    this.rpc = new SimPeerRpc({
      self: ctx.selfId,
      net: ctx.net,
      scheduler: ctx.scheduler,
      dialTimeoutMs: () => ctx.knobs().dialTimeoutMs,
      serve: (frame, conn) => this.serve(frame, conn),
    });
    this.owners = new PartitionOwners({
      selfId: ctx.selfId,
      replicas: ctx.replicas,
      bucketCount: ctx.bucketCount,
      scheduler: ctx.scheduler,
      members: ctx.members,
      rpc: (peer, ok, fail) => this.rpc.connect(peer, ok, fail),
      requestTimeoutMs: () => ctx.knobs().requestTimeoutMs,
      handoffWindowMs: ctx.knobs().handoffWindowMs,
      placementOf: ctx.placementOf,
    });
    this.syncEvery();
    this.syncAll();
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * Sync rounds under way (or waiting for their connection) whose plan holds a
   * bucket this node neither owns nor holds any more: planned before a
   * hand-over, they will fetch that bucket back (and it is handed over again).
   */
  get staleRounds(): number {
    let n = 0;
    for (const round of this.rounds) if (round.some((b) => !this.owners.ownsBucket(b) && this.replica.bucketSize(b) === 0)) n += 1;
    return n;
  }

  get isAlive(): boolean {
    return this.alive;
  }

  /** The process died: the turn's writes are lost. Returns them. */
  halt(): PendingWrite[] {
    this.alive = false;
    this.rpc.halt();
    this.owners.halt();
    const lost = this.pending;
    this.pending = [];
    this.barriers = [];
    return lost;
  }

  /** Membership changed (kv-service onMembersChanged): a new placement starts a sync round. */
  membersChanged(): void {
    if (!this.alive) return;
    if (this.owners.refresh()) this.ctx.scheduler.after(0, () => this.syncAll());
  }

  /** Membership declared `peer` dead (node.ts drops its request connection). */
  peerDead(peer: string): void {
    if (this.alive) this.rpc.drop(peer);
  }

  // ---- client operations (KvService.put / del / getMany) ----

  /** A put at this node; `done` tells the writer's outcome. Returns the stamped entry, or undefined when refused. */
  put(writeId: number, key: string, value: Uint8Array, ttlMs: number, done?: (outcome: WriteOutcome) => void): KvEntry | undefined {
    if (!this.admit()) {
      done?.('busy');
      return undefined;
    }
    const now = this.ctx.wallMs();
    const entry = this.stampLocal(writeId, key, value, now, ttlMs > 0 ? now + ttlMs : 0);
    this.replicate(writeId, entry, done);
    return entry;
  }

  /** A delete: the key is read first (here or at an owner); only a present key gets a tombstone. */
  del(writeId: number, key: string, done?: (outcome: WriteOutcome, entry?: KvEntry) => void): void {
    if (!this.admit()) return done?.('busy');
    this.getMany([key], (values) => {
      if (!this.alive) return done?.('crashed');
      if (values[0] === undefined) return done?.('absent');
      const entry = this.stampLocal(writeId, key, undefined, this.ctx.wallMs(), 0);
      this.replicate(writeId, entry, (outcome) => done?.(outcome, entry));
    });
  }

  /** Reads as KvService.getMany does with a partition. */
  getMany(keys: readonly string[], done: (values: (Uint8Array | undefined)[]) => void): void {
    const r = this.replica;
    const now = this.ctx.wallMs();
    const local = keys.map((k) => (this.owners.ownsBucket(r.bucketOf(k)) ? r.get(k, now)?.value : undefined));
    const ask = keys.filter((k, i) => local[i] === undefined && (!this.owners.ownsBucket(r.bucketOf(k)) || this.owners.inHandoff()));
    const finish = (values: (Uint8Array | undefined)[]): void => {
      this.ctx.notify((l) => l.onRead?.(this.ctx.selfId, keys, values, ask.length, this.ctx.scheduler.nowMs));
      done(values);
    };
    // Promise.resolve(local): the caller's continuation runs after the current task.
    if (ask.length === 0) {
      this.ctx.scheduler.after(0, () => {
        if (this.alive) finish(local);
      });
      return;
    }
    this.owners.readFromOwners(ask, (k) => r.bucketOf(k), true, (remote) => {
      if (this.alive) finish(keys.map((k, i) => local[i] ?? remote.get(k)));
    });
  }

  private admit(): boolean {
    if (this.pending.length < this.ctx.knobs().pendingWritesMax) return true;
    this.ctx.notify((l) => l.onRefused?.(this.ctx.selfId, 'busy', this.ctx.scheduler.nowMs));
    return false;
  }

  /** kv-service stampLocal: a version for the owners, with the clock ceiling on disk before the stamp leaves. */
  private stampLocal(writeId: number, key: string, value: Uint8Array | undefined, nowMs: number, expiresMs: number): KvEntry {
    const entry = this.replica.stamp(key, value, nowMs, expiresMs);
    const ceiling = this.replica.takeCeiling();
    if (ceiling !== undefined) this.disk.ceiling = ceiling;
    this.stats.localWrites += 1;
    this.ctx.notify((l) => l.onWrite?.(this.ctx.selfId, writeId, entry, this.ctx.scheduler.nowMs));
    return entry;
  }

  /** kv-service replicate: here when this node owns the bucket, and an apply request to each other owner. */
  private replicate(writeId: number, entry: KvEntry, done?: (outcome: WriteOutcome) => void): void {
    const bucket = this.replica.bucketOf(entry.key);
    let local: number | undefined;
    let remote: number | undefined;
    const settle = (): void => {
      if (local === undefined || remote === undefined || !this.alive) return;
      if (local + remote === 0) {
        this.stats.unavailable += 1;
        this.ctx.notify((l) => l.onUnavailable?.(this.ctx.selfId, writeId, entry, this.ctx.scheduler.nowMs));
        return done?.('unavailable');
      }
      this.stats.acked += 1;
      this.ctx.notify((l) => l.onAck?.(this.ctx.selfId, writeId, entry, this.ctx.scheduler.nowMs));
      done?.('acknowledged');
    };
    if (this.owners.ownsBucket(bucket) && this.replica.apply(entry, this.ctx.wallMs())) {
      this.enqueue({ entry, writeId, onDone: () => {
        local = 1;
        settle();
      } });
    } else {
      this.ctx.scheduler.after(0, () => {
        local = 0;
        settle();
      });
    }
    this.owners.sendToOwners(entry, bucket, (committed) => {
      remote = committed;
      settle();
    });
  }

  // ---- group commit ----

  private enqueue(w: PendingWrite): void {
    this.pending.push(w);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.ctx.scheduler.after(this.ctx.random.int(0, this.ctx.knobs().turnMsMax), () => this.flush());
  }

  /** Group commit: the turn's writes go to the disk, then their waiters are told. */
  private flush(): void {
    if (!this.alive) return;
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const entries = batch.map((w) => w.entry);
    this.disk.write(entries);
    const nowMs = this.ctx.scheduler.nowMs;
    this.ctx.notify((l) => l.onCommit?.(this.ctx.selfId, entries, nowMs));
    for (const w of batch) w.onDone?.();
    const barriers = this.barriers;
    this.barriers = [];
    for (const b of barriers) b();
  }

  /** Runs `then` once everything now waiting for the commit is on disk (after the current task when nothing is). */
  private afterCommit(then: () => void): void {
    if (this.pending.length === 0) this.ctx.scheduler.after(0, then);
    else this.barriers.push(then);
  }

  /**
   * Applies entries from another node (an apply request, a sync push or a
   * fetch answer); the winners go into the turn's commit. `committed` runs
   * once every winner is on disk (after the current task when none won).
   */
  private receive(entries: readonly KvEntry[], committed?: () => void): { won: number; dropped: number; future: number } {
    const now = this.ctx.wallMs();
    let won = 0;
    let dropped = 0;
    let future = 0;
    let left = 1;
    const one = (): void => {
      left -= 1;
      if (left === 0) committed?.();
    };
    for (const sent of entries) {
      // What crossed the wire is the receiver's own copy (as a decoded frame is).
      const entry: KvEntry = { ...sent, value: sent.value?.slice() };
      this.stats.received += 1;
      if (this.pending.length >= this.ctx.knobs().pendingWritesMax) {
        this.stats.dropped += 1;
        dropped += 1;
        continue;
      }
      const futureBefore = this.replica.stats.future;
      if (!this.replica.apply(entry, now)) {
        if (this.replica.stats.future > futureBefore) {
          this.stats.future += 1;
          future += 1;
        } else this.stats.stale += 1;
        continue;
      }
      won += 1;
      left += 1;
      this.enqueue({ entry, onDone: one });
    }
    this.ctx.scheduler.after(0, one);
    return { won, dropped, future };
  }

  // ---- requests from other nodes (api/server.ts -> kv-service onRpcEnvelope, kv-handler get) ----

  private serve(frame: Exclude<PartFrame, PartResponse | { kind: 'hello' }>, conn: RpcConn): void {
    if (!this.alive) return;
    switch (frame.kind) {
      case 'batch':
        this.receive(frame.entries);
        return;
      case 'apply-request':
        return this.answerApply(frame, conn);
      case 'get-request': {
        const now = this.ctx.wallMs();
        conn.reply(frame, { kind: 'get-response', values: frame.keys.map((k) => this.replica.get(k, now)?.value) });
        return;
      }
      case 'sync-request': {
        const only = frame.only.length > 0 ? new Set(frame.only) : undefined;
        const answer = this.replica.answerDigest(frame.digest, this.ctx.knobs().syncVersionsMax, only);
        if (!answer) throw new Error(`${this.ctx.selfId}: a digest of another shape`);
        conn.reply(frame, { kind: 'sync-response', buckets: answer.buckets, versions: answer.versions, more: answer.more });
        return;
      }
      case 'fetch-request':
        this.flush();
        conn.reply(frame, { kind: 'fetch-response', entries: this.replica.answerFetch(frame.keys, this.ctx.knobs().syncBytesMax) });
        return;
    }
  }

  /** kv-service answerApply: stores the writer's entries, answers after the commit (busy when some were dropped). */
  private answerApply(req: Extract<PartRequest, { kind: 'apply-request' }>, conn: RpcConn): void {
    for (const e of req.entries) if (!this.owners.ownsBucket(this.replica.bucketOf(e.key))) this.stats.strayApplies += 1;
    const knobs = this.ctx.knobs();
    let answered = false;
    const answer = (): void => {
      if (this.alive && !answered) conn.reply(req, { kind: 'apply-response' });
    };
    const { won, dropped, future } = this.receive(req.entries, knobs.applyAnswersAfterCommit ? undefined : answer);
    if (dropped > 0) {
      answered = true;
      conn.reply(req, { kind: 'error', code: 'busy' });
    } else if (future > 0 && knobs.applyRefusesFuture) {
      answered = true;
      conn.reply(req, { kind: 'error', code: 'clock' });
    } else if (knobs.applyAnswersAfterCommit) {
      this.afterCommit(answer);
    }
    this.ctx.notify((l) => l.onApply?.(this.ctx.selfId, req.entries, won, this.pending.length, this.ctx.scheduler.nowMs));
  }

  // ---- anti-entropy and hand-over ----

  private syncEvery(): void {
    this.ctx.scheduler.after(this.ctx.knobs().syncIntervalMs, () => {
      if (!this.alive) return;
      this.syncAll();
      this.syncEvery();
    });
  }

  /** kv-service syncAll with a partition: the sync plan's buckets with each peer. */
  syncAll(): void {
    if (!this.alive) return;
    this.owners.refresh();
    for (const [peer, buckets] of this.owners.syncPlan(this.replica.nonEmptyBuckets())) {
      if (this.syncing.has(peer)) continue;
      // As in kv-service: the plan is made now and used when the connection is there (a hand-over meanwhile
      // may have dropped some of its buckets; the round then fetches them back, to hand them over again later).
      this.rounds.add(buckets);
      const ended = (): void => {
        this.rounds.delete(buckets);
      };
      this.rpc.connect(peer, (conn) => this.syncWith(peer, conn, buckets, ended), ended);
    }
  }

  /** kv-service syncWith with `only`: one round over those buckets, then the hand-over of what every owner confirmed. */
  private syncWith(peer: string, conn: RpcConn, only: readonly number[], ended: () => void): void {
    if (!this.alive || this.syncing.has(peer)) return ended();
    this.syncing.add(peer);
    this.stats.syncRounds += 1;
    const done = (again: boolean): void => {
      if (!this.alive) return;
      ended();
      this.syncing.delete(peer);
      // setImmediate in the runtime: after the commit of the current turn.
      if (again) this.ctx.scheduler.after(this.ctx.knobs().turnMsMax, () => this.syncAll());
    };
    const { syncTimeoutMs, syncVersionsMax } = this.ctx.knobs();
    const sent = this.replica.digest();
    conn.request({ kind: 'sync-request', digest: sent, only }, syncTimeoutMs, (answer) => {
      if (!this.alive) return;
      if (answer.kind !== 'sync-response') return done(false);
      // Nothing may leave this node before it is on its disk.
      this.flush();
      const r = this.replica;
      const buckets = answer.buckets.filter((b) => b < r.bucketCount);
      const plan = r.reconcile(buckets, answer.versions);
      if (plan.push.length > 0) {
        for (const frame of this.framesOf(plan.push)) conn.send(frame);
        this.stats.pushed += plan.push.length;
      }
      let fetched = 0;
      let truncated = false;
      const fetchFrom = (i: number): void => {
        if (i >= plan.fetch.length) {
          this.stats.synced += fetched;
          const more = answer.more || truncated;
          if (!more) this.handOver(peer, only, new Set(buckets), sent);
          return done(more);
        }
        const keys = plan.fetch.slice(i, i + syncVersionsMax);
        conn.request({ kind: 'fetch-request', keys }, syncTimeoutMs, (reply) => {
          if (!this.alive) return;
          if (reply.kind !== 'fetch-response') return fetchFrom(plan.fetch.length);
          // A fetch answer is bounded in bytes: what did not fit is found again in the next round.
          if (reply.entries.length < keys.length) truncated = true;
          fetched += this.receive(reply.entries).won;
          fetchFrom(i + syncVersionsMax);
        }, () => done(false));
      };
      fetchFrom(0);
    }, () => done(false));
  }

  /** kv-service handOver: drops the buckets this node no longer owns once every owner confirmed it holds the same versions. */
  private handOver(peer: string, compared: readonly number[], differing: ReadonlySet<number>, sent: Uint8Array): void {
    let confirmable = differing;
    let fingerprints: ((bucket: number) => string) | undefined;
    if (this.ctx.knobs().handOverChecksFingerprint) {
      // The fix (kv-service handOver): the peer confirmed the versions of the digest we sent; a
      // bucket that changed since (an apply, a push, a fetch of another round)
      // is not confirmed, and a confirmation holds for that fingerprint only.
      const now = this.replica.digest();
      const fp = (d: Uint8Array, b: number): string => d.subarray(b * 8, b * 8 + 8).join(',');
      const changed = new Set(differing);
      for (const b of compared) if (fp(now, b) !== fp(sent, b)) changed.add(b);
      confirmable = changed;
      fingerprints = (b) => fp(sent, b);
    }
    for (const bucket of this.owners.confirm(peer, compared, confirmable, fingerprints)) {
      const waiting = this.pending.filter((w) => this.replica.bucketOf(w.entry.key) === bucket).map((w) => w.entry);
      const keys = this.replica.dropBucket(bucket);
      this.disk.remove(keys);
      this.stats.bucketsDropped += 1;
      this.stats.handedOver += keys.length;
      const nowMs = this.ctx.scheduler.nowMs;
      if (keys.length > 0) this.ctx.notify((l) => l.onHandOver?.(this.ctx.selfId, bucket, keys, this.owners.owners(bucket), nowMs));
      if (waiting.length > 0) this.ctx.notify((l) => l.onDroppedPending?.(this.ctx.selfId, bucket, waiting, nowMs));
    }
  }

  /** Batch frames of about frameBytesTarget bytes each, cut as the runtime's encodeBatch cuts them. */
  private framesOf(entries: readonly KvEntry[]): PartFrame[] {
    const target = this.ctx.knobs().frameBytesTarget;
    const frames: PartFrame[] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < entries.length; i++) {
      bytes += entries[i]!.key.length + (entries[i]!.value?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
      if (bytes >= target || i === entries.length - 1) {
        frames.push({ kind: 'batch', entries: entries.slice(start, i + 1) });
        start = i + 1;
        bytes = 0;
      }
    }
    return frames;
  }
}
