import type { KvEntry } from '../core/kv/entry.js';
import { ENTRY_OVERHEAD_BYTES, KV_REPLICA_DEFAULTS, KvReplica } from '../core/kv/replica.js';
import type { SimKvDisk } from './kv-disk.js';
import { KvLinks } from './kv-links.js';
import type { KvConn, KvFrame, KvRequest } from './kv-links.js';
import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';
import type { StreamNet } from './streams.js';

/**
 * One incarnation of a node's cache service, driving KvReplica exactly as
 * src/runtime/kv-service.ts does (the sim may not import the runtime, so the
 * protocol is restated here; keep the two in step):
 *
 * - a local write goes into the turn's group commit; after the commit the
 *   writer is acknowledged and the entry flooded, one batch per neighbour;
 * - a batch from peer P: apply each entry; the winners are committed, then
 *   flooded to the neighbours except P;
 * - anti-entropy (on link up and every idle interval): digest, the peer's
 *   versions of the differing buckets, push what is newer here, fetch what
 *   is newer there; again while the answer had more or a fetch fell short.
 *
 * A "turn" of the event loop is a window of [0, turnMsMax] simulated ms:
 * every write of it shares one commit at its end, and everything arriving
 * meanwhile is handled with the writes still uncommitted, as frames read in
 * one poll phase are before the setImmediate that commits. A crash inside
 * the window loses the turn's writes.
 */
export interface KvSimKnobs {
  readonly turnMsMax: number;
  readonly idleSyncIntervalMs: number;
  readonly syncVersionsMax: number;
  readonly syncBytesMax: number;
  readonly syncTimeoutMs: number;
  /** A flood batch is cut into frames of about this many bytes. */
  readonly frameBytesTarget: number;
  /** Writes waiting for the commit; beyond it local writes are refused and incoming changes dropped. */
  readonly pendingWritesMax: number;
  readonly redialMsMin: number;
  readonly redialMsMax: number;
  /** Each node refreshes its membership view (running nodes it can reach) every [min, max] ms. */
  readonly viewRefreshMsMin: number;
  readonly viewRefreshMsMax: number;
  /** kv-service.ts commits the turn's writes before an anti-entropy answer or push (true); false shows what that prevents. */
  readonly commitBeforeServing: boolean;
  /**
   * A node skips the neighbours its sender's flood covers once its overlay
   * view has been still this long (kv-service.ts: 5 s); Infinity: never skips.
   */
  readonly overlayTrustAfterMs: number;
}

export const KV_SIM_DEFAULTS: KvSimKnobs = Object.freeze({
  turnMsMax: 2,
  idleSyncIntervalMs: 1_500,
  syncVersionsMax: 50_000,
  syncBytesMax: 2 * 1024 * 1024,
  syncTimeoutMs: 30_000,
  frameBytesTarget: 1024 * 1024,
  pendingWritesMax: 200_000,
  redialMsMin: 20,
  redialMsMax: 300,
  viewRefreshMsMin: 200,
  viewRefreshMsMax: 1_000,
  commitBeforeServing: true,
  overlayTrustAfterMs: 5_000,
});

/** What checkers hear about a run. */
export interface KvListener {
  onLifecycle?(nodeId: string, kind: 'start' | 'crash', nowMs: number): void;
  /** A local write the replica stamped (not yet durable). */
  onWrite?(nodeId: string, writeId: number, entry: KvEntry, nowMs: number): void;
  onRefused?(nodeId: string, why: string, nowMs: number): void;
  /** Entries one group commit put on the node's disk, in order. */
  onCommit?(nodeId: string, entries: readonly KvEntry[], nowMs: number): void;
  onAck?(nodeId: string, writeId: number, entry: KvEntry, nowMs: number): void;
  /** A crash lost these uncommitted entries; `ownWriteIds` were never acknowledged. */
  onLost?(nodeId: string, entries: readonly KvEntry[], ownWriteIds: readonly number[], nowMs: number): void;
  /** Entries still waiting for their commit left the node in an anti-entropy answer or push. */
  onServedUncommitted?(nodeId: string, peer: string, entries: readonly KvEntry[], nowMs: number): void;
}

export interface KvServiceContext {
  readonly selfId: string;
  readonly bucketCount: number;
  readonly scheduler: Scheduler;
  readonly net: StreamNet<KvFrame>;
  readonly random: SimRandom;
  readonly knobs: () => KvSimKnobs;
  readonly wallMs: () => number;
  readonly dials: (peer: string) => boolean;
  readonly neighbours: () => readonly string[];
  /** Another node's overlay neighbours in this node's view, and when that view last changed (sim ms). */
  readonly overlayOf: (peer: string) => ReadonlySet<string> | undefined;
  readonly overlayChangedAtMs: () => number;
  readonly notify: (call: (l: KvListener) => void) => void;
}

interface PendingWrite {
  readonly entry: KvEntry;
  /** The neighbour it came from (not flooded back); undefined for our own writes. */
  readonly from: string | undefined;
  readonly writeId?: number;
  /** It came by the sender's flood, not by anti-entropy. */
  readonly flooded?: boolean;
}

export class KvService {
  readonly replica: KvReplica;
  readonly links: KvLinks;
  readonly stats = { received: 0, stale: 0, future: 0, dropped: 0, synced: 0, pushed: 0, syncRounds: 0, floodFrames: 0 };
  private pending: PendingWrite[] = [];
  /** The pending entries themselves, to tell when one leaves the node before its commit. */
  private readonly uncommitted = new Set<KvEntry>();
  private flushScheduled = false;
  private readonly syncing = new Set<string>();
  private alive = true;

  constructor(
    private readonly ctx: KvServiceContext,
    private readonly disk: SimKvDisk,
  ) {
    this.replica = new KvReplica({ selfId: ctx.selfId, bucketCount: ctx.bucketCount, keysMax: KV_REPLICA_DEFAULTS.keysMax, clockAheadMaxMs: KV_REPLICA_DEFAULTS.clockAheadMaxMs });
    this.replica.restore(disk.all());
    this.replica.restoreClock(ctx.wallMs(), disk.ceiling);
    this.links = new KvLinks({
      self: ctx.selfId,
      net: ctx.net,
      scheduler: ctx.scheduler,
      dials: ctx.dials,
      redialMs: () => ctx.random.int(ctx.knobs().redialMsMin, ctx.knobs().redialMsMax),
      onFrame: (peer, frame, conn) => this.onFrame(peer, frame, conn),
      onLinkUp: (peer) => {
        const conn = this.links.connectionTo(peer);
        if (conn) this.syncWith(peer, conn);
      },
    });
    this.idleSync();
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** The process died: the turn's writes are lost. Returns them. */
  halt(): PendingWrite[] {
    this.alive = false;
    this.links.halt();
    const lost = this.pending;
    this.pending = [];
    this.uncommitted.clear();
    return lost;
  }

  // ---- local writes (KvService.put / del) ----

  /** A put; the write id is acknowledged at its commit. Undefined when refused. */
  put(writeId: number, key: string, value: Uint8Array, ttlMs: number): KvEntry | undefined {
    if (!this.admit()) return undefined;
    const now = this.ctx.wallMs();
    return this.writeLocal(writeId, key, value, now, ttlMs > 0 ? now + ttlMs : 0);
  }

  /** A delete; like the runtime, deleting what is absent (or already deleted) writes nothing. */
  del(writeId: number, key: string): KvEntry | undefined {
    if (!this.admit()) return undefined;
    const held = this.replica.raw(key);
    if (!held || held.value === undefined) return undefined;
    return this.writeLocal(writeId, key, undefined, this.ctx.wallMs(), 0);
  }

  private admit(): boolean {
    if (this.pending.length < this.ctx.knobs().pendingWritesMax) return true;
    this.ctx.notify((l) => l.onRefused?.(this.ctx.selfId, 'busy', this.ctx.scheduler.nowMs));
    return false;
  }

  private writeLocal(writeId: number, key: string, value: Uint8Array | undefined, nowMs: number, expiresMs: number): KvEntry | undefined {
    const entry = this.replica.write(key, value, nowMs, expiresMs);
    if (entry === 'full') {
      this.ctx.notify((l) => l.onRefused?.(this.ctx.selfId, 'full', this.ctx.scheduler.nowMs));
      return undefined;
    }
    const ceiling = this.replica.takeCeiling();
    if (ceiling !== undefined) this.disk.ceiling = ceiling;
    this.ctx.notify((l) => l.onWrite?.(this.ctx.selfId, writeId, entry, this.ctx.scheduler.nowMs));
    this.enqueue({ entry, from: undefined, writeId });
    return entry;
  }

  // ---- group commit and flood ----

  private enqueue(w: PendingWrite): void {
    this.pending.push(w);
    this.uncommitted.add(w.entry);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.ctx.scheduler.after(this.ctx.random.int(0, this.ctx.knobs().turnMsMax), () => this.flush());
  }

  private flush(): void {
    if (!this.alive) return;
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.uncommitted.clear();
    const entries = batch.map((w) => w.entry);
    this.disk.write(entries);
    const nowMs = this.ctx.scheduler.nowMs;
    this.ctx.notify((l) => l.onCommit?.(this.ctx.selfId, entries, nowMs));
    for (const w of batch) if (w.writeId !== undefined) this.ctx.notify((l) => l.onAck?.(this.ctx.selfId, w.writeId!, w.entry, nowMs));
    this.flood(batch);
  }

  /**
   * Each neighbour gets the batch's changes except those it sent us, and
   * (once the overlay view has been still for overlayTrustAfterMs) except
   * those that came by the flood of a node it is a neighbour of, as
   * kv-service.ts does; no connection: anti-entropy catches it up later.
   */
  private flood(batch: readonly PendingWrite[]): void {
    const trust = this.ctx.scheduler.nowMs - this.ctx.overlayChangedAtMs() >= this.ctx.knobs().overlayTrustAfterMs;
    for (const peer of this.ctx.neighbours()) {
      const conn = this.links.connectionTo(peer);
      if (!conn) continue;
      const keep = (w: PendingWrite): boolean => w.from === undefined || (w.from !== peer && !(trust && w.flooded === true && this.ctx.overlayOf(w.from)?.has(peer) === true));
      for (const frame of this.framesOf(batch.filter(keep).map((w) => w.entry))) {
        conn.send(frame);
        this.stats.floodFrames += 1;
      }
    }
  }

  /** Batch frames of about frameBytesTarget bytes each, cut as the runtime's encodeBatch cuts them. */
  private framesOf(entries: readonly KvEntry[], repair = false): KvFrame[] {
    const target = this.ctx.knobs().frameBytesTarget;
    const frames: KvFrame[] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < entries.length; i++) {
      bytes += entries[i]!.key.length + (entries[i]!.value?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
      if (bytes >= target || i === entries.length - 1) {
        frames.push({ kind: 'batch', entries: entries.slice(start, i + 1), repair });
        start = i + 1;
        bytes = 0;
      }
    }
    return frames;
  }

  // ---- frames from peers ----

  private onFrame(peer: string, frame: KvFrame, conn: KvConn): void {
    if (!this.alive) return;
    switch (frame.kind) {
      case 'batch':
        this.receive(peer, frame.entries, frame.repair !== true);
        return;
      case 'sync-request':
        this.answerSync(peer, frame, conn);
        return;
      case 'fetch-request':
        this.answerFetch(peer, frame, conn);
        return;
      case 'sync-response':
      case 'fetch-response':
        conn.take(frame);
        return;
      case 'hello':
        return;
    }
  }

  /** Applies a peer's entries; the winners go into the turn's commit. Returns how many won. */
  private receive(peer: string, entries: readonly KvEntry[], flooded = false): number {
    const now = this.ctx.wallMs();
    let won = 0;
    for (const sent of entries) {
      // What crossed the wire is the receiver's own copy (as a decoded frame is).
      const entry: KvEntry = { ...sent, value: sent.value?.slice() };
      this.stats.received += 1;
      if (this.pending.length >= this.ctx.knobs().pendingWritesMax) {
        this.stats.dropped += 1;
        continue;
      }
      const future = this.replica.stats.future;
      if (!this.replica.apply(entry, now)) {
        // Stamped further ahead of our clock than a peer's may be: refused for now.
        if (this.replica.stats.future > future) this.stats.future += 1;
        else this.stats.stale += 1;
        continue;
      }
      won += 1;
      this.enqueue({ entry, from: peer, flooded });
    }
    return won;
  }

  private answerSync(peer: string, req: Extract<KvRequest, { kind: 'sync-request' }>, conn: KvConn): void {
    const answer = this.replica.answerDigest(req.digest, this.ctx.knobs().syncVersionsMax);
    if (!answer) throw new Error(`${this.ctx.selfId}: a digest of another shape from ${peer}`);
    conn.reply(req, { kind: 'sync-response', buckets: answer.buckets, versions: answer.versions, more: answer.more });
  }

  private answerFetch(peer: string, req: Extract<KvRequest, { kind: 'fetch-request' }>, conn: KvConn): void {
    this.commitBeforeServing();
    const entries = this.replica.answerFetch(req.keys, this.ctx.knobs().syncBytesMax);
    const early = this.uncommittedOf(entries);
    conn.reply(req, { kind: 'fetch-response', entries });
    this.noteServedEarly(peer, early);
  }

  /**
   * As kv-service.ts does (the fix this simulation found): commit the turn's
   * writes before an anti-entropy answer or push may carry them, so nothing
   * leaves the node before it is on its disk.
   */
  private commitBeforeServing(): void {
    if (this.ctx.knobs().commitBeforeServing && this.pending.length > 0) this.flush();
  }

  private uncommittedOf(entries: readonly KvEntry[]): KvEntry[] {
    return this.uncommitted.size === 0 ? [] : entries.filter((e) => this.uncommitted.has(e));
  }

  /** Told after the frame left, so a listener may crash the node at that very moment. */
  private noteServedEarly(peer: string, early: readonly KvEntry[]): void {
    if (early.length > 0) this.ctx.notify((l) => l.onServedUncommitted?.(this.ctx.selfId, peer, early, this.ctx.scheduler.nowMs));
  }

  // ---- anti-entropy ----

  private idleSync(): void {
    this.ctx.scheduler.after(this.ctx.knobs().idleSyncIntervalMs, () => {
      if (!this.alive) return;
      for (const peer of this.ctx.neighbours()) {
        const conn = this.links.connectionTo(peer);
        if (conn) this.syncWith(peer, conn);
      }
      this.idleSync();
    });
  }

  /**
   * One anti-entropy round with a neighbour over `conn` (kv-service.ts
   * syncWith), again on the same connection while buckets remain or a fetch
   * answer was cut short (a closed connection fails the round).
   */
  syncWith(peer: string, conn: KvConn): void {
    if (!this.alive || this.syncing.has(peer)) return;
    this.syncing.add(peer);
    this.stats.syncRounds += 1;
    const done = (again: boolean): void => {
      if (!this.alive) return;
      this.syncing.delete(peer);
      // setImmediate in the runtime: after the commit of the current turn.
      if (again) this.ctx.scheduler.after(this.ctx.knobs().turnMsMax, () => this.syncWith(peer, conn));
    };
    const { syncTimeoutMs, syncVersionsMax } = this.ctx.knobs();
    conn.request({ kind: 'sync-request', digest: this.replica.digest() }, syncTimeoutMs, (answer) => {
      if (!this.alive) return;
      if (answer.kind !== 'sync-response') return done(false);
      this.commitBeforeServing();
      const r = this.replica;
      const buckets = answer.buckets.filter((b) => b < r.bucketCount);
      const plan = r.reconcile(buckets, answer.versions);
      if (plan.push.length > 0) {
        const early = this.uncommittedOf(plan.push);
        for (const frame of this.framesOf(plan.push, true)) conn.send(frame);
        this.stats.pushed += plan.push.length;
        this.noteServedEarly(peer, early);
        if (!this.alive) return;
      }
      let fetched = 0;
      let truncated = false;
      const fetchFrom = (i: number): void => {
        if (i >= plan.fetch.length) {
          this.stats.synced += fetched;
          return done(answer.more || truncated);
        }
        const keys = plan.fetch.slice(i, i + syncVersionsMax);
        conn.request({ kind: 'fetch-request', keys }, syncTimeoutMs, (reply) => {
          if (!this.alive) return;
          if (reply.kind !== 'fetch-response') return fetchFrom(plan.fetch.length);
          // A fetch answer is bounded in bytes: what did not fit is found again in the next round.
          if (reply.entries.length < keys.length) truncated = true;
          fetched += this.receive(peer, reply.entries);
          fetchFrom(i + syncVersionsMax);
        }, () => done(false));
      };
      fetchFrom(0);
    }, () => done(false));
  }
}
