import { hash } from 'node:crypto';
import { GossipCore, GOSSIP_DEFAULTS } from '../core/gossip/gossip.js';
import type { GossipMessage, TextProblem } from '../core/gossip/message.js';
import type { StreamDigest } from '../core/gossip/streams.js';
import { GossipStore, RETENTION_DEFAULTS } from '../store/gossip-store.js';
import type { RetentionPolicy, StoredMessage } from '../store/gossip-store.js';
import type { Envelope } from '../wire/index.js';
import type { FramedConnection } from './connection.js';
import { digestFromWire, digestToWire, messageFromWire, messageToWire } from './gossip-codec.js';
import { decodeGossipBatch, encodeGossipMessage, gossipBatchFrame, pathEntryBytes, withPathEntry } from './gossip-frame.js';
import type { Logger } from './log.js';
import { RateLimitedLog } from './log.js';
import type { Service } from './supervisor.js';

/**
 * Gossip on a node (seed 003): the core decides, this service stores and
 * sends. Writes are group-committed: everything that arrives in one turn of
 * the event loop is stored in one SQLite transaction. A submit is forwarded,
 * acknowledged to the submitter, and shown to watchers only after that
 * commit — so an acknowledged message is on disk at its origin before anyone
 * hears of it; a message from a peer is forwarded just before it (see flush).
 * Anti-entropy runs with every overlay neighbour every `syncIntervalMs` and
 * as soon as a link comes up.
 */
export interface GossipOptions {
  readonly selfId: string;
  readonly incarnation: number;
  readonly dataDir: string;
  readonly log: Logger;
  readonly messageBytesMax: number;
  readonly retention: RetentionPolicy;
  readonly syncIntervalMs: number;
  /** With nothing new on our side, a neighbour is still synced this often (repairs what a crash lost in flight). */
  readonly idleSyncIntervalMs: number;
  /** Bounds of one anti-entropy answer. */
  readonly syncBatchMax: number;
  readonly syncBytesMax: number;
  /** Writes waiting for the next group commit; beyond it, incoming gossip is dropped (anti-entropy refetches it). */
  readonly pendingWritesMax: number;
  readonly watchersMax: number;
  readonly neighbours: () => readonly string[];
  /**
   * Another node's overlay neighbours as this node computes them (the same
   * rule on the same members), and since when that view has been stable
   * (performance clock): flooding skips neighbours a node on the path covers.
   */
  readonly overlayOf?: (peerId: string) => ReadonlySet<string> | undefined;
  readonly overlayStableSinceMs?: () => number;
  readonly connection: (peerId: string) => FramedConnection | undefined;
}

export const GOSSIP_SERVICE_DEFAULTS = Object.freeze({
  messageBytesMax: GOSSIP_DEFAULTS.messageBytesMax,
  retention: RETENTION_DEFAULTS,
  syncIntervalMs: 2_000,
  idleSyncIntervalMs: 30_000,
  syncBatchMax: 5_000,
  syncBytesMax: 2 * 1024 * 1024,
  pendingWritesMax: 50_000,
  watchersMax: 256,
});

export class GossipError extends Error {
  override name = 'GossipError';
  constructor(readonly code: 'empty' | 'too_large' | 'busy' | 'unavailable', message: string) {
    super(message);
  }
}

/** A watcher: the stored message, and its GossipMessage bytes (encodeGossipMessage of it, shared by every watcher). */
export type WatchListener = (m: StoredMessage, encoded: Uint8Array) => void;

interface PendingWrite {
  readonly message: GossipMessage;
  readonly receivedMs: number;
  /** The message's canonical bytes as a peer sent them (see ReceivedMessage.canonical). */
  readonly canonical?: Uint8Array | undefined;
  readonly onDone?: (err?: Error) => void;
}

const PURGE_INTERVAL_MS = 60_000;
/** How long the overlay must have been unchanged before a node relies on its picture of other nodes' neighbours. */
const OVERLAY_TRUST_AFTER_MS = 5_000;
/**
 * Anti-entropy leaves out messages we stored less than this long ago: they
 * are still being flooded, and resending them under sustained load
 * multiplied the traffic (30k copies sent for 5k messages). A copy that
 * really was lost goes in the next round.
 */
const IN_FLIGHT_WINDOW_MS = 1_000;
/** One pull at a time: a neighbour that does not answer must not hold up the others for long. */
const SYNC_TIMEOUT_MS = 5_000;
/** How long one pull has the node to itself before the next neighbour's may start. */
const PULL_TURN_MS = 1_000;
/** Flooded messages per frame stop at about this many bytes (the frame limit is 4 MiB). */
const BATCH_FRAME_BYTES_MAX = 1024 * 1024;

export class GossipService implements Service {
  readonly name = 'gossip';
  private store: GossipStore | undefined;
  private core: GossipCore | undefined;
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  /** The neighbour we are pulling from now (one at a time), and who is next. */
  private pulling: string | undefined;
  private readonly pullQueue = new Set<string>();
  /** Pulls whose answer has not come yet (at most one per neighbour). */
  private readonly pullsOpen = new Set<string>();
  private readonly pullTimers = new Map<string, NodeJS.Timeout>();
  /**
   * One entry per commit within IN_FLIGHT_WINDOW_MS, oldest first: when, and
   * the store's last rowid before it. Rowids follow storing order, so a row
   * above the oldest entry's mark was stored within the window — two numbers
   * per commit instead of a set entry per message.
   */
  private recentCommits: { atMs: number; afterRowid: number }[] = [];
  /** Bumped on every commit: a neighbour last synced at the current version has nothing new from us. */
  private version = 0;
  private readonly lastSync = new Map<string, { version: number; atMs: number }>();
  private readonly watchers = new Set<WatchListener>();
  private readonly offences: RateLimitedLog;
  /** Our path entry, appended to the bytes of the messages we forward. */
  private readonly selfPathEntry: Uint8Array;
  /** Bound once: the hand decoder asks it for every message of a batch. */
  private readonly isHeld = (origin: string, incarnation: number, seq: number): boolean => this.core?.has(origin, incarnation, seq) ?? false;
  /**
   * Counters since start (status, and the `stats` log line on SIGUSR2): what
   * a message costs under load shows in them — copies that arrived twice,
   * writes dropped at the queue bound, messages anti-entropy fetched or sent
   * (each far dearer than a flooded copy), and how many group commits carried
   * how many messages.
   */
  readonly stats = {
    submitted: 0,
    received: 0,
    duplicates: 0,
    invalid: 0,
    dropped: 0,
    synced: 0,
    commits: 0,
    committedMessages: 0,
    syncRequests: 0,
    syncSent: 0,
    syncHeldBack: 0,
  };

  constructor(private readonly options: GossipOptions) {
    this.offences = new RateLimitedLog(options.log);
    this.selfPathEntry = pathEntryBytes(options.selfId);
  }

  async start(): Promise<void> {
    const store = GossipStore.open(this.options.dataDir);
    const core = new GossipCore({
      selfId: this.options.selfId,
      incarnation: this.options.incarnation,
      // One-shot hash, digest as a 'binary' (latin1) string: no Hash object and no Buffer per message (the id is checked on every message received).
      sha256: (text) => hash('sha256', text, 'binary'),
      messageBytesMax: this.options.messageBytesMax,
      digestAboveMax: GOSSIP_DEFAULTS.digestAboveMax,
      streamsMax: GOSSIP_DEFAULTS.streamsMax,
    });
    core.applyPurge(store.purge(this.options.retention, Date.now()));
    core.restore(store.held(), store.floors());
    this.store = store;
    this.core = core;
    this.options.log.info({ messages: store.count(), streams: core.streamCount }, 'gossip store open');
    this.syncTimer = setInterval(() => this.syncAll(), this.options.syncIntervalMs);
    this.purgeTimer = setInterval(() => this.purge(), PURGE_INTERVAL_MS);
    this.syncAll();
  }

  async stop(): Promise<void> {
    clearInterval(this.syncTimer);
    clearInterval(this.purgeTimer);
    this.flush();
    this.store?.close();
    this.store = undefined;
    this.core = undefined;
    this.pulling = undefined;
    this.pullQueue.clear();
    this.pullsOpen.clear();
    for (const t of this.pullTimers.values()) clearTimeout(t);
    this.pullTimers.clear();
    this.recentCommits = [];
    this.lastSync.clear();
  }

  /** Stores a new message of ours; resolves once it is on disk (and is then flooded). */
  submit(text: string): Promise<GossipMessage> {
    const core = this.core;
    if (!core) return Promise.reject(new GossipError('unavailable', 'the gossip store is not open'));
    if (this.pending.length >= this.options.pendingWritesMax) return Promise.reject(new GossipError('busy', 'too many writes pending; try again'));
    const result = core.submit(text, Date.now());
    if (!result.ok) return Promise.reject(problemError(result.problem));
    this.stats.submitted += 1;
    return new Promise((resolve, reject) => {
      this.enqueue({ message: result.message, receivedMs: Date.now(), onDone: (err) => (err ? reject(err) : resolve(result.message)) });
    });
  }

  get(id: string): StoredMessage | undefined {
    return this.store?.get(id);
  }

  list(after: number, limit: number): StoredMessage[] {
    return this.store?.list(after, limit) ?? [];
  }

  count(): number {
    return this.store?.count() ?? 0;
  }

  /** The store's id merges and retention passes so far (count and ms), for the stats line. */
  storeWork(): Readonly<Record<string, number>> {
    return this.store?.work ?? {};
  }

  /** Calls `listener` for every message stored from now on; returns the unsubscribe. */
  watch(listener: WatchListener): () => void {
    if (this.watchers.size >= this.options.watchersMax) throw new GossipError('busy', `more than ${this.options.watchersMax} watchers`);
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  /** A peer frame for gossip; false when it is not gossip's. */
  onPeerEnvelope(peerId: string, env: Envelope, conn: FramedConnection): boolean {
    switch (env.body.case) {
      case 'gossip':
        this.receive(peerId, env.body.value.message);
        return true;
      case 'gossipBatch':
        for (const m of env.body.value.messages) this.receive(peerId, m);
        return true;
      case 'syncRequest':
        this.answerSync(peerId, env, conn);
        return true;
      default:
        return false;
    }
  }

  /**
   * A raw peer frame, before the generated decoder: a gossip batch is read by
   * the hand-written codec (about 5x cheaper); false for anything else.
   */
  onPeerFrame(peerId: string, payload: Uint8Array): boolean {
    // Copies we hold already (about half of what flooding brings) are counted, not built.
    const batch = decodeGossipBatch(payload, this.isHeld);
    if (!batch) return false;
    this.stats.duplicates += batch.held;
    for (const m of batch.fresh) this.receiveMessage(peerId, m.message, m.canonical);
    return true;
  }

  /** A link came up (a restart or a healed partition): repair at once. */
  onLinkUp(peerId: string): void {
    this.syncWith(peerId);
  }

  private receive(peerId: string, wire: Parameters<typeof messageFromWire>[0]): boolean {
    return this.receiveMessage(peerId, messageFromWire(wire));
  }

  private receiveMessage(peerId: string, message: GossipMessage | undefined, canonical?: Uint8Array): boolean {
    const core = this.core;
    if (!core) return false;
    const verdict = message ? core.receive(message) : ({ kind: 'invalid', reason: 'missing or out-of-range fields' } as const);
    if (verdict.kind === 'duplicate') {
      this.stats.duplicates += 1;
      return false;
    }
    if (verdict.kind === 'invalid') {
      this.stats.invalid += 1;
      this.offences.warn(`gossip:${peerId}`, performance.now(), { peer: peerId, reason: verdict.reason }, 'dropped an invalid gossip message');
      return false;
    }
    if (this.pending.length >= this.options.pendingWritesMax) {
      core.unreceive(verdict.message);
      this.stats.dropped += 1;
      this.offences.warn('gossip:overload', performance.now(), { pending: this.pending.length }, 'write queue full; dropped a message for anti-entropy to refetch');
      return false;
    }
    this.stats.received += 1;
    // Bytes we can forward as they are only if the core kept the message as it came (it may cut a long path).
    this.enqueue({ message: verdict.message, receivedMs: Date.now(), canonical: verdict.message === message ? canonical : undefined });
    return true;
  }

  private enqueue(w: PendingWrite): void {
    this.pending.push(w);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Group commit: one transaction for the turn's writes, then flood our own
   * submits, acknowledge, notify. Messages from peers are flooded on before
   * the commit: a hop's latency then leaves out our write; if it fails (or we
   * crash first) we forget them and anti-entropy fetches them back, while the
   * neighbours have them already. Our own are flooded only once durable.
   */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const store = this.store;
    let afterRowid = 0;
    const neighbours = this.options.neighbours();
    const outbox = new Map<string, Uint8Array[]>();
    const { overlayOf, overlayStableSinceMs } = this.options;
    // Trust our picture of other nodes' neighbours only once the overlay has
    // been still for a while: then every node computes the same one.
    const neighboursOf = overlayOf && overlayStableSinceMs && performance.now() - overlayStableSinceMs() >= OVERLAY_TRUST_AFTER_MS ? overlayOf : undefined;
    for (const w of batch) if (!w.onDone) this.flood(w.message, neighbours, outbox, neighboursOf, w.canonical);
    for (const [peer, messages] of outbox) this.sendBatch(peer, messages);
    outbox.clear();
    try {
      if (!store) throw new GossipError('unavailable', 'the gossip store is closed');
      afterRowid = store.lastRowid;
      store.insertMany(batch);
    } catch (err) {
      this.options.log.error({ err: (err as Error).message, messages: batch.length }, 'gossip write failed');
      for (const w of batch) {
        // A received message is forgotten so anti-entropy fetches it again. A
        // submit fails to its client instead; its seq stays used (a hole in our
        // own stream that costs peers two numbers in a digest), because reusing
        // it could give two different texts the same (origin, seq).
        if (!w.onDone) this.core?.unreceive(w.message);
        w.onDone?.(err as Error);
      }
      return;
    }
    this.version += 1;
    this.stats.commits += 1;
    this.stats.committedMessages += batch.length;
    this.noteRecent(afterRowid);
    for (const w of batch) {
      if (w.onDone) {
        this.flood(w.message, neighbours, outbox, neighboursOf);
        w.onDone();
      }
      if (this.watchers.size > 0) {
        const stored = { ...w.message, rowid: 0, receivedMs: w.receivedMs };
        // Encoded once for every watcher; a peer's canonical bytes are already exactly that.
        const encoded = w.canonical ?? encodeGossipMessage(w.message);
        for (const listener of this.watchers) listener(stored, encoded);
      }
    }
    for (const [peer, messages] of outbox) this.sendBatch(peer, messages);
  }

  /** Queues `message` for every neighbour not on its path (with our id appended). */
  private flood(
    message: GossipMessage,
    neighbours: readonly string[],
    outbox: Map<string, Uint8Array[]>,
    neighboursOf: ((id: string) => ReadonlySet<string> | undefined) | undefined,
    canonical?: Uint8Array,
  ): void {
    const { to, message: out } = this.core!.forward(message, neighbours, neighboursOf);
    if (to.length === 0) return;
    // Encoded once, shared by every neighbour's batch. When the core only
    // appended our id to the path (the last field), the bytes we received
    // plus our path entry are exactly what encodeGossipMessage(out) writes.
    const wire = canonical && out.path.length === message.path.length + 1 ? withPathEntry(canonical, this.selfPathEntry) : encodeGossipMessage(out);
    for (const peer of to) {
      const queue = outbox.get(peer);
      if (queue) queue.push(wire);
      else outbox.set(peer, [wire]);
    }
  }

  /** One frame per neighbour per flush (split so no frame nears the frame limit). */
  private sendBatch(peer: string, messages: readonly Uint8Array[]): void {
    const conn = this.options.connection(peer);
    if (!conn) return;
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) {
      bytes += messages[i]!.length + 4;
      if (bytes >= BATCH_FRAME_BYTES_MAX || i === messages.length - 1) {
        conn.sendFrame(gossipBatchFrame(messages.slice(start, i + 1)));
        start = i + 1;
        bytes = 0;
      }
    }
  }

  /**
   * The periodic round: a neighbour is synced when we stored something since
   * our last exchange with it, or after `idleSyncIntervalMs` regardless. An
   * idle cluster thus exchanges digests only now and then; a neighbour with
   * news syncs with us itself (its version moved), and the answerer of a
   * sync whose asker holds what it lacks pulls from the asker in turn, so
   * one exchange repairs both sides.
   */
  private syncAll(): void {
    const now = performance.now();
    for (const peer of this.options.neighbours()) {
      const last = this.lastSync.get(peer);
      if (!last || last.version !== this.version || now - last.atMs >= this.options.idleSyncIntervalMs) this.syncWith(peer);
    }
  }

  /**
   * Asks `peerId` for what we lack. One pull at a time per node: a node that
   * restarts asks its neighbours in turn, so each missing message is fetched
   * from one of them, not from all (before: 25k sent for 10k missed).
   */
  private syncWith(peerId: string): void {
    if (!this.core) return;
    if (this.pulling !== undefined || this.pullsOpen.has(peerId)) {
      if (this.pulling !== peerId) this.pullQueue.add(peerId);
      return;
    }
    this.pullQueue.delete(peerId);
    const core = this.core;
    const conn = this.options.connection(peerId);
    if (!conn) {
      this.nextPull();
      return;
    }
    this.pulling = peerId;
    this.pullsOpen.add(peerId);
    // A slow answer holds up the next neighbour's pull only this long (then both run).
    const release = setTimeout(() => {
      if (this.pulling !== peerId) return;
      this.pulling = undefined;
      this.nextPull();
    }, PULL_TURN_MS);
    release.unref();
    const versionAtStart = this.version;
    const streams = core.digest().map(digestToWire);
    const done = (again: 'now' | 'later' | 'no'): void => {
      clearTimeout(release);
      this.pullsOpen.delete(peerId);
      if (this.pulling === peerId) this.pulling = undefined;
      if (again === 'now') setImmediate(() => this.syncWith(peerId));
      else if (again === 'later') this.pullLater(peerId);
      this.nextPull();
    };
    conn
      .request({ body: { case: 'syncRequest', value: { streams } } }, SYNC_TIMEOUT_MS)
      .then((answer) => {
        if (answer.body.case !== 'syncResponse') return done('no');
        let added = 0;
        for (const m of answer.body.value.messages) if (this.receive(peerId, m)) added += 1;
        this.stats.synced += added;
        if (added > 0) this.options.log.debug({ peer: peerId, added }, 'anti-entropy fetched messages');
        // Messages we fetch now are new to us and will bump the version; what
        // counts as "synced" is the state we described when we asked.
        this.lastSync.set(peerId, { version: versionAtStart, atMs: performance.now() });
        // More to fetch: go again after this batch is committed, or, when the
        // peer held back messages still in flight, once they are no longer.
        const more = answer.body.value.more;
        done(!more ? 'no' : answer.body.value.messages.length > 0 ? 'now' : 'later');
      })
      .catch(() => done('no'));
  }

  private nextPull(): void {
    if (this.pulling !== undefined || !this.core) return;
    // A neighbour whose pull is still open waits for its answer (done() calls us again).
    for (const peer of this.pullQueue) {
      if (this.pullsOpen.has(peer)) continue;
      this.syncWith(peer);
      return;
    }
  }

  /** Asks `peerId` again once what it held back as in flight is old enough to be sent. */
  private pullLater(peerId: string): void {
    if (this.pullTimers.has(peerId)) return;
    const timer = setTimeout(() => {
      this.pullTimers.delete(peerId);
      this.syncWith(peerId);
    }, IN_FLIGHT_WINDOW_MS);
    this.pullTimers.set(peerId, timer);
  }

  private answerSync(peerId: string, env: Envelope, conn: FramedConnection): void {
    const core = this.core;
    if (env.body.case !== 'syncRequest') return;
    if (!core) {
      // Not started yet (peers connect as soon as the listener is up): an
      // empty answer, so the asker moves on to its next neighbour at once.
      conn.reply(env, { body: { case: 'syncResponse', value: { messages: [], more: false, streams: [] } } });
      return;
    }
    const theirs = env.body.value.streams.map(digestFromWire).filter((d): d is StreamDigest => d !== undefined);
    const { messages, more } = this.lacking(peerId, theirs);
    this.stats.syncRequests += 1;
    this.stats.syncSent += messages.length;
    const streams = core.digest().map(digestToWire);
    conn.reply(env, { body: { case: 'syncResponse', value: { messages, more, streams } } });
    if (messages.length > 0) this.options.log.debug({ peer: peerId, sent: messages.length }, 'anti-entropy answered');
    // The asker holds something we lack: pull it, after the in-flight window
    // (under load what we lack is mostly on its way to us by flooding).
    if (core.lacksAnyOf(theirs)) this.pullLater(peerId);
  }

  /**
   * What a peer with digest `theirs` lacks, bounded in count and bytes, with
   * our id on the path; messages we stored within the in-flight window are
   * left out (they are being flooded) and make `more` true, so the peer asks
   * again once they are old enough.
   */
  private lacking(peerId: string, theirs: readonly StreamDigest[]): { messages: ReturnType<typeof messageToWire>[]; more: boolean } {
    const core = this.core;
    const store = this.store;
    if (!core || !store) return { messages: [], more: false };
    const plan = core.plan(theirs, this.options.syncBatchMax);
    this.forgetOldRecent(performance.now());
    const youngAboveRowid = this.recentCommits[0]?.afterRowid ?? Number.POSITIVE_INFINITY;
    const messages = [];
    const youngAfterMs = Date.now() - IN_FLIGHT_WINDOW_MS;
    let bytes = 0;
    let truncated = false;
    let heldBack = 0;
    outer: for (const p of plan) {
      // Young messages are skipped before the store is read: under load most of a plan is still in flight.
      // They are the newest rows, not merged yet, so memory knows their rowids (a merged one is judged by its receivedMs below).
      const unmerged = store.unmergedRowids(p.origin, p.incarnation);
      const seqs = unmerged === undefined ? p.seqs : p.seqs.filter((seq) => !((unmerged.get(seq) ?? 0) > youngAboveRowid));
      heldBack += p.seqs.length - seqs.length;
      for (const m of store.bySeqs(p.origin, p.incarnation, seqs)) {
        if (m.receivedMs > youngAfterMs) {
          heldBack += 1;
          continue;
        }
        const size = m.text.length * 3 + 64;
        if (bytes + size > this.options.syncBytesMax && messages.length > 0) {
          truncated = true;
          break outer;
        }
        bytes += size;
        messages.push(messageToWire(core.forward(m, [peerId]).message));
      }
    }
    const planned = plan.reduce((n, p) => n + p.seqs.length, 0);
    this.stats.syncHeldBack += heldBack;
    return { messages, more: truncated || heldBack > 0 || planned >= this.options.syncBatchMax };
  }

  /** Remembers where this commit's rows start, for IN_FLIGHT_WINDOW_MS (see lacking). */
  private noteRecent(afterRowid: number): void {
    const nowMs = performance.now();
    this.recentCommits.push({ atMs: nowMs, afterRowid });
    this.forgetOldRecent(nowMs);
  }

  private forgetOldRecent(nowMs: number): void {
    const cutMs = nowMs - IN_FLIGHT_WINDOW_MS;
    let drop = 0;
    while (drop < this.recentCommits.length && this.recentCommits[drop]!.atMs <= cutMs) drop += 1;
    if (drop > 0) this.recentCommits.splice(0, drop);
  }

  private purge(): void {
    if (!this.store || !this.core) return;
    try {
      this.core.applyPurge(this.store.purge(this.options.retention, Date.now()));
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'gossip retention failed');
    }
  }
}

function problemError(p: TextProblem): GossipError {
  return p.code === 'empty'
    ? new GossipError('empty', 'the message is empty')
    : new GossipError('too_large', `the message is ${p.bytes} bytes; the limit is ${p.maxBytes} bytes`);
}
