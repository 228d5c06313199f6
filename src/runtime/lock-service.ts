import { LockAcquirer, ACQUIRER_DEFAULTS } from '../core/locks/acquirer.js';
import type { AcquirerConfig, AcquirerOutput, LockSend } from '../core/locks/acquirer.js';
import { LockError } from '../core/locks/errors.js';
import { LockGrantor, GRANTOR_DEFAULTS } from '../core/locks/grantor.js';
import type { GrantorConfig, GrantorOutput } from '../core/locks/grantor.js';
import { keyProblem, TOKEN_MAX } from '../core/locks/types.js';
import type { LockVote } from '../core/locks/types.js';
import { LockStore } from '../store/lock-store.js';
import type { LockStoreOptions } from '../store/lock-store.js';
import type { Envelope, EnvelopeInit } from '../wire/index.js';
import type { FramedConnection } from './connection.js';
import { proposalFromWire, proposeBody, releaseBody, releaseFromWire, voteBody, voteFromWire } from './lock-codec.js';
import type { Logger } from './log.js';
import { RateLimitedLog } from './log.js';
import type { Service } from './supervisor.js';

/**
 * Distributed locks on a node (DESIGN.md section 2 "Locks"): this node's
 * grantor (answers LockPropose/LockRelease of every node, itself included)
 * and its acquirer (runs the acquires of the clients that talk to this
 * node). The cores decide (src/core/locks); this service persists, sends
 * and keeps the one timer.
 *
 * The quorum set is whatever `quorum()` returns at each acquire, and it must
 * be the same list on every node: the cluster file's nodes when there is one.
 * Safety rests on any two majorities of that one set sharing a node. A set of
 * "live" members would not do: during a partition each side sees only
 * itself as live, and two majorities of two different live sets need not
 * share anyone, so both sides would grant the lock. Without a cluster file
 * the node's best guess is every member it ever knew (dead ones included);
 * nodes that have not yet discovered each other may then disagree on the
 * set, so `quorumMin` lets the node refuse acquires until it knows enough.
 *
 * Persist-before-answer: every grantor output is committed to locks.db in
 * one transaction before any vote of it is sent. Stopping the service does
 * not release held locks (the node may be dying): leases end by their ttl.
 */
export interface LockServiceOptions {
  readonly selfId: string;
  readonly dataDir: string;
  readonly log: Logger;
  /** The quorum set (node ids, this node included): the same list on every node. */
  readonly quorum: () => readonly string[];
  /** A connection to that peer's node, on which LockPropose/LockRelease go as requests. */
  readonly connect: (peerId: string) => Promise<FramedConnection>;
  /** Wall-clock ms (priorities, persisted lease expiries). Default Date.now. */
  readonly clock?: () => number;
  /** Monotonic ms (leases, waits, retries). Default performance.now. */
  readonly monotonic?: () => number;
  /** Refuse acquires (no_quorum) while the quorum set is smaller than this. Default 1. */
  readonly quorumMin?: number;
  readonly acquirer?: Partial<Omit<AcquirerConfig, 'selfId' | 'attemptBase'>>;
  readonly grantor?: Partial<GrantorConfig>;
  readonly store?: Partial<LockStoreOptions>;
  /** A request to a peer not answered within this is given up (the core sends again). */
  readonly requestTimeoutMs?: number;
}

export interface AcquireResult {
  readonly acquired: boolean;
  /** The fencing token when acquired; 0 when not. */
  readonly token: bigint;
}

/** Where a grantor's vote goes: back on the connection the proposal came on, or to our own acquirer. */
type ReplyTo = { readonly kind: 'local' } | { readonly kind: 'conn'; readonly conn: FramedConnection; readonly requestId: number };

const LOCAL: ReplyTo = Object.freeze({ kind: 'local' });

interface Running {
  readonly store: LockStore;
  readonly grantor: LockGrantor<ReplyTo>;
  readonly acquirer: LockAcquirer;
  readonly fail: (err: Error) => void;
}

export class LockService implements Service {
  readonly name = 'locks';
  private running: Running | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Infinity;
  private readonly waiting = new Map<bigint, { resolve: (r: AcquireResult) => void; reject: (e: Error) => void }>();
  /** Connections we listen on for later votes (a queued proposal granted afterwards). */
  private readonly watched = new WeakSet<FramedConnection>();
  private readonly offences: RateLimitedLog;
  private readonly wall: () => number;
  private readonly mono: () => number;

  constructor(private readonly options: LockServiceOptions) {
    this.offences = new RateLimitedLog(options.log);
    this.wall = options.clock ?? Date.now;
    this.mono = options.monotonic ?? (() => performance.now());
  }

  async start(fail: (err: Error) => void): Promise<void> {
    if (this.running) return;
    const store = LockStore.open(this.options.dataDir, this.options.store);
    const epoch = store.nextEpoch();
    const grantor = new LockGrantor<ReplyTo>({ ...GRANTOR_DEFAULTS, ...this.options.grantor }, (key) => store.load(key));
    const acquirer = new LockAcquirer({ ...ACQUIRER_DEFAULTS, ...this.options.acquirer, selfId: this.options.selfId, attemptBase: BigInt(epoch) << 32n });
    this.running = { store, grantor, acquirer, fail };
    this.options.log.info({ epoch, keys: store.rowCount }, 'lock store open');
  }

  async stop(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.running = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = Infinity;
    for (const [, w] of this.waiting) w.reject(new LockError('stopped', 'the lock service stopped'));
    this.waiting.clear();
    r.store.close();
  }

  /**
   * Acquires `key` for ttlMs, waiting at most waitMs (0: do not wait for a
   * holder). Resolves { acquired: true, token } or { acquired: false, token: 0n };
   * rejects with LockError for bad input (bad_key, bad_ttl, bad_wait), no_quorum, busy, stopped.
   * `signal` (the client went away) gives up a wait: not acquired, and our
   * places in the grantors' queues are released.
   */
  acquire(key: string, ttlMs: number, waitMs: number, signal?: AbortSignal): Promise<AcquireResult> {
    const r = this.running;
    if (!r) return Promise.reject(new LockError('stopped', 'the lock service is not running'));
    if (signal?.aborted) return Promise.resolve({ acquired: false, token: 0n });
    const quorum = this.options.quorum();
    const quorumMin = this.options.quorumMin ?? 1;
    if (new Set(quorum).size < quorumMin) {
      return Promise.reject(new LockError('no_quorum', `the quorum set has ${new Set(quorum).size} nodes; locks need at least ${quorumMin}`));
    }
    let started: { attempt: bigint; output: AcquirerOutput };
    try {
      started = r.acquirer.acquire({ key, ttlMs, waitMs, quorum }, this.mono(), this.wall());
    } catch (err) {
      return Promise.reject(err);
    }
    const { attempt } = started;
    const result = new Promise<AcquireResult>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.waiting.has(attempt) || this.running !== r) return;
        this.waiting.delete(attempt);
        this.applyAcquirer(r, r.acquirer.cancel(attempt, this.mono()));
        resolve({ acquired: false, token: 0n });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => signal?.removeEventListener('abort', onAbort);
      this.waiting.set(attempt, {
        resolve: (res) => { done(); resolve(res); },
        reject: (err) => { done(); reject(err); },
      });
    });
    this.applyAcquirer(r, started.output);
    return result;
  }

  /**
   * Releases the lock `key` held with `token`. True if it was held with that
   * token and its lease had not ended. A lock acquired through this node is
   * released by its attempt; one acquired through another node is released
   * by token at every grantor (true when a majority of the quorum set had
   * that lease and ended it).
   */
  async release(key: string, token: bigint): Promise<boolean> {
    const r = this.running;
    if (!r) throw new LockError('stopped', 'the lock service is not running');
    if (token < 1n || token > TOKEN_MAX) return false;
    // The grantors decide, also for a lock this node acquired: it may have
    // been released through another node since (found by the e2e tests: the
    // holder's node answered "released" twice). Then the local attempt ends.
    const released = await this.releaseByToken(r, key, token);
    if (this.running === r) {
      const local = r.acquirer.release(key, token, this.mono());
      this.applyAcquirer(r, local.output);
    }
    return released;
  }

  private async releaseByToken(r: Running, key: string, token: bigint): Promise<boolean> {
    const kp = keyProblem(key, r.acquirer.config.limits);
    if (kp) throw new LockError('bad_key', kp);
    const quorum = [...new Set(this.options.quorum())];
    const msg = { key, holder: '', attempt: 0n, token };
    const answers = await Promise.all(quorum.map(async (peer): Promise<boolean> => {
      if (peer === this.options.selfId) {
        if (this.running !== r) return false;
        const out = r.grantor.release(msg, this.mono(), this.wall());
        if (!this.persist(r, out)) return false;
        this.sendLater(r, out);
        this.rearm(r);
        return out.released;
      }
      try {
        const conn = await this.options.connect(peer);
        const answer = await conn.request({ body: releaseBody(msg) }, this.options.requestTimeoutMs ?? r.acquirer.config.retryMs * 2);
        return answer.body.case === 'lockReleased' && answer.body.value.released;
      } catch {
        return false;
      }
    }));
    return answers.filter(Boolean).length >= Math.floor(quorum.length / 2) + 1;
  }

  /**
   * A frame from another node. Handles LockPropose and LockRelease (answered
   * on `conn` with the request's id; later votes for a queued proposal go on
   * the same conn with the same id and response=false) and returns true; any
   * other frame: false.
   */
  onRequest(env: Envelope, conn: FramedConnection): boolean {
    const body = env.body;
    if (body.case !== 'lockPropose' && body.case !== 'lockRelease') return false;
    const r = this.running;
    // Not running: no answer; the proposer sends again.
    if (!r) return true;
    if (body.case === 'lockPropose') {
      const out = r.grantor.propose(proposalFromWire(body.value), { kind: 'conn', conn, requestId: env.requestId }, this.mono(), this.wall());
      if (!this.persist(r, out)) return true;
      conn.reply(env, { body: voteBody(out.reply) });
      this.sendLater(r, out);
    } else {
      const out = r.grantor.release(releaseFromWire(body.value), this.mono(), this.wall());
      if (!this.persist(r, out)) return true;
      conn.reply(env, { body: { case: 'lockReleased', value: { released: out.released } } });
      this.sendLater(r, out);
    }
    this.rearm(r);
    return true;
  }

  /** Acquires in flight or held on this node (status). */
  get attemptCount(): number {
    return this.running?.acquirer.attemptCount ?? 0;
  }

  private persist(r: Running, out: GrantorOutput<ReplyTo>): boolean {
    try {
      r.store.write(out.persist, this.wall());
      return true;
    } catch (err) {
      // Nothing of this output may leave: a vote must never get ahead of its record.
      this.options.log.error({ err: (err as Error).message }, 'lock store write failed');
      r.fail(err as Error);
      return false;
    }
  }

  private sendLater(r: Running, out: GrantorOutput<ReplyTo>): void {
    for (const l of out.later) {
      if (l.replyTo.kind === 'local') this.deliverLocal(() => this.onVote(r, this.options.selfId, l.vote));
      else l.replyTo.conn.send({ requestId: l.replyTo.requestId, response: false, body: voteBody(l.vote) });
    }
  }

  private applyAcquirer(r: Running, out: AcquirerOutput): void {
    for (const s of out.sends) this.send(r, s);
    for (const e of out.events) {
      if (e.kind === 'acquired') {
        this.waiting.get(e.attempt)?.resolve({ acquired: true, token: e.token });
        this.waiting.delete(e.attempt);
      } else if (e.kind === 'failed') {
        this.waiting.get(e.attempt)?.resolve({ acquired: false, token: 0n });
        this.waiting.delete(e.attempt);
      } else {
        this.options.log.debug({ key: e.key, token: e.token.toString() }, 'lock lease ended without a release');
      }
    }
    this.rearm(r);
  }

  private onVote(r: Running, from: string, vote: LockVote): void {
    if (this.running !== r) return;
    this.applyAcquirer(r, r.acquirer.vote(from, vote, this.mono()));
  }

  private send(r: Running, s: LockSend): void {
    const m = s.message;
    if (s.to === this.options.selfId) {
      // Our own grantor: no connection, but still asynchronous (as if it had crossed the network).
      this.deliverLocal(() => {
        if (this.running !== r) return;
        if (m.kind === 'propose') {
          const out = r.grantor.propose(m.proposal, LOCAL, this.mono(), this.wall());
          if (!this.persist(r, out)) return;
          this.onVote(r, this.options.selfId, out.reply);
          this.sendLater(r, out);
        } else {
          const out = r.grantor.release(m.release, this.mono(), this.wall());
          if (!this.persist(r, out)) return;
          this.sendLater(r, out);
        }
        this.rearm(r);
      });
      return;
    }
    void this.sendToPeer(r, s.to, m.kind === 'propose' ? proposeBody(m.proposal) : releaseBody(m.release));
  }

  private async sendToPeer(r: Running, peerId: string, body: EnvelopeInit['body']): Promise<void> {
    let conn: FramedConnection;
    try {
      conn = await this.options.connect(peerId);
    } catch (err) {
      this.offences.warn(`connect:${peerId}`, this.mono(), { peer: peerId, err: (err as Error).message }, 'lock service cannot reach a peer (it will try again)');
      return;
    }
    if (this.running !== r) return;
    this.watch(r, peerId, conn);
    try {
      const answer = await conn.request({ body }, this.options.requestTimeoutMs ?? r.acquirer.config.retryMs * 2);
      if (answer.body.case === 'lockVote') this.onVote(r, peerId, voteFromWire(answer.body.value));
    } catch {
      // Timeout or closed connection: the acquirer proposes again to members that did not grant.
    }
  }

  /** Later votes (response=false, the proposal's request id) arrive as 'envelope' events of the connection. */
  private watch(r: Running, peerId: string, conn: FramedConnection): void {
    if (this.watched.has(conn)) return;
    this.watched.add(conn);
    conn.on('envelope', (env) => {
      if (env.body.case === 'lockVote' && this.running) this.onVote(this.running, peerId, voteFromWire(env.body.value));
    });
  }

  private deliverLocal(run: () => void): void {
    queueMicrotask(() => {
      try {
        run();
      } catch (err) {
        this.running?.fail(err as Error);
      }
    });
  }

  /** One timer for both cores, at the earlier wake-up. */
  private rearm(r: Running): void {
    if (this.running !== r) return;
    const next = Math.min(r.grantor.nextWakeMs() ?? Infinity, r.acquirer.nextWakeMs() ?? Infinity);
    if (next === this.timerAtMs) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = next;
    if (next === Infinity) return;
    // At least 1 ms, so a wake-up the core does not act on yet cannot spin.
    const delayMs = Math.max(1, Math.ceil(next - this.mono()));
    this.timer = setTimeout(() => this.tick(r), delayMs);
  }

  private tick(r: Running): void {
    this.timer = undefined;
    this.timerAtMs = Infinity;
    if (this.running !== r) return;
    const now = this.mono();
    const out = r.grantor.tick(now, this.wall());
    if (!this.persist(r, out)) return;
    this.sendLater(r, out);
    this.applyAcquirer(r, r.acquirer.tick(now));
  }
}
