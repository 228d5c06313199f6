import { contenderId, compareContenders, keyProblem, maxBig, ttlProblem, LOCK_LIMITS_DEFAULT, TOKEN_MAX } from './types.js';
import type { Contender, LockLimits, LockProposal, LockRecord, LockReleaseMsg, LockVote } from './types.js';
import { WakeHeap } from './wake-heap.js';

/**
 * The grantor side of the lock protocol: every node of the quorum set runs
 * one, sans-IO. Per key it keeps
 *   - maxToken: the highest token it ever granted (persisted before it
 *     answers, never forgotten);
 *   - at most one lease {holder, attempt, token, priority, expiry}; the
 *     expiry is this node's monotonic receipt time + ttl, and is persisted
 *     as wall-clock ms so a restarted grantor keeps honouring it;
 *   - a bounded queue of waiting proposals in the order compareContenders
 *     (priority, holder, attempt) — the same order at every grantor.
 *
 * Rules (each a row of the state table; anything else leaves state as is):
 *   G1 grant p  iff  no valid lease of another contender, p.token > maxToken,
 *      and no queued contender is better than p. Then maxToken = p.token.
 *   G2 p from the lease's own contender with the same token: granted again
 *      (a duplicate); with a lower token: a stale message, refused.
 *   G3 p from the lease's own contender with a higher token (it started a
 *      new round): if a better contender waits, the lease ends and p is
 *      queued ("yield", which is what ends split votes: see below); else the
 *      lease moves to p's token (G1's token rule applies).
 *   G4 otherwise p is queued (or its entry refreshed) and answered
 *      queued=true with maxToken; a full queue drops its worst entry if p is
 *      better, else p is refused unqueued.
 *   G5 when the lease ends (release, expiry, yield) the best queued entry
 *      is granted if its token > maxToken; if not, it stays at the head (the
 *      key is reserved for it) and is told maxToken in a later vote, so it
 *      proposes a higher token.
 *   G6 a release (holder, attempt, token) ends that contender's lease if the
 *      lease's token <= token, and its queue entry likewise. The token guard
 *      makes a delayed release harmless to a later round of the same attempt.
 *      A release with no holder ends the lease whose token is exactly token.
 *   G7 a queued entry not proposed again for queueHoldMs is dropped (its
 *      acquirer re-sends every retryMs while it waits, so only the dead go).
 *
 * Safety (the acquirer's half is in acquirer.ts): a lease is a majority of
 * grants for one token; two majorities of the same quorum set share a
 * grantor g. g holds at most one lease per key at a time (G1), a lease ends
 * only by expiry on g's clock (ttl after g received the proposal, which is
 * after the acquirer sent it), by its own contender's release or yield
 * (which the acquirer sends only for a round it no longer counts), never by
 * a restart (the lease is persisted before the vote leaves and restored
 * until its wall expiry + restoreSkewMs). Tokens: g grants only tokens
 * above every token it granted before, and maxToken is persisted first, so
 * of two locks whose majorities share g, the later has the larger token.
 */
export interface GrantorConfig {
  readonly limits: LockLimits;
  /** Keys with state in memory; idle ones are evicted (their maxToken stays on disk). */
  readonly keysMax: number;
  /** Contenders waiting per key. */
  readonly queueMax: number;
  /** A queued proposal not sent again within this time is dropped (G7). */
  readonly queueHoldMs: number;
  /** A lease restored from disk is kept this long past its wall-clock expiry (wall clock steps, restart time). */
  readonly restoreSkewMs: number;
}

export const GRANTOR_DEFAULTS: GrantorConfig = Object.freeze({
  limits: LOCK_LIMITS_DEFAULT,
  keysMax: 100_000,
  queueMax: 256,
  queueHoldMs: 3_000,
  restoreSkewMs: 1_000,
});

/** A vote sent later (not as the direct answer): to `holder`, through `replyTo` (the runtime's handle of the proposal). */
export interface LaterVote<R> {
  readonly holder: string;
  readonly replyTo: R;
  readonly vote: LockVote;
}

export interface GrantorOutput<R> {
  /** Write these (in one transaction) before sending anything of this output. */
  readonly persist: LockRecord[];
  readonly later: LaterVote<R>[];
}

export interface ReleaseOutput<R> extends GrantorOutput<R> {
  readonly released: boolean;
}

export interface ProposeOutput<R> extends GrantorOutput<R> {
  /** The direct answer to the proposal. */
  readonly reply: LockVote;
}

/** A read-only view of one key (tests, status). */
export interface GrantorKeyView {
  readonly maxToken: bigint;
  readonly lease: { readonly holder: string; readonly attempt: bigint; readonly token: bigint; readonly expiresAtMs: number } | undefined;
  readonly queue: readonly { readonly holder: string; readonly attempt: bigint; readonly token: bigint; readonly priority: bigint }[];
}

interface Lease extends Contender {
  readonly token: bigint;
  readonly ttlMs: number;
  readonly expiresAtMs: number;
  readonly expiresWallMs: number;
}

interface Waiting<R> extends Contender {
  token: bigint;
  ttlMs: number;
  heldUntilMs: number;
  replyTo: R;
  /** The token we last told (in a later vote) is too low; -1: none. */
  toldToken: bigint;
}

interface KeyState<R> {
  readonly key: string;
  maxToken: bigint;
  lease: Lease | undefined;
  queue: Waiting<R>[];
  /** The wake-up time pushed for this key (Infinity: none pending). */
  dueMs: number;
}

export class LockGrantor<R> {
  private readonly keys = new Map<string, KeyState<R>>();
  private readonly wakes = new WakeHeap();
  readonly stats = { grants: 0, queued: 0, refused: 0, yields: 0, expired: 0, released: 0, evicted: 0, restoredLeases: 0 };

  /** `load` reads a key's record from the store (undefined: never granted). */
  constructor(
    readonly config: GrantorConfig,
    private readonly load: (key: string) => LockRecord | undefined,
  ) {}

  propose(p: LockProposal, replyTo: R, nowMs: number, wallMs: number): ProposeOutput<R> {
    const out: Out<R> = { persist: new Map(), later: [] };
    if (this.proposalProblem(p) !== undefined) {
      this.stats.refused += 1;
      return done(out, vote(p, false, false, 0n));
    }
    const st = this.stateOf(p.key, nowMs, wallMs);
    if (!st) {
      this.stats.refused += 1;
      return done(out, vote(p, false, false, 0n));
    }
    this.settle(st, nowMs, out);
    const id = contenderId(p.holder, p.attempt);
    const lease = st.lease;
    let reply: LockVote;
    if (lease && contenderId(lease.holder, lease.attempt) === id) {
      if (p.token <= lease.token) {
        // G2: a duplicate (answered again) or a proposal older than the lease (stale).
        reply = vote(p, p.token === lease.token, false, st.maxToken);
      } else if (st.queue.length > 0 && compareContenders(st.queue[0]!, lease) < 0) {
        // G3, yield: its holder left the round that lease belonged to, and a better contender waits.
        this.stats.yields += 1;
        st.lease = undefined;
        this.persist(st, out);
        reply = this.enqueueAndPromote(st, p, replyTo, nowMs, wallMs, out);
      } else if (p.token > st.maxToken) {
        this.grant(st, p, nowMs, wallMs, out);
        reply = vote(p, true, false, st.maxToken);
      } else {
        reply = vote(p, false, false, st.maxToken);
      }
    } else {
      // G4 (another contender's valid lease) or G1/G5 (a free key).
      reply = this.enqueueAndPromote(st, p, replyTo, nowMs, wallMs, out);
    }
    if (!reply.granted) this.stats[reply.queued ? 'queued' : 'refused'] += 1;
    this.schedule(st);
    return done(out, reply);
  }

  /** G6; `released`: a lease matching the release ended (the answer LockReleased carries it). */
  release(r: LockReleaseMsg, nowMs: number, wallMs: number): ReleaseOutput<R> {
    const out: Out<R> = { persist: new Map(), later: [] };
    if (keyProblem(r.key, this.config.limits) !== undefined) return { ...done(out), released: false };
    const st = this.stateOf(r.key, nowMs, wallMs);
    if (!st) return { ...done(out), released: false };
    this.settle(st, nowMs, out);
    const lease = st.lease;
    let released = false;
    if (r.holder === '') {
      // By token alone (a client releasing through another node): only the lease with exactly this
      // token. A grantor grants a token to one contender at most, so this is the lock of that token
      // or a grant of it that can never become a majority.
      if (lease && lease.token === r.token) released = true;
    } else {
      const id = contenderId(r.holder, r.attempt);
      if (lease && contenderId(lease.holder, lease.attempt) === id && lease.token <= r.token) released = true;
      const i = st.queue.findIndex((w) => contenderId(w.holder, w.attempt) === id);
      if (i >= 0 && st.queue[i]!.token <= r.token) st.queue.splice(i, 1);
    }
    if (released) {
      st.lease = undefined;
      this.stats.released += 1;
      this.persist(st, out);
    }
    this.promote(st, nowMs, wallMs, out, undefined);
    this.schedule(st);
    return { ...done(out), released };
  }

  /** Expires leases and queue entries that are due; call at nextWakeMs(). */
  tick(nowMs: number, wallMs: number): GrantorOutput<R> {
    const out: Out<R> = { persist: new Map(), later: [] };
    for (let e = this.wakes.popDue(nowMs); e; e = this.wakes.popDue(nowMs)) {
      const st = this.keys.get(e.key);
      if (!st || st.dueMs !== e.atMs) continue;
      st.dueMs = Infinity;
      this.settle(st, nowMs, out, wallMs);
      this.schedule(st);
    }
    if (this.wakes.size > 4 * this.keys.size + 1_024) {
      this.wakes.rebuild([...this.keys.values()].filter((s) => s.dueMs !== Infinity).map((s) => ({ atMs: s.dueMs, key: s.key })));
    }
    return done(out);
  }

  nextWakeMs(): number | undefined {
    return this.wakes.peekMs();
  }

  /** Keys with state in memory. */
  get keyCount(): number {
    return this.keys.size;
  }

  view(key: string): GrantorKeyView | undefined {
    const st = this.keys.get(key);
    if (!st) return undefined;
    const l = st.lease;
    return {
      maxToken: st.maxToken,
      lease: l && { holder: l.holder, attempt: l.attempt, token: l.token, expiresAtMs: l.expiresAtMs },
      queue: st.queue.map((w) => ({ holder: w.holder, attempt: w.attempt, token: w.token, priority: w.priority })),
    };
  }

  private proposalProblem(p: LockProposal): string | undefined {
    return keyProblem(p.key, this.config.limits)
      ?? ttlProblem(p.ttlMs, this.config.limits)
      ?? (p.token < 1n || p.token > TOKEN_MAX ? 'bad token' : undefined)
      ?? (p.holder.length === 0 || p.holder.length > 256 ? 'bad holder' : undefined);
  }

  /** The key's state, loaded from the store when not in memory; undefined when memory is full of busy keys. */
  private stateOf(key: string, nowMs: number, wallMs: number): KeyState<R> | undefined {
    const known = this.keys.get(key);
    if (known) {
      // Least recently used first: re-insert on use.
      this.keys.delete(key);
      this.keys.set(key, known);
      return known;
    }
    if (this.keys.size >= this.config.keysMax && !this.evictOne(nowMs)) return undefined;
    const record = this.load(key);
    const st: KeyState<R> = { key, maxToken: record?.maxToken ?? 0n, lease: undefined, queue: [], dueMs: Infinity };
    const l = record?.lease;
    if (l) {
      // A lease this node gave before it restarted (or before the key was evicted): honour it until
      // its wall-clock expiry plus a margin, converted to this process's monotonic clock.
      const remainingMs = l.expiresWallMs + this.config.restoreSkewMs - wallMs;
      if (remainingMs > 0) {
        st.lease = { holder: l.holder, attempt: l.attempt, token: l.token, priority: l.priority, ttlMs: l.ttlMs, expiresAtMs: nowMs + remainingMs, expiresWallMs: l.expiresWallMs };
        st.maxToken = maxBig(st.maxToken, l.token);
        this.stats.restoredLeases += 1;
      }
    }
    this.keys.set(key, st);
    this.schedule(st);
    return st;
  }

  private evictOne(nowMs: number): boolean {
    for (const st of this.keys.values()) {
      if ((!st.lease || st.lease.expiresAtMs <= nowMs) && st.queue.every((w) => w.heldUntilMs <= nowMs)) {
        this.keys.delete(st.key);
        this.stats.evicted += 1;
        return true;
      }
    }
    return false;
  }

  /** Ends what is due at nowMs (G7, lease expiry) and grants what that frees (G5). */
  private settle(st: KeyState<R>, nowMs: number, out: Out<R>, wallMs?: number): void {
    if (st.lease && nowMs >= st.lease.expiresAtMs) {
      st.lease = undefined;
      this.stats.expired += 1;
    }
    if (st.queue.some((w) => w.heldUntilMs <= nowMs)) st.queue = st.queue.filter((w) => w.heldUntilMs > nowMs);
    if (wallMs !== undefined) this.promote(st, nowMs, wallMs, out, undefined);
  }

  /** Queues (or refreshes) p (G4), then lets the best waiting contender have a free key (G5); returns p's answer. */
  private enqueueAndPromote(st: KeyState<R>, p: LockProposal, replyTo: R, nowMs: number, wallMs: number, out: Out<R>): LockVote {
    const id = contenderId(p.holder, p.attempt);
    const i = st.queue.findIndex((w) => contenderId(w.holder, w.attempt) === id);
    const existing = i >= 0 ? st.queue[i] : undefined;
    if (existing && existing.token > p.token) {
      // Reordered: an older round of a contender already queued with a newer one.
      return vote(p, false, true, st.maxToken);
    }
    if (existing) {
      if (existing.token !== p.token) existing.toldToken = -1n;
      existing.token = p.token;
      existing.ttlMs = p.ttlMs;
      existing.heldUntilMs = nowMs + this.config.queueHoldMs;
      existing.replyTo = replyTo;
    } else {
      const entry: Waiting<R> = {
        holder: p.holder, attempt: p.attempt, priority: p.priority, token: p.token, ttlMs: p.ttlMs,
        heldUntilMs: nowMs + this.config.queueHoldMs, replyTo, toldToken: -1n,
      };
      if (st.queue.length >= this.config.queueMax) {
        const worst = st.queue[st.queue.length - 1]!;
        if (compareContenders(entry, worst) >= 0) return vote(p, false, false, st.maxToken);
        // The worst waiting contender makes room for a better one, and is told so.
        st.queue.pop();
        out.later.push({ holder: worst.holder, replyTo: worst.replyTo, vote: { key: st.key, attempt: worst.attempt, token: worst.token, granted: false, queued: false, maxToken: st.maxToken } });
      }
      let at = st.queue.findIndex((w) => compareContenders(entry, w) < 0);
      if (at < 0) at = st.queue.length;
      st.queue.splice(at, 0, entry);
    }
    this.promote(st, nowMs, wallMs, out, id);
    const lease = st.lease;
    if (lease && contenderId(lease.holder, lease.attempt) === id && lease.token === p.token) return vote(p, true, false, st.maxToken);
    const head = st.queue[0];
    if (!lease && head && contenderId(head.holder, head.attempt) === id) head.toldToken = head.token;
    return vote(p, false, true, st.maxToken);
  }

  /** G5: a free key goes to the best waiting contender, or waits for it to bring a higher token. */
  private promote(st: KeyState<R>, nowMs: number, wallMs: number, out: Out<R>, answeringId: string | undefined): void {
    if (st.lease) return;
    const head = st.queue[0];
    if (!head) return;
    const headId = contenderId(head.holder, head.attempt);
    if (head.token > st.maxToken) {
      st.queue.shift();
      this.grant(st, head, nowMs, wallMs, out);
      if (headId !== answeringId) {
        out.later.push({ holder: head.holder, replyTo: head.replyTo, vote: { key: st.key, attempt: head.attempt, token: head.token, granted: true, queued: false, maxToken: st.maxToken } });
      }
    } else if (head.toldToken !== head.token && headId !== answeringId) {
      head.toldToken = head.token;
      out.later.push({ holder: head.holder, replyTo: head.replyTo, vote: { key: st.key, attempt: head.attempt, token: head.token, granted: false, queued: true, maxToken: st.maxToken } });
    }
  }

  private grant(st: KeyState<R>, p: Contender & { readonly token: bigint; readonly ttlMs: number }, nowMs: number, wallMs: number, out: Out<R>): void {
    st.maxToken = p.token;
    st.lease = {
      holder: p.holder, attempt: p.attempt, priority: p.priority, token: p.token, ttlMs: p.ttlMs,
      expiresAtMs: nowMs + p.ttlMs, expiresWallMs: wallMs + p.ttlMs,
    };
    this.stats.grants += 1;
    this.persist(st, out);
  }

  private persist(st: KeyState<R>, out: Out<R>): void {
    const l = st.lease;
    out.persist.set(st.key, {
      key: st.key,
      maxToken: st.maxToken,
      lease: l && { holder: l.holder, attempt: l.attempt, token: l.token, priority: l.priority, ttlMs: l.ttlMs, expiresWallMs: l.expiresWallMs },
    });
  }

  /** Pushes the key's next wake-up (lease expiry or queue entry expiry) if it is earlier than the one pending. */
  private schedule(st: KeyState<R>): void {
    let due = st.lease ? st.lease.expiresAtMs : Infinity;
    for (const w of st.queue) due = Math.min(due, w.heldUntilMs);
    if (due < st.dueMs) {
      st.dueMs = due;
      this.wakes.push({ atMs: due, key: st.key });
    }
  }
}

interface Out<R> {
  readonly persist: Map<string, LockRecord>;
  readonly later: LaterVote<R>[];
}

function done<R>(out: Out<R>): GrantorOutput<R>;
function done<R>(out: Out<R>, reply: LockVote): ProposeOutput<R>;
function done<R>(out: Out<R>, reply?: LockVote): GrantorOutput<R> | ProposeOutput<R> {
  const base = { persist: [...out.persist.values()], later: out.later };
  return reply ? { ...base, reply } : base;
}

function vote(p: LockProposal, granted: boolean, queued: boolean, maxToken: bigint): LockVote {
  return { key: p.key, attempt: p.attempt, token: p.token, granted, queued, maxToken };
}
