import { createHash } from 'node:crypto';
import type { KvEntry } from '../core/kv/entry.js';
import { globMatch } from '../core/kv/glob.js';
import { hlcOf, hlcWallMs } from '../core/kv/hlc.js';
import { ENTRY_OVERHEAD_BYTES, KV_REPLICA_DEFAULTS, KvReplica } from '../core/kv/replica.js';
import { KvStore } from '../store/kv-store.js';
import { KvPartition } from './kv-partition.js';
import type { Envelope, KvEntry as WireEntry } from '../wire/index.js';
import type { FramedConnection } from './connection.js';
import { KV_LIMITS_DEFAULT, KvError } from './kv-access.js';
import type { KvAccess, KvLimits, KvPutOptions } from './kv-access.js';
import { decodeKvBatchEnvelope, encodeKvBatchFrame } from './kv-batch-codec.js';
import { entryFromWire, entryToWire, keyFromBytes, keyToBytes, versionFromWire, versionToWire } from './kv-codec.js';
import type { Logger } from './log.js';
import { RateLimitedLog } from './log.js';
import type { Service } from './supervisor.js';

/**
 * The replicated cache on a node (seeds 000 and 002). The core replica
 * decides which version of a key wins; this service stores, answers and
 * sends. Writes are group-committed: every write of one turn of the event
 * loop goes to SQLite in one transaction, and only then are the writers
 * answered and the changes flooded to the overlay neighbours, so an
 * acknowledged write is on disk at its node before anyone hears of it.
 *
 * Anti-entropy (digest of bucket fingerprints, then the versions of the
 * buckets that differ, then the entries that are newer on either side)
 * runs when a link comes up (restart, healed partition), and every
 * `idleSyncIntervalMs` with each neighbour once changes stopped flowing for
 * a moment (at the latest after SYNC_DEFER_MAX_INTERVALS periods), which
 * also repairs a change that had to be dropped.
 */
export interface KvServiceOptions {
  readonly selfId: string;
  readonly dataDir: string;
  readonly log: Logger;
  readonly limits: KvLimits;
  readonly keysMax: number;
  readonly bucketCount: number;
  readonly idleSyncIntervalMs: number;
  /** A periodic anti-entropy round waits until no change was enqueued for this long (at most SYNC_DEFER_MAX_INTERVALS periods). */
  readonly syncQuietMs: number;
  /** Flood frames go out at most this often (see flood())... */
  readonly floodIntervalMs: number;
  /** ...and at most this often after a frame of at least floodBusyEntries changes (a write load). */
  readonly floodBusyIntervalMs: number;
  readonly floodBusyEntries: number;
  /** How long received changes no neighbour needs from us wait for a shared commit (see KV_SERVICE_DEFAULTS). */
  readonly relaylessCommitDelayMs: number;
  /** Tombstones and expired values are kept at least this long. */
  readonly tombstoneRetentionMs: number;
  /** Writes waiting for the next group commit; beyond it writes are refused (busy) and incoming changes dropped. */
  readonly pendingWritesMax: number;
  /** Bounds of one anti-entropy answer. */
  readonly syncVersionsMax: number;
  readonly syncBytesMax: number;
  readonly neighbours: () => readonly string[];
  readonly connection: (peerId: string) => FramedConnection | undefined;
  /**
   * Another node's overlay neighbours as this node computes them (the same
   * rule on the same members), and since when that view has been stable;
   * undefined while unknown.
   */
  readonly overlayOf: (peerId: string) => ReadonlySet<string> | undefined;
  readonly overlayStableSinceMs: () => number;
  /** Oldest unreplicated change (wall ms, 0: none) each live member reported in its beacon. */
  readonly membersOldestPendingMs: () => readonly number[];
  /** Copies of each key (consistent hashing over the live members); undefined: every node holds every key. */
  readonly replicas: number | undefined;
  /** Live member ids, this node's included (the partitioned cache places keys on them). */
  readonly members: () => readonly string[];
  /** A request connection to any member (the partitioned cache talks to a key's owners directly). */
  readonly rpc: (peerId: string) => Promise<FramedConnection>;
  /** How often a partitioned node compares the buckets it shares with each co-owner. */
  readonly partitionSyncIntervalMs: number;
  readonly requestTimeoutMs: number;
  /**
   * A neighbour's cache fingerprint from its latest beacon (see
   * cacheDigest); undefined or 0: unknown. The periodic round skips a
   * neighbour whose fingerprint equals ours: a sync would find nothing.
   */
  readonly peerCacheDigest?: (peerId: string) => bigint | undefined;
}

export const KV_SERVICE_DEFAULTS = Object.freeze({
  limits: KV_LIMITS_DEFAULT,
  keysMax: KV_REPLICA_DEFAULTS.keysMax,
  bucketCount: KV_REPLICA_DEFAULTS.bucketCount,
  idleSyncIntervalMs: 10_000,
  syncQuietMs: 1_000,
  // Pacing trades replication lag for fewer frames under load. At 3 ms the
  // quiet-machine bench showed no CPU saving per SET (replicas 13.6/14.6 µs
  // vs 12.4/12.3 before) but lag p50 0.25 -> 1.3 ms: 1 ms keeps a bound on
  // frames per second without costing readers on other nodes.
  floodIntervalMs: 1,
  // Under a write load frames go out every 4 ms: fewer socket writes on the
  // writer, fewer wake-ups, reads and decodes on each neighbour (bench/cache-ab.ts,
  // redis-benchmark without pipelining: 391 -> 203 frames/s, and with the
  // replicas' flood skip about -12 % CPU per SET over the 3 nodes; with
  // -P 16 frames were already large, no change). The interval only
  // stretches after a frame of 16 or more changes, so sparse writes (the
  // bench's lag probe: one SET every 1-3 ms) still leave within a millisecond.
  floodBusyIntervalMs: 4,
  floodBusyEntries: 16,
  /**
   * Flooded changes that no neighbour needs from this node (the sender's own
   * flood reaches them all, e.g. every replica of a 3-node cluster) wait this
   * long for their group commit, with whatever else arrives meanwhile. Nothing
   * waits on that commit (no writer is answered, nothing is sent on), so one
   * SQLite commit per several frames instead of one per frame: on the bench's
   * replicas the per-commit overhead was about a tenth of their CPU. A crash
   * in the window loses only changes the writer's node has on disk, which
   * anti-entropy fetches again when the link comes back up.
   */
  relaylessCommitDelayMs: 10,
  tombstoneRetentionMs: 3_600_000,
  pendingWritesMax: 200_000,
  syncVersionsMax: 4_096,
  syncBytesMax: 512 * 1024,
  replicas: undefined,
  partitionSyncIntervalMs: 5_000,
  requestTimeoutMs: 2_000,
});

interface PendingWrite {
  readonly entry: KvEntry;
  /** The neighbour it came from (not flooded back); undefined for our own writes. */
  readonly from: string | undefined;
  /** It came by the sender's flood (which also reached the sender's other neighbours), not by anti-entropy. */
  readonly flooded?: boolean;
}

/** The commit of one turn's writes: every writer of the turn waits on the same promise. */
interface TurnCommit {
  readonly done: Promise<void>;
  /** `done`, resolving true: what a put returns (no promise of its own per write). */
  readonly written: Promise<boolean>;
  resolve(): void;
  reject(err: Error): void;
}

function turnCommit(): TurnCommit {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const written = done.then(() => true);
  // A turn nobody awaits must not end as an unhandled rejection.
  written.catch(() => undefined);
  return { done, written, resolve, reject };
}

const PURGE_INTERVAL_MS = 60_000;
/** The store's log is cleaned in steps of a few ms this often, at most CLEAN_BUDGET_MS per wake-up. */
const CLEAN_INTERVAL_MS = 100;
/** How long the overlay must have been unchanged before a node relies on its picture of other nodes' neighbours. */
const OVERLAY_TRUST_AFTER_MS = 5_000;
const CLEAN_BUDGET_MS = 10;
/** The `from` of changes that came over a request connection rather than an overlay link. */
const RPC_PEER = '';
const PURGE_BATCH_MAX = 100_000;
const SYNC_TIMEOUT_MS = 30_000;
/** A periodic anti-entropy round waits for a quiet moment at most this many periods. */
const SYNC_DEFER_MAX_INTERVALS = 6;
/** Entries per flood frame stop at about this many bytes (the frame limit is 4 MiB). */
const FRAME_BYTES_TARGET = 1024 * 1024;
/** Received changes waiting for a delayed commit (relaylessCommitDelayMs) are committed at once when this many wait (commits stay a bounded size). */
const RELAYLESS_COMMIT_WRITES_MAX = 4_096;

export class KvService implements Service, KvAccess {
  readonly name = 'cache';
  private replica: KvReplica | undefined;
  private partition: KvPartition | undefined;
  private fail: ((err: Error) => void) | undefined;
  private store: KvStore | undefined;
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  /** The delayed commit of flooded changes nobody waits for (relaylessCommitDelayMs). */
  private commitTimer: NodeJS.Timeout | undefined;
  private turn: TurnCommit | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  private cleanTimer: NodeJS.Timeout | undefined;
  private readonly syncing = new Set<string>();
  private readonly offences: RateLimitedLog;
  /** Wall ms of the oldest change committed but not yet handed to every neighbour's socket. */
  private oldestUnsentMs = 0;
  /** Committed changes waiting for the next flood frame (see flood()), their bytes about, and its timer. */
  private floodQueue: PendingWrite[] = [];
  private floodQueueBytes = 0;
  private floodTimer: NodeJS.Timeout | undefined;
  private lastFloodAtMs = -Infinity;
  /** Changes in the last flood batch: from floodBusyEntries on, the next one waits floodBusyIntervalMs. */
  private lastFloodEntries = 0;
  /** performance.now() of the last change enqueued (own or received), and of the last periodic round. */
  private lastChangeAtMs = -Infinity;
  private lastIdleSyncAtMs = -Infinity;
  readonly stats = { puts: 0, deletes: 0, commits: 0, frames: 0, received: 0, stale: 0, future: 0, invalid: 0, dropped: 0, synced: 0, pushed: 0, syncRounds: 0, purged: 0 };

  constructor(private readonly options: KvServiceOptions) {
    this.offences = new RateLimitedLog(options.log);
    this.getNow = options.replicas === undefined ? (key) => this.getLocal(key) : undefined;
  }

  get limits(): KvLimits {
    return this.options.limits;
  }

  async start(fail: (err: Error) => void): Promise<void> {
    this.fail = fail;
    const store = KvStore.open(this.options.dataDir);
    const replica = new KvReplica({
      selfId: this.options.selfId,
      bucketCount: this.options.bucketCount,
      keysMax: this.options.keysMax,
      clockAheadMaxMs: KV_REPLICA_DEFAULTS.clockAheadMaxMs,
      // The store learns which records turned to garbage from the replica, as it happens.
      onDropped: (e) => store.dropped(e),
    });
    replica.restore(store.all());
    replica.restoreClock(Date.now(), store.ceiling());
    this.store = store;
    this.replica = replica;
    this.options.log.info({ keys: replica.size, values: replica.valueCount }, 'cache store open');
    if (this.options.replicas !== undefined) {
      this.partition = new KvPartition({
        selfId: this.options.selfId,
        replicas: this.options.replicas,
        bucketCount: this.options.bucketCount,
        members: this.options.members,
        rpc: this.options.rpc,
        log: this.options.log,
        requestTimeoutMs: this.options.requestTimeoutMs,
        monotonicMs: () => performance.now(),
      });
    }
    this.syncTimer = setInterval(() => (this.partition ? this.syncAll() : this.idleSync()), this.partition ? this.options.partitionSyncIntervalMs : this.options.idleSyncIntervalMs);
    this.purgeTimer = setInterval(() => this.purge(), PURGE_INTERVAL_MS);
    this.cleanTimer = setInterval(() => this.cleanLog(), CLEAN_INTERVAL_MS);
    this.lastIdleSyncAtMs = performance.now();
    this.syncAll();
  }

  async stop(): Promise<void> {
    clearInterval(this.syncTimer);
    clearInterval(this.purgeTimer);
    clearInterval(this.cleanTimer);
    clearTimeout(this.commitTimer);
    this.flush();
    this.sendFlood();
    this.store?.close();
    this.store = undefined;
    this.replica = undefined;
    this.partition = undefined;
    this.syncing.clear();
  }

  /** The live members changed: a partitioned cache recomputes who owns what and hands buckets over. */
  onMembersChanged(): void {
    if (this.partition?.refresh()) setImmediate(() => this.syncAll());
  }

  /**
   * For beacons: a 64-bit fingerprint of every version this full replica
   * holds (never 0); 0 when the store is not open or the cache is
   * partitioned (nodes then hold different buckets).
   */
  cacheDigest(): bigint {
    const replica = this.replica;
    if (!replica || this.partition) return 0n;
    const d = createHash('sha256').update(replica.digest()).digest().readBigUInt64LE(0);
    return d === 0n ? 1n : d;
  }

  /** For beacons: wall ms of the oldest change not yet sent to every neighbour; 0 when none. */
  oldestPendingMs(): number {
    if (this.pending.length > 0) return hlcWallMs(this.pending[0]!.entry.hlc);
    if (this.floodQueue.length === 0) return this.oldestUnsentMs;
    const queued = hlcWallMs(this.floodQueue[0]!.entry.hlc);
    return this.oldestUnsentMs > 0 ? Math.min(queued, this.oldestUnsentMs) : queued;
  }

  // ---- KvAccess ----

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.partition) return this.getMany([key]).then((v) => v[0]);
    return Promise.resolve(this.getLocal(key));
  }

  /**
   * Synchronous reads for the RESP port: only a full replica has every key
   * (a partitioned node may have to ask an owner), so only it offers them.
   */
  readonly getNow: ((key: Uint8Array) => Uint8Array | undefined) | undefined;

  /** The value this node's replica holds now (own writes included as soon as they are acknowledged). */
  getLocal(key: Uint8Array): Uint8Array | undefined {
    return this.replica?.get(keyFromBytes(key), Date.now())?.value;
  }

  getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    const partition = this.partition;
    const replica = this.replica;
    if (!partition || !replica) return Promise.resolve(keys.map((k) => this.getLocal(k)));
    // Keys this node owns are read here (and, just after the owners changed,
    // a miss is checked with the other owners); the rest are asked of an owner.
    const names = keys.map(keyFromBytes);
    const local = names.map((k) => (partition.ownsBucket(replica.bucketOf(k)) ? replica.get(k, Date.now())?.value : undefined));
    const ask = names.filter((k, i) => local[i] === undefined && (!partition.ownsBucket(replica.bucketOf(k)) || partition.inHandoff()));
    if (ask.length === 0) return Promise.resolve(local);
    return partition.readFromOwners(ask, (k) => replica.bucketOf(k), true).then((remote) => names.map((k, i) => local[i] ?? remote.get(k)));
  }

  put(key: Uint8Array, value: Uint8Array, options: KvPutOptions = {}): Promise<boolean> {
    try {
      this.checkKey(key);
      this.checkValue(value);
      const replica = this.open();
      const k = keyFromBytes(key);
      const now = Date.now();
      const condition = options.condition ?? 'always';
      if (this.partition) return this.putPartitioned(replica, k, value, options);
      if (condition !== 'always') {
        const present = replica.get(k, now) !== undefined;
        if ((condition === 'if_absent') === present) return Promise.resolve(false);
      }
      const ttlMs = options.ttlMs ?? 0;
      const entry = this.writeLocal(replica, k, value, now, ttlMs > 0 ? now + ttlMs : 0);
      this.stats.puts += 1;
      this.enqueue({ entry, from: undefined });
      return this.currentTurn().written;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  putMany(pairs: readonly (readonly [Uint8Array, Uint8Array])[]): Promise<void> {
    try {
      for (const [k, v] of pairs) {
        this.checkKey(k);
        this.checkValue(v);
      }
      const replica = this.open();
      const now = Date.now();
      if (this.partition) return Promise.all(pairs.map(([k, v]) => this.replicate(replica, this.stampLocal(replica, keyFromBytes(k), v, now)))).then(() => undefined);
      const commits = pairs.map(([k, v]) => this.commit(this.writeLocal(replica, keyFromBytes(k), v, now, 0)));
      this.stats.puts += pairs.length;
      return Promise.all(commits).then(() => undefined);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  del(keys: readonly Uint8Array[]): Promise<number> {
    try {
      for (const k of keys) this.checkKey(k);
      const replica = this.open();
      const now = Date.now();
      if (this.partition) return this.delPartitioned(replica, keys);
      const commits: Promise<void>[] = [];
      let existed = 0;
      for (const key of keys) {
        const k = keyFromBytes(key);
        const held = replica.raw(k);
        // Deleting what is absent writes nothing: no tombstone to replicate.
        if (!held || held.value === undefined) continue;
        if (replica.get(k, now)) existed += 1;
        commits.push(this.commit(this.writeLocal(replica, k, undefined, now, 0)));
      }
      this.stats.deletes += commits.length;
      return Promise.all(commits).then(() => existed);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  scan(after: Uint8Array | undefined, limit: number, pattern?: Uint8Array): Promise<{ keys: Uint8Array[]; more: boolean }> {
    const replica = this.replica;
    if (!replica) return Promise.reject(new KvError('unavailable', 'the cache store is not open'));
    const everything = !pattern || pattern.length === 0 || (pattern.length === 1 && pattern[0] === 0x2a);
    const match = everything ? undefined : (key: string) => globMatch(pattern, keyToBytes(key));
    const page = replica.scan(after && after.length > 0 ? keyFromBytes(after) : undefined, limit, Date.now(), match);
    return Promise.resolve({ keys: page.keys.map(keyToBytes), more: page.more });
  }

  size(): number {
    return this.replica?.valueCount ?? 0;
  }

  info(): Record<string, string | number> {
    const r = this.replica;
    return {
      keys_held: r?.size ?? 0,
      values_held: r?.valueCount ?? 0,
      hlc: r?.clock.current ?? 0,
      // Equal on two nodes exactly when they hold the same versions (for convergence checks).
      digest: r ? createHash('sha256').update(r.digest()).digest('hex').slice(0, 16) : '',
      pending_writes: this.pending.length,
      ...Object.fromEntries(Object.entries(this.stats).map(([k, v]) => [`repl_${k}`, v])),
    };
  }

  // ---- partitioned (replicas: R) ----

  private async putPartitioned(replica: KvReplica, key: string, value: Uint8Array, options: KvPutOptions): Promise<boolean> {
    const condition = options.condition ?? 'always';
    if (condition !== 'always') {
      const present = (await this.get(keyToBytes(key))) !== undefined;
      if ((condition === 'if_absent') === present) return false;
    }
    const now = Date.now();
    const ttlMs = options.ttlMs ?? 0;
    await this.replicate(replica, this.stampLocal(replica, key, value, now, ttlMs > 0 ? now + ttlMs : 0));
    this.stats.puts += 1;
    return true;
  }

  private async delPartitioned(replica: KvReplica, keys: readonly Uint8Array[]): Promise<number> {
    const values = await this.getMany(keys);
    const now = Date.now();
    const present = keys.filter((_, i) => values[i] !== undefined);
    await Promise.all(present.map((k) => this.replicate(replica, this.stampLocal(replica, keyFromBytes(k), undefined, now))));
    this.stats.deletes += present.length;
    return present.length;
  }

  /**
   * Stores a stamped write on its owners: here when this node is one, and by
   * an apply request on each other one. Acknowledged once every owner answered
   * or failed within the request timeout, and at least one has it on disk.
   */
  private async replicate(replica: KvReplica, entry: KvEntry): Promise<void> {
    const partition = this.partition!;
    const bucket = replica.bucketOf(entry.key);
    const here = partition.ownsBucket(bucket) && replica.apply(entry, Date.now()) ? this.commit(entry).then(() => 1) : Promise.resolve(0);
    const [local, remote] = await Promise.all([here, partition.sendToOwners(entry, bucket)]);
    if (local + remote === 0) throw new KvError('unavailable', `no owner of the key could store it (owners: ${partition.owners(bucket).join(', ')})`);
  }

  /** A cache request from another node over a request connection; false when it is not one. */
  onRpcEnvelope(env: Envelope, conn: FramedConnection): boolean {
    switch (env.body.case) {
      case 'kvApplyRequest':
        this.answerApply(env, conn);
        return true;
      case 'kvBatch':
      case 'kvSyncRequest':
      case 'kvFetchRequest':
        return this.onPeerEnvelope(RPC_PEER, env, conn);
      default:
        return false;
    }
  }

  /** Stores the entries a writer sent this node as one of their owners; answers after the commit. */
  private answerApply(env: Envelope, conn: FramedConnection): void {
    if (env.body.case !== 'kvApplyRequest') return;
    const { dropped, future } = this.receive(RPC_PEER, this.fromWire(env.body.value.entries));
    if (dropped > 0 || future > 0) {
      const why = dropped > 0 ? `${dropped} writes dropped: the write queue is full` : `${future} writes stamped more than 60 s ahead of this node's clock`;
      conn.reply(env, { body: { case: 'error', value: { code: dropped > 0 ? 'busy' : 'clock', message: why } } });
      return;
    }
    // After the commit of everything pending, not only of what won here: an
    // entry that lost to a version still waiting for its commit is stored
    // only once that commit is done (found by the partitioned simulation).
    const commit = this.pending.length > 0 ? this.currentTurn().done : Promise.resolve();
    commit.then(
      () => conn.reply(env, { body: { case: 'kvApplyResponse', value: {} } }),
      (err: Error) => conn.reply(env, { body: { case: 'error', value: { code: 'unavailable', message: err.message } } }),
    );
  }

  // ---- peers ----

  /** A peer frame for the cache; false when it is not the cache's. */
  onPeerEnvelope(peerId: string, env: Envelope, conn: FramedConnection): boolean {
    switch (env.body.case) {
      case 'kvBatch':
        this.receive(peerId, this.fromWire(env.body.value.entries), !env.body.value.repair);
        return true;
      case 'kvSyncRequest':
        this.answerSync(peerId, env, conn);
        return true;
      case 'kvFetchRequest':
        this.answerFetch(env, conn);
        return true;
      default:
        return false;
    }
  }

  /**
   * A frame from an overlay neighbour, before the generic decoding: a flood
   * batch in the plain form is read here, straight into entries (the hot
   * path of replication). False for any other frame.
   */
  onPeerFrame(peerId: string, payload: Uint8Array): boolean {
    const batch = decodeKvBatchEnvelope(payload, this.options.limits);
    if (!batch) return false;
    this.stats.frames += 1;
    this.receive(peerId, batch.entries, !batch.repair);
    return true;
  }

  /** A link came up (a restart or a healed partition): catch up at once. */
  onLinkUp(peerId: string): void {
    const conn = this.options.connection(peerId);
    if (conn && !this.partition) this.syncWith(peerId, conn);
  }

  private open(): KvReplica {
    if (!this.replica) throw new KvError('unavailable', 'the cache store is not open');
    if (this.pending.length >= this.options.pendingWritesMax) throw new KvError('busy', `more than ${this.options.pendingWritesMax} writes waiting for the disk; try again`);
    return this.replica;
  }

  /** Throws KvError for an empty key or one over the limit. */
  checkKey(key: Uint8Array): void {
    if (key.length === 0) throw new KvError('empty_key', 'the key is empty');
    if (key.length > this.options.limits.keyBytesMax) throw new KvError('too_large', `key of ${key.length} bytes; the limit is ${this.options.limits.keyBytesMax} bytes`);
  }

  private checkValue(value: Uint8Array): void {
    if (value.length > this.options.limits.valueBytesMax) throw new KvError('too_large', `value of ${value.length} bytes; the limit is ${this.options.limits.valueBytesMax} bytes`);
  }

  private writeLocal(replica: KvReplica, key: string, value: Uint8Array | undefined, nowMs: number, expiresMs: number): KvEntry {
    const entry = replica.write(key, value, nowMs, expiresMs);
    if (entry === 'full') throw new KvError('busy', `the cache holds ${replica.size} keys, its limit; delete some first`);
    this.persistCeiling(replica);
    return entry;
  }

  /** A partitioned write's stamp, with the clock ceiling on disk before the stamp goes to the owners. */
  private stampLocal(replica: KvReplica, key: string, value: Uint8Array | undefined, nowMs: number, expiresMs = 0): KvEntry {
    const entry = replica.stamp(key, value, nowMs, expiresMs);
    this.persistCeiling(replica);
    return entry;
  }

  private persistCeiling(replica: KvReplica): void {
    const ceiling = replica.takeCeiling();
    if (ceiling === undefined) return;
    if (!this.store) throw new KvError('unavailable', 'the cache store is closed');
    this.store.setCeiling(ceiling);
  }

  private commit(entry: KvEntry): Promise<void> {
    this.enqueue({ entry, from: undefined });
    return this.currentTurn().done;
  }

  /** The commit the writes enqueued in this turn wait for. */
  private currentTurn(): TurnCommit {
    return (this.turn ??= turnCommit());
  }

  /** Entries from the generic decoder; undefined where one is out of range. */
  private fromWire(entries: readonly WireEntry[]): (KvEntry | undefined)[] {
    return entries.map((w) => entryFromWire(w, this.options.limits));
  }

  /** Applies changes from a peer (undefined: one that was out of range); `commit` settles when the winners are on disk. */
  private receive(peerId: string, entries: readonly (KvEntry | undefined)[], flooded = false): { won: number; dropped: number; future: number; commit: Promise<void> } {
    const replica = this.replica;
    let won = 0;
    let dropped = 0;
    let future = 0;
    if (!replica) return { won, dropped: entries.length, future, commit: Promise.resolve() };
    const now = Date.now();
    // Only tombstones and values that expire can be below the horizon: the
    // horizon (a walk over every member's beacon figure) is computed for the
    // first of them, not for every frame of plain values.
    let horizon = -1;
    for (const entry of entries) {
      if (!entry) {
        this.stats.invalid += 1;
        this.offences.warn(`cache:${peerId}`, performance.now(), { peer: peerId }, 'dropped an invalid cache change');
        continue;
      }
      this.stats.received += 1;
      if ((entry.value === undefined || entry.expiresMs !== 0) && KvReplica.belowHorizon(entry, horizon < 0 ? (horizon = this.horizon(now)) : horizon)) continue;
      if (this.pending.length >= this.options.pendingWritesMax) {
        this.stats.dropped += 1;
        dropped += 1;
        this.offences.warn('cache:overload', performance.now(), { pending: this.pending.length }, 'write queue full; dropped a change for anti-entropy to fetch again');
        continue;
      }
      const futureBefore = replica.stats.future;
      if (!replica.apply(entry, now)) {
        if (replica.stats.future > futureBefore) {
          this.stats.future += 1;
          future += 1;
          this.offences.warn(`cache-clock:${peerId}`, performance.now(), { peer: peerId, node: entry.node, aheadMs: hlcWallMs(entry.hlc) - now }, 'refused a cache change stamped more than 60 s ahead of our clock (is a clock wrong?)');
        } else this.stats.stale += 1;
        continue;
      }
      this.pending.push({ entry, from: peerId, flooded });
      won += 1;
    }
    if (won > 0) {
      const relayless = flooded && peerId !== RPC_PEER && !this.partition && this.pending.length < RELAYLESS_COMMIT_WRITES_MAX && !this.relaysFrom(peerId);
      this.scheduleFlush(relayless);
    }
    return { won, dropped, future, commit: won > 0 ? this.currentTurn().done : Promise.resolve() };
  }

  /**
   * Whether a neighbour gets what `src` flooded to us only from us: one that
   * is not `src` and (as far as we can trust our picture of the overlay) not
   * a neighbour of `src`. The rule sendFloodOf() applies to flooded changes.
   */
  private relaysFrom(src: string): boolean {
    const trustOverlay = performance.now() - this.options.overlayStableSinceMs() >= OVERLAY_TRUST_AFTER_MS;
    const theirs = trustOverlay ? this.options.overlayOf(src) : undefined;
    for (const peer of this.options.neighbours()) if (peer !== src && theirs?.has(peer) !== true) return true;
    return false;
  }

  private enqueue(w: PendingWrite): void {
    this.pending.push(w);
    this.scheduleFlush(false);
  }

  /** The group commit at the end of this turn, or (`delayed`, and none due sooner) in relaylessCommitDelayMs. */
  private scheduleFlush(delayed: boolean): void {
    if (this.flushScheduled) return;
    if (!delayed) {
      this.flushScheduled = true;
      // Once per turn is enough for the idle test.
      this.lastChangeAtMs = performance.now();
      setImmediate(() => this.flush());
      return;
    }
    if (this.commitTimer === undefined) {
      this.lastChangeAtMs = performance.now();
      this.commitTimer = setTimeout(() => this.flush(), this.options.relaylessCommitDelayMs);
    }
  }

  /** Group commit: one transaction for the turn's writes, then acknowledge and flood. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.commitTimer !== undefined) {
      clearTimeout(this.commitTimer);
      this.commitTimer = undefined;
    }
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const turn = this.turn;
    this.turn = undefined;
    try {
      if (!this.store) throw new KvError('unavailable', 'the cache store is closed');
      this.store.write(batch.map((w) => w.entry));
      this.stats.commits += 1;
    } catch (err) {
      // The replica in memory already holds versions the disk lacks, and
      // nothing may leave the node before it is on disk: the writers are told,
      // and the service fails so the supervisor restarts it from the disk.
      this.options.log.error({ err: (err as Error).message, writes: batch.length }, 'cache write failed; restarting the cache from its disk');
      turn?.reject(err as Error);
      this.replica = undefined;
      this.fail?.(err as Error);
      return;
    }
    turn?.resolve();
    // A partitioned cache writes to the owners directly; only a full replica floods.
    if (this.partition) return;
    if (this.mustRelay(batch)) this.flood(batch);
    // Every neighbour is connected (mustRelay checked): what sendFloodOf
    // would have noted, so an earlier unsent change stops holding back the
    // purge horizon in our beacon (anti-entropy repaired it on link-up).
    else this.oldestUnsentMs = 0;
  }

  /**
   * Whether a committed batch has anything for a neighbour: false when every
   * change in it came by the flood of a sender whose own flood reaches every
   * neighbour of ours that is connected (every replica of a cluster of up to
   * 4 nodes). Then the batch skips the flood queue and sendFloodOf, whose
   * per-neighbour filtering would only find empty frames (a few percent of a
   * replica's CPU under a SET load). With a neighbour unconnected the batch
   * takes the usual path, which notes the change as unsent for the beacons.
   */
  private mustRelay(batch: readonly PendingWrite[]): boolean {
    let checked: string | undefined;
    for (const w of batch) {
      if (w.from === undefined || w.from === RPC_PEER || w.flooded !== true) return true;
      if (w.from === checked) continue;
      if (this.relaysFrom(w.from)) return true;
      checked = w.from;
    }
    for (const peer of this.options.neighbours()) if (!this.options.connection(peer)) return true;
    return false;
  }

  /**
   * Floods a committed batch: at once when the last flood frame went out at
   * least `floodIntervalMs` ago (`floodBusyIntervalMs` after a frame of
   * `floodBusyEntries` or more), else with whatever else commits until then.
   * Under a write load of small turns (redis-benchmark without pipelining:
   * ~35 writes a turn, a turn every ~1.4 ms) a frame per turn cost each
   * neighbour a wake-up, a decode and a SQLite commit per frame; a quiet
   * node still sends its first change at once. Bounded: a queue of
   * FRAME_BYTES_TARGET bytes goes out at once.
   */
  private flood(batch: readonly PendingWrite[]): void {
    const intervalMs = this.lastFloodEntries >= this.options.floodBusyEntries ? this.options.floodBusyIntervalMs : this.options.floodIntervalMs;
    if (this.floodQueue.length === 0 && this.floodTimer === undefined && performance.now() - this.lastFloodAtMs >= intervalMs) {
      this.sendFloodOf(batch);
      return;
    }
    for (const w of batch) {
      this.floodQueue.push(w);
      this.floodQueueBytes += w.entry.key.length + (w.entry.value?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
    }
    if (this.floodQueueBytes >= FRAME_BYTES_TARGET) this.sendFlood();
    else if (this.floodTimer === undefined) {
      const waitMs = Math.max(0, this.lastFloodAtMs + intervalMs - performance.now());
      this.floodTimer = setTimeout(() => this.sendFlood(), waitMs);
    }
  }

  /** Sends what the flood queue holds now. */
  private sendFlood(): void {
    clearTimeout(this.floodTimer);
    this.floodTimer = undefined;
    const batch = this.floodQueue;
    if (batch.length === 0) return;
    this.floodQueue = [];
    this.floodQueueBytes = 0;
    this.sendFloodOf(batch);
  }

  /**
   * Sends each neighbour the batch's changes except those it sent us. Frames
   * are encoded once per distinct set of recipients, not once per neighbour.
   */
  private sendFloodOf(batch: readonly PendingWrite[]): void {
    this.lastFloodAtMs = performance.now();
    this.lastFloodEntries = batch.length;
    const neighbours = this.options.neighbours();
    if (neighbours.length === 0) return;
    const entries = batch.map((w) => w.entry);
    const sources = [...new Set(batch.map((w) => w.from))];
    // Trust our picture of a sender's neighbours only once the overlay has
    // been still for a while: then every node computes the same one.
    const trustOverlay = performance.now() - this.options.overlayStableSinceMs() >= OVERLAY_TRUST_AFTER_MS;
    const framesFor = new Map<string, Uint8Array[]>();
    let unsent = false;
    for (const peer of neighbours) {
      // Not back to where a change came from; and not to a neighbour of the
      // node whose flood brought it, which floods to all its neighbours
      // (except its own sender, who has it): that one has it or will.
      const backTo = sources.includes(peer) ? peer : undefined;
      const coveredBy = trustOverlay ? sources.filter((src) => src !== undefined && src !== peer && this.options.overlayOf(src)?.has(peer) === true) : [];
      const key = `${backTo ?? ''}\n${coveredBy.join('\n')}`;
      let frames = framesFor.get(key);
      if (!frames) {
        const covered = new Set(coveredBy);
        const keep = (w: PendingWrite): boolean => w.from === undefined || (w.from !== backTo && !(w.flooded === true && covered.has(w.from)));
        frames = this.encodeBatch(backTo === undefined && covered.size === 0 ? entries : entries.filter((_, i) => keep(batch[i]!)));
        framesFor.set(key, frames);
      }
      const conn = this.options.connection(peer);
      if (!conn) {
        unsent = true;
        continue;
      }
      for (const f of frames) conn.sendFrame(f);
    }
    // A neighbour without a connection gets these by anti-entropy when its link comes up.
    this.oldestUnsentMs = unsent ? this.oldestUnsentMs || hlcWallMs(batch[0]!.entry.hlc) : 0;
  }

  private encodeBatch(entries: readonly KvEntry[], repair = false): Uint8Array[] {
    const frames: Uint8Array[] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < entries.length; i++) {
      bytes += entries[i]!.key.length + (entries[i]!.value?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
      if (bytes >= FRAME_BYTES_TARGET || i === entries.length - 1) {
        frames.push(encodeKvBatchFrame(start === 0 && i === entries.length - 1 ? entries : entries.slice(start, i + 1), repair));
        start = i + 1;
        bytes = 0;
      }
    }
    return frames;
  }

  // ---- anti-entropy ----

  /**
   * The periodic round of a full replica. While changes flow, two replicas'
   * digests differ in nearly every bucket by what is still in flight, so a
   * round would list and push thousands of versions the flood delivers anyway
   * (measured: about a tenth of a replica's CPU under a SET load, and
   * duplicate entries on every node). So a round waits for a quiet moment,
   * but never longer than SYNC_DEFER_MAX_INTERVALS periods: what a drop lost
   * is still repaired under an endless load. Link-up rounds never wait.
   */
  private idleSync(): void {
    const now = performance.now();
    const quiet = this.quiet();
    if (!quiet && now - this.lastIdleSyncAtMs < this.options.idleSyncIntervalMs * SYNC_DEFER_MAX_INTERVALS) return;
    this.lastIdleSyncAtMs = now;
    // A round begun in a quiet moment stops going on (answers say "more")
    // once changes flow again; one that waited its longest goes to the end.
    this.syncAll(quiet);
  }

  /** No change was enqueued for `syncQuietMs`. */
  private quiet(): boolean {
    return performance.now() - this.lastChangeAtMs >= this.options.syncQuietMs;
  }

  private syncAll(whileQuiet = false): void {
    const partition = this.partition;
    const replica = this.replica;
    if (!partition || !replica) {
      // Idle neighbours hold what we hold: 1,024 bucket hashes to each every
      // 10 s were most of an idle node's traffic (2.5 kB/s).
      const ours = this.cacheDigest();
      for (const peer of this.options.neighbours()) {
        const conn = this.options.connection(peer);
        if (conn && (ours === 0n || this.options.peerCacheDigest?.(peer) !== ours)) this.syncWith(peer, conn, undefined, whileQuiet);
      }
      return;
    }
    partition.refresh();
    for (const [peer, buckets] of partition.syncPlan(replica.nonEmptyBuckets())) {
      if (this.syncing.has(peer)) continue;
      this.options.rpc(peer).then(
        (conn) => this.syncWith(peer, conn, buckets),
        () => undefined,
      );
    }
  }

  /**
   * Asks a neighbour for its versions of the buckets whose fingerprints
   * differ, pushes what is newer here, fetches what is newer there, and goes
   * again while buckets remain (answers are bounded).
   */
  private syncWith(peerId: string, conn: FramedConnection, only?: readonly number[], whileQuiet = false): void {
    const replica = this.replica;
    if (!replica || this.syncing.has(peerId)) return;
    this.syncing.add(peerId);
    this.stats.syncRounds += 1;
    const done = (again: boolean) => {
      this.syncing.delete(peerId);
      if (again && whileQuiet && !this.quiet()) return;
      if (again) setImmediate(() => (only ? this.syncAll() : this.syncWith(peerId, conn, undefined, whileQuiet)));
    };
    // What the peer compares against: a hand-over may only drop a bucket as it was then.
    const sent = replica.digest();
    conn
      .request({ body: { case: 'kvSyncRequest', value: { bucketCount: replica.bucketCount, bucketHashes: sent, onlyBuckets: only ? [...only] : [] } } }, SYNC_TIMEOUT_MS)
      .then(async (answer) => {
        if (answer.body.case !== 'kvSyncResponse' || !this.replica) return done(false);
        const r = this.replica;
        const from = only ? RPC_PEER : peerId;
        // Nothing may leave this node before it is on its disk (found by the
        // cache simulation): commit the turn's writes before pushing.
        this.flush();
        const versions = answer.body.value.versions.map(versionFromWire).filter((v) => v !== undefined);
        // A partitioned node keeps to buckets it still owns or holds (a hand-over may have dropped one since the round was planned).
        const part = this.partition;
        const buckets = answer.body.value.buckets.filter((b) => b < r.bucketCount && (!part || part.ownsBucket(b) || r.bucketSize(b) > 0));
        const plan = r.reconcile(buckets, versions);
        if (plan.push.length > 0) {
          for (const f of this.encodeBatch(plan.push, true)) conn.sendFrame(f);
          this.stats.pushed += plan.push.length;
        }
        let fetched = 0;
        let truncated = false;
        for (let i = 0; i < plan.fetch.length; i += this.options.syncVersionsMax) {
          const keys = plan.fetch.slice(i, i + this.options.syncVersionsMax).map(keyToBytes);
          const reply = await conn.request({ body: { case: 'kvFetchRequest', value: { keys } } }, SYNC_TIMEOUT_MS);
          if (reply.body.case !== 'kvFetchResponse') break;
          // A fetch answer is bounded in bytes: what did not fit is found again in the next round.
          if (reply.body.value.entries.length < keys.length) truncated = true;
          fetched += this.receive(from, this.fromWire(reply.body.value.entries)).won;
        }
        this.stats.synced += fetched;
        if (fetched > 0 || plan.push.length > 0) this.options.log.debug({ peer: peerId, fetched, pushed: plan.push.length, buckets: buckets.length }, 'cache anti-entropy');
        const more = answer.body.value.more || truncated;
        if (only && !more && this.partition) this.handOver(peerId, only, new Set(buckets), sent);
        done(more);
      })
      .catch(() => done(false));
  }

  /** Drops the buckets this node no longer owns once every owner holds the same versions. */
  private handOver(peerId: string, compared: readonly number[], differing: ReadonlySet<number>, sent: Uint8Array): void {
    const replica = this.replica;
    const partition = this.partition;
    if (!replica || !partition) return;
    // The peer confirmed the versions of the digest we sent; a bucket that
    // changed since (a write applied meanwhile) is not confirmed (found by
    // the partitioned-cache simulation: an acknowledged write was dropped).
    const now = replica.digest();
    const fingerprint = (d: Uint8Array, b: number): string => Buffer.from(d.buffer, d.byteOffset + b * 8, 8).toString('hex');
    const unconfirmed = new Set(differing);
    for (const b of compared) if (fingerprint(now, b) !== fingerprint(sent, b)) unconfirmed.add(b);
    for (const bucket of partition.confirm(peerId, compared, unconfirmed, (b) => fingerprint(sent, b))) {
      const keys = replica.dropBucket(bucket);
      try {
        this.store?.remove(keys);
      } catch (err) {
        this.options.log.error({ err: (err as Error).message }, 'cache hand-over delete failed');
      }
      if (keys.length > 0) this.options.log.debug({ bucket, keys: keys.length, owners: partition.owners(bucket) }, 'cache bucket handed over');
    }
  }

  private answerSync(peerId: string, env: Envelope, conn: FramedConnection): void {
    const replica = this.replica;
    if (env.body.case !== 'kvSyncRequest' || !replica) return;
    const only = env.body.value.onlyBuckets.length > 0 ? new Set(env.body.value.onlyBuckets) : undefined;
    const answer = env.body.value.bucketCount === replica.bucketCount ? replica.answerDigest(env.body.value.bucketHashes, this.options.syncVersionsMax, only) : undefined;
    if (!answer) {
      this.offences.warn(`cache-sync:${peerId}`, performance.now(), { peer: peerId, theirs: env.body.value.bucketCount, ours: replica.bucketCount }, 'cache digest of another shape');
      conn.reply(env, { body: { case: 'error', value: { code: 'bad_request', message: `bucket count ${env.body.value.bucketCount} differs from ours (${replica.bucketCount})` } } });
      return;
    }
    conn.reply(env, { body: { case: 'kvSyncResponse', value: { buckets: answer.buckets, versions: answer.versions.map(versionToWire), more: answer.more } } });
  }

  private answerFetch(env: Envelope, conn: FramedConnection): void {
    const replica = this.replica;
    if (env.body.case !== 'kvFetchRequest' || !replica) return;
    this.flush();
    const entries = replica.answerFetch(env.body.value.keys.map(keyFromBytes), this.options.syncBytesMax);
    conn.reply(env, { body: { case: 'kvFetchResponse', value: { entries: entries.map(entryToWire) } } });
  }

  // ---- tombstones ----

  /**
   * Versions below this HLC that are tombstones (or values expired before
   * its time) are forgotten: older than the retention floor, and older than
   * the oldest unreplicated change any live member reports in its beacon.
   */
  private horizon(nowMs: number): number {
    let ms = nowMs - this.options.tombstoneRetentionMs;
    for (const pending of this.options.membersOldestPendingMs()) if (pending > 0 && pending < ms) ms = pending;
    const own = this.oldestPendingMs();
    if (own > 0 && own < ms) ms = own;
    return hlcOf(Math.max(0, ms));
  }

  /** Drops the log's garbage rows in short steps, so no step stalls the event loop for long. */
  private cleanLog(): void {
    const store = this.store;
    const replica = this.replica;
    if (!store || !replica || !store.needsCleaning(replica.size)) return;
    // The cleaner keeps the records of the versions the replica holds: those
    // still waiting for their commit must be on disk first, or a key's older
    // record would go while its newer one is not stored yet.
    this.flush();
    if (this.store !== store || this.replica !== replica) return;
    const start = performance.now();
    try {
      while (store.needsCleaning(replica.size) && performance.now() - start < CLEAN_BUDGET_MS) store.clean();
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'cache log cleaning failed');
    }
  }

  private purge(): void {
    const replica = this.replica;
    const store = this.store;
    if (!replica || !store) return;
    try {
      const removed = replica.purge(this.horizon(Date.now()), PURGE_BATCH_MAX);
      store.remove(removed);
      this.stats.purged += removed.length;
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'cache purge failed');
    }
  }
}
