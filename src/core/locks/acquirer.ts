import { LockError } from './errors.js';
import { keyProblem, maxBig, ttlProblem, LOCK_LIMITS_DEFAULT, TOKEN_MAX } from './types.js';
import type { LockLimits, LockProposal, LockReleaseMsg, LockVote } from './types.js';

/**
 * The acquirer side of the lock protocol, sans-IO: it runs on the node a
 * client asked, one attempt per acquire() call.
 *
 * An attempt has a fixed priority (this node's wall clock when the client
 * asked) and an attempt id unique to this node across restarts. It works in
 * rounds: a round proposes one token, max(every maxToken heard) + 1, to
 * every member of the quorum set, and counts grants for that token only.
 *   - A majority (floor(n/2)+1) of grants for the round's token: acquired,
 *     if the round is fresh (see below).
 *   - A refusal carrying maxToken >= token: a new round with a higher token.
 *   - Queued: wait; the proposal is sent again every retryMs to each member
 *     that has not granted (answers get lost; it also keeps our queue place).
 *   - Holding some grants while queued or refused elsewhere for
 *     splitTimeoutMs (a split vote), or holding grants in a round older than
 *     half the lease: a new round, same priority. At a grantor where a better
 *     contender waits, the higher token makes our lease yield to it (grantor
 *     G3); elsewhere it just moves our lease or queue entry to the new token.
 *   - waitMs passes: release everywhere, not acquired.
 *
 * Safety, the acquirer's half (grantor.ts has the other): the holder treats
 * the lock as valid until S + ttl × (1 − driftMargin) on its own monotonic
 * clock, S being when it first sent the winning round's token. Every grant
 * counted was made after S and lasts ttl on its grantor's clock. With clock
 * rates within ±ρ of real time, a grant lasts at least ttl/(1+ρ) real ms and
 * our validity at most ttl(1−d)/(1−ρ), which is shorter whenever
 * d > 2ρ/(1+ρ) (ρ = 1 %: d > 1.99 %; the default d = 5 %). So while we hold,
 * every grant of our majority is still a lease at its grantor, and any other
 * majority shares one of those grantors: nobody else can hold. A round's
 * grants stop counting the moment a new round starts, which is why a release
 * or yield (both carry a newer or the same token) never removes a grant that
 * is still counted. The lock is declared only while its validity has not
 * ended, so tokens also grow in the order locks are held.
 *
 * Fairness: every grantor grants only the best waiting contender by
 * (priority, holder, attempt), so contenders are served oldest first, up to
 * clock skew between nodes and the time a proposal needs to reach the
 * grantors. Split votes cannot livelock: the best contender never gives up a
 * grant by starting a new round (nobody better waits where it holds), and
 * every other contender holding grants starts new rounds until it has none
 * where the best one waits; once the best one is queued everywhere it is not
 * granted, those grants pass to it. (A newcomer can only be better than a
 * waiting contender if it asked within the clock skew of it, so the best
 * contender settles.) test/sim/locks.sim.test.ts builds such splits on
 * purpose, with leases of a minute, and sees them resolved in milliseconds.
 */
export interface AcquirerConfig {
  readonly selfId: string;
  /** Attempt ids are attemptBase + 1, + 2, ...: unique across restarts (the runtime persists an epoch). */
  readonly attemptBase: bigint;
  readonly limits: LockLimits;
  readonly attemptsMax: number;
  /** Members that have not granted are sent the proposal again this often. */
  readonly retryMs: number;
  /** Holding some grants while queued elsewhere this long starts a new round (doubling up to splitTimeoutMaxMs). */
  readonly splitTimeoutMs: number;
  readonly splitTimeoutMaxMs: number;
  /** Share of the ttl given up to clock drift: valid until sent + ttl × (1 − driftMargin). */
  readonly driftMargin: number;
  /** A round is not restarted sooner than this after it began (bounds messages for tiny ttls). */
  readonly roundMinMs: number;
  /** waitMs 0 ("try once") still waits this long for answers. */
  readonly tryMs: number;
  /** A release goes out this many times, retryMs apart (lost releases only cost time, never safety). */
  readonly releaseSends: number;
  readonly releasesMax: number;
  /** Keys whose highest known token is remembered (a first guess for the next attempt). */
  readonly knownKeysMax: number;
}

export const ACQUIRER_DEFAULTS = Object.freeze({
  limits: LOCK_LIMITS_DEFAULT,
  attemptsMax: 10_000,
  retryMs: 500,
  splitTimeoutMs: 100,
  splitTimeoutMaxMs: 2_000,
  driftMargin: 0.05,
  roundMinMs: 50,
  tryMs: 1_000,
  releaseSends: 2,
  releasesMax: 10_000,
  knownKeysMax: 10_000,
});

export interface AcquireRequest {
  readonly key: string;
  readonly ttlMs: number;
  /** 0: do not wait for a holder; fail as soon as a majority refused. */
  readonly waitMs: number;
  /** The quorum set (node ids); duplicates are ignored. */
  readonly quorum: readonly string[];
}

export type LockOutMessage =
  | { readonly kind: 'propose'; readonly proposal: LockProposal }
  | { readonly kind: 'release'; readonly release: LockReleaseMsg };

export interface LockSend {
  readonly to: string;
  readonly message: LockOutMessage;
}

export type AcquirerEvent =
  | { readonly kind: 'acquired'; readonly key: string; readonly attempt: bigint; readonly token: bigint; readonly validUntilMs: number }
  | { readonly kind: 'failed'; readonly key: string; readonly attempt: bigint; readonly reason: 'timeout' | 'busy' | 'exhausted' | 'cancelled' }
  /** The holder's clock says the lease is over (it was not released before). */
  | { readonly kind: 'expired'; readonly key: string; readonly attempt: bigint; readonly token: bigint };

export interface AcquirerOutput {
  readonly sends: LockSend[];
  readonly events: AcquirerEvent[];
}

type VoteState = 'granted' | 'queued' | 'refused';

interface Attempt {
  readonly key: string;
  readonly attempt: bigint;
  readonly priority: bigint;
  readonly ttlMs: number;
  readonly quorum: readonly string[];
  readonly members: ReadonlySet<string>;
  readonly majority: number;
  readonly deadlineMs: number;
  readonly tryOnly: boolean;
  phase: 'proposing' | 'held';
  token: bigint;
  knownMax: bigint;
  roundStartMs: number;
  votes: Map<string, VoteState>;
  nextSendMs: number;
  splitSinceMs: number | undefined;
  splitTimeoutMs: number;
  /** A majority came too late in its round: start a new one when roundMinMs allows. */
  staleMajority: boolean;
  validUntilMs: number;
}

interface PendingRelease {
  readonly to: readonly string[];
  readonly release: LockReleaseMsg;
  sendsLeft: number;
  nextAtMs: number;
}

/** A read-only view of one attempt (tests, status). */
export interface AttemptView {
  readonly key: string;
  readonly attempt: bigint;
  readonly phase: 'proposing' | 'held';
  readonly token: bigint;
  readonly priority: bigint;
  readonly granted: number;
  readonly validUntilMs: number;
}

export class LockAcquirer {
  private readonly attempts = new Map<bigint, Attempt>();
  private releases: PendingRelease[] = [];
  private readonly knownMax = new Map<string, bigint>();
  private counter = 0n;
  readonly stats = { rounds: 0, splitRounds: 0, freshRounds: 0, acquired: 0, failed: 0, expired: 0, released: 0, strayGrants: 0 };

  constructor(readonly config: AcquirerConfig) {}

  /** Starts an attempt; its outcome is an 'acquired' or 'failed' event. Throws LockError on bad input. */
  acquire(req: AcquireRequest, nowMs: number, wallMs: number): { attempt: bigint; output: AcquirerOutput } {
    const limits = this.config.limits;
    const kp = keyProblem(req.key, limits);
    if (kp) throw new LockError('bad_key', kp);
    const tp = ttlProblem(req.ttlMs, limits);
    if (tp) throw new LockError('bad_ttl', tp);
    if (!Number.isSafeInteger(req.waitMs) || req.waitMs < 0 || req.waitMs > limits.waitMsMax) {
      throw new LockError('bad_wait', `wait must be a whole number of ms in [0, ${limits.waitMsMax}], got ${req.waitMs}`);
    }
    const quorum = [...new Set(req.quorum)];
    if (quorum.length === 0) throw new LockError('no_quorum', 'the quorum set is empty');
    if (this.attempts.size >= this.config.attemptsMax) throw new LockError('busy', `${this.config.attemptsMax} lock attempts are in flight on this node`);
    this.counter += 1n;
    const attempt = this.config.attemptBase + this.counter;
    const a: Attempt = {
      key: req.key,
      attempt,
      priority: BigInt(Math.max(0, Math.floor(wallMs))),
      ttlMs: req.ttlMs,
      quorum,
      members: new Set(quorum),
      majority: Math.floor(quorum.length / 2) + 1,
      deadlineMs: nowMs + (req.waitMs > 0 ? req.waitMs : this.config.tryMs),
      tryOnly: req.waitMs === 0,
      phase: 'proposing',
      token: 0n,
      knownMax: this.knownMax.get(req.key) ?? 0n,
      roundStartMs: nowMs,
      votes: new Map(),
      nextSendMs: nowMs,
      splitSinceMs: undefined,
      splitTimeoutMs: this.config.splitTimeoutMs,
      staleMajority: false,
      validUntilMs: 0,
    };
    this.attempts.set(attempt, a);
    const out = emptyOutput();
    this.newRound(a, nowMs, out);
    return { attempt, output: out };
  }

  /** A grantor's vote (direct answer or later). */
  vote(from: string, v: LockVote, nowMs: number): AcquirerOutput {
    const out = emptyOutput();
    const a = this.attempts.get(v.attempt);
    if (!a || a.key !== v.key) {
      // A grant for an attempt that is over (or from before a restart): hand it back at once.
      if (v.granted) {
        this.stats.strayGrants += 1;
        this.queueRelease([from], { key: v.key, holder: this.config.selfId, attempt: v.attempt, token: v.token }, nowMs, 1, out);
      }
      return out;
    }
    if (!a.members.has(from)) return out;
    a.knownMax = maxBig(a.knownMax, v.maxToken);
    this.remember(a.key, a.knownMax);
    if (a.phase !== 'proposing' || v.token !== a.token) return out;
    if (v.granted) a.votes.set(from, 'granted');
    else if (v.maxToken >= a.token) {
      this.newRound(a, nowMs, out);
      return out;
    } else a.votes.set(from, v.queued ? 'queued' : 'refused');
    this.evaluate(a, nowMs, out);
    return out;
  }

  /**
   * The client gives the lock back. `held`: this node holds `key` with
   * `token` (and now lets go of it everywhere); `released`: held, and its
   * lease had not ended.
   */
  release(key: string, token: bigint, nowMs: number): { released: boolean; held: boolean; output: AcquirerOutput } {
    const out = emptyOutput();
    for (const a of this.attempts.values()) {
      if (a.key !== key || a.phase !== 'held' || a.token !== token) continue;
      const valid = nowMs < a.validUntilMs;
      this.finish(a, nowMs, out);
      this.stats.released += 1;
      return { released: valid, held: true, output: out };
    }
    return { released: false, held: false, output: out };
  }

  /** Gives up an attempt still waiting (its client went away); no event for it. */
  cancel(attempt: bigint, nowMs: number): AcquirerOutput {
    const out = emptyOutput();
    const a = this.attempts.get(attempt);
    if (a && a.phase === 'proposing') this.finish(a, nowMs, out);
    return out;
  }

  tick(nowMs: number): AcquirerOutput {
    const out = emptyOutput();
    for (const a of [...this.attempts.values()]) {
      if (a.phase === 'held') {
        if (nowMs >= a.validUntilMs) {
          this.stats.expired += 1;
          out.events.push({ kind: 'expired', key: a.key, attempt: a.attempt, token: a.token });
          this.finish(a, nowMs, out);
        }
        continue;
      }
      if (nowMs >= a.deadlineMs) {
        this.fail(a, 'timeout', nowMs, out);
        continue;
      }
      const roundAgeMs = nowMs - a.roundStartMs;
      const mayRestart = roundAgeMs >= this.config.roundMinMs;
      if (mayRestart && a.staleMajority) {
        this.stats.freshRounds += 1;
        this.newRound(a, nowMs, out);
      } else if (mayRestart && this.granted(a) > 0 && roundAgeMs >= this.freshMs(a)) {
        // Grants of an old round may lapse at their grantors while we wait: renew them.
        this.stats.freshRounds += 1;
        this.newRound(a, nowMs, out);
      } else if (mayRestart && a.splitSinceMs !== undefined && nowMs - a.splitSinceMs >= a.splitTimeoutMs) {
        this.stats.splitRounds += 1;
        a.splitTimeoutMs = Math.min(a.splitTimeoutMs * 2, this.config.splitTimeoutMaxMs);
        this.newRound(a, nowMs, out);
      } else if (nowMs >= a.nextSendMs) {
        for (const g of a.quorum) if (a.votes.get(g) !== 'granted') out.sends.push({ to: g, message: { kind: 'propose', proposal: this.proposal(a) } });
        a.nextSendMs = nowMs + this.config.retryMs;
      }
    }
    if (this.releases.length > 0) {
      for (const r of this.releases) {
        if (r.nextAtMs > nowMs) continue;
        for (const to of r.to) out.sends.push({ to, message: { kind: 'release', release: r.release } });
        r.sendsLeft -= 1;
        r.nextAtMs = nowMs + this.config.retryMs;
      }
      this.releases = this.releases.filter((r) => r.sendsLeft > 0);
    }
    return out;
  }

  nextWakeMs(): number | undefined {
    let at = Infinity;
    for (const a of this.attempts.values()) {
      if (a.phase === 'held') {
        at = Math.min(at, a.validUntilMs);
        continue;
      }
      at = Math.min(at, a.deadlineMs, a.nextSendMs);
      const restartAt = a.roundStartMs + this.config.roundMinMs;
      if (a.staleMajority) at = Math.min(at, restartAt);
      if (this.granted(a) > 0) at = Math.min(at, Math.max(restartAt, a.roundStartMs + this.freshMs(a)));
      if (a.splitSinceMs !== undefined) at = Math.min(at, Math.max(restartAt, a.splitSinceMs + a.splitTimeoutMs));
    }
    for (const r of this.releases) at = Math.min(at, r.nextAtMs);
    return at === Infinity ? undefined : at;
  }

  get attemptCount(): number {
    return this.attempts.size;
  }

  view(attempt: bigint): AttemptView | undefined {
    const a = this.attempts.get(attempt);
    return a && { key: a.key, attempt: a.attempt, phase: a.phase, token: a.token, priority: a.priority, granted: this.granted(a), validUntilMs: a.validUntilMs };
  }

  /** Attempts of this node holding `key` now (0 or 1 unless leases overlap, which they must not). */
  holders(key: string): AttemptView[] {
    return [...this.attempts.values()].filter((a) => a.key === key && a.phase === 'held').map((a) => this.view(a.attempt)!);
  }

  private newRound(a: Attempt, nowMs: number, out: AcquirerOutput): void {
    const next = maxBig(a.knownMax, a.token) + 1n;
    if (next > TOKEN_MAX) {
      this.fail(a, 'exhausted', nowMs, out);
      return;
    }
    this.stats.rounds += 1;
    a.token = next;
    a.knownMax = maxBig(a.knownMax, next);
    a.roundStartMs = nowMs;
    a.votes = new Map();
    a.splitSinceMs = undefined;
    a.staleMajority = false;
    a.nextSendMs = nowMs + this.config.retryMs;
    const proposal = this.proposal(a);
    for (const g of a.quorum) out.sends.push({ to: g, message: { kind: 'propose', proposal } });
  }

  private evaluate(a: Attempt, nowMs: number, out: AcquirerOutput): void {
    const granted = this.granted(a);
    if (granted >= a.majority) {
      const validUntilMs = a.roundStartMs + Math.floor(a.ttlMs * (1 - this.config.driftMargin));
      if (nowMs < validUntilMs && nowMs - a.roundStartMs <= this.freshMs(a)) {
        a.phase = 'held';
        a.validUntilMs = validUntilMs;
        this.stats.acquired += 1;
        out.events.push({ kind: 'acquired', key: a.key, attempt: a.attempt, token: a.token, validUntilMs });
        // Leave the queues of members that did not grant: they must not keep the key for us.
        const others = a.quorum.filter((g) => a.votes.get(g) !== 'granted');
        if (others.length > 0) this.queueRelease(others, this.releaseMsg(a), nowMs, 1, out);
      } else {
        // The grants came too late in the round to leave a useful lease: renew them.
        a.staleMajority = true;
      }
      return;
    }
    let waiting = 0;
    for (const s of a.votes.values()) if (s !== 'granted') waiting += 1;
    if (a.tryOnly && waiting > a.quorum.length - a.majority) {
      this.fail(a, 'busy', nowMs, out);
      return;
    }
    if (granted > 0 && waiting > 0) a.splitSinceMs ??= nowMs;
    else a.splitSinceMs = undefined;
  }

  private fail(a: Attempt, reason: 'timeout' | 'busy' | 'exhausted', nowMs: number, out: AcquirerOutput): void {
    this.stats.failed += 1;
    out.events.push({ kind: 'failed', key: a.key, attempt: a.attempt, reason });
    this.finish(a, nowMs, out);
  }

  /** Forgets the attempt and releases its grants and queue places everywhere (token guard: <= our last token). */
  private finish(a: Attempt, nowMs: number, out: AcquirerOutput): void {
    this.attempts.delete(a.attempt);
    if (a.token > 0n) this.queueRelease(a.quorum, this.releaseMsg(a), nowMs, this.config.releaseSends, out);
  }

  private queueRelease(to: readonly string[], release: LockReleaseMsg, nowMs: number, sends: number, out: AcquirerOutput): void {
    for (const g of to) out.sends.push({ to: g, message: { kind: 'release', release } });
    if (sends > 1) {
      if (this.releases.length >= this.config.releasesMax) this.releases.shift();
      this.releases.push({ to, release, sendsLeft: sends - 1, nextAtMs: nowMs + this.config.retryMs });
    }
  }

  private releaseMsg(a: Attempt): LockReleaseMsg {
    return { key: a.key, holder: this.config.selfId, attempt: a.attempt, token: a.token };
  }

  private proposal(a: Attempt): LockProposal {
    return { key: a.key, holder: this.config.selfId, attempt: a.attempt, token: a.token, ttlMs: a.ttlMs, priority: a.priority };
  }

  private granted(a: Attempt): number {
    let n = 0;
    for (const s of a.votes.values()) if (s === 'granted') n += 1;
    return n;
  }

  /** A round is fresh for half the holder's share of the ttl: a lock declared later would be too short. */
  private freshMs(a: Attempt): number {
    return (a.ttlMs * (1 - this.config.driftMargin)) / 2;
  }

  private remember(key: string, token: bigint): void {
    if ((this.knownMax.get(key) ?? 0n) >= token) return;
    this.knownMax.delete(key);
    if (this.knownMax.size >= this.config.knownKeysMax) this.knownMax.delete(this.knownMax.keys().next().value!);
    this.knownMax.set(key, token);
  }
}

function emptyOutput(): AcquirerOutput {
  return { sends: [], events: [] };
}
