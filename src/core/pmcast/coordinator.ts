/**
 * The coordinator of seed 004's persistent asynchronous multicast, sans-IO.
 *
 * Every accepted message gets the next sequence number and the coordinator's
 * time (made non-decreasing). Each member has `ackedSeq`: everything up to it
 * is in its log or was never its to get. Delivery is always "every seq above
 * ackedSeq, in order", which gives the four guarantees of DESIGN.md:
 *   1. online or briefly offline: nothing is skipped (ackedSeq only moves on acks);
 *   2. offline longer than td: reconnect skips what was accepted while it was
 *      away and before the last td ms (the "cut"), so exactly the last td ms
 *      come; what it was owed when it went offline (sent while it was online,
 *      or during an earlier short absence, but not yet acknowledged) stays
 *      owed: the skipped seqs are a range in `notOwed` until acks pass it;
 *   3. no duplicates: ackedSeq only grows, and the participant drops seqs it logged;
 *   4. register starts at the current last seq; deregister forgets the member.
 * A message may be purged once it is older than td and no member that could
 * still be owed it (online, offline for at most td, or offline longer with
 * messages from before its disconnect unacknowledged) is behind it.
 */
export type PmStatus = 'online' | 'offline';

/** Seqs fromSeq..toSeq, both included. */
export interface PmSeqRange {
  readonly fromSeq: number;
  readonly toSeq: number;
}

export interface PmMember {
  readonly id: string;
  readonly status: PmStatus;
  readonly host: string;
  readonly port: number;
  /** Seqs <= joinedSeq were sent before it (re)registered: never its to get. */
  readonly joinedSeq: number;
  readonly ackedSeq: number;
  /** Coordinator time it went offline (0 while online). */
  readonly offlineSinceMs: number;
  /**
   * The last seq when it last went offline: what it was owed up to there stays
   * owed however long it is away. Absent (a member saved before this field
   * existed): ackedSeq. Persist it with the member.
   */
  readonly offlineAfterSeq?: number;
  /**
   * Seq ranges above ackedSeq that are not its to get (accepted while it was
   * away longer than td, before its td window), ascending; acks move past
   * them. Absent or empty: none. Persist it with the member.
   */
  readonly notOwed?: readonly PmSeqRange[];
}

export type PmCommand =
  | { readonly kind: 'register'; readonly id: string; readonly host: string; readonly port: number }
  | { readonly kind: 'deregister'; readonly id: string }
  | { readonly kind: 'disconnect'; readonly id: string }
  | { readonly kind: 'reconnect'; readonly id: string; readonly host: string; readonly port: number }
  | { readonly kind: 'msend'; readonly id: string; readonly text: string };

export type PmErrorCode = 'not_registered' | 'already_registered' | 'not_online' | 'too_large' | 'store_full' | 'too_many_members' | 'bad_request';

export type PmResult = { readonly ok: true; readonly seq: number; readonly acceptedMs: number } | { readonly ok: false; readonly code: PmErrorCode; readonly message: string };

export type PmEffect =
  /** Persist (insert or replace) this member before answering. */
  | { readonly kind: 'save-member'; readonly member: PmMember }
  | { readonly kind: 'delete-member'; readonly id: string }
  /** Persist this message before answering. */
  | { readonly kind: 'save-message'; readonly seq: number; readonly sender: string; readonly text: string; readonly acceptedMs: number }
  /** (Re)open the delivery connection to this member and send what it is owed. */
  | { readonly kind: 'connect'; readonly id: string; readonly host: string; readonly port: number }
  | { readonly kind: 'disconnect'; readonly id: string }
  /** New messages: push to every online member's delivery connection. */
  | { readonly kind: 'fanout'; readonly seq: number };

export interface CoordinatorConfig {
  readonly tdMs: number;
  readonly messageBytesMax: number;
  readonly membersMax: number;
  /** Messages kept at most; beyond it msend is refused until members catch up. */
  readonly retainedMax: number;
}

export const COORDINATOR_DEFAULTS = Object.freeze({
  messageBytesMax: 64 * 1024,
  membersMax: 4_096,
  retainedMax: 10_000_000,
});

export interface CoordinatorState {
  readonly members: readonly PmMember[];
  readonly lastSeq: number;
  /** (seq, acceptedMs) of every retained message, ascending. */
  readonly messages: readonly { readonly seq: number; readonly acceptedMs: number }[];
}

const encoder = new TextEncoder();

export class CoordinatorCore {
  private readonly members = new Map<string, PmMember>();
  private lastSeq: number;
  private lastAcceptedMs = 0;
  /** Retained messages' times, ascending by seq: seqAt[i] / timeAt[i]. */
  private seqAt: number[] = [];
  private timeAt: number[] = [];
  private head = 0;

  constructor(
    readonly config: CoordinatorConfig,
    restored: CoordinatorState = { members: [], lastSeq: 0, messages: [] },
  ) {
    for (const m of restored.members) this.members.set(m.id, m);
    this.lastSeq = restored.lastSeq;
    for (const m of restored.messages) {
      this.seqAt.push(m.seq);
      this.timeAt.push(m.acceptedMs);
      this.lastAcceptedMs = Math.max(this.lastAcceptedMs, m.acceptedMs);
    }
  }

  apply(cmd: PmCommand, nowMs: number): { result: PmResult; effects: PmEffect[] } {
    const at = Math.max(nowMs, this.lastAcceptedMs);
    const ok = (seq = 0): PmResult => ({ ok: true, seq, acceptedMs: at });
    const fail = (code: PmErrorCode, message: string) => ({ result: { ok: false, code, message } as PmResult, effects: [] as PmEffect[] });
    const member = this.members.get(cmd.id);
    switch (cmd.kind) {
      case 'register': {
        if (member) return fail('already_registered', `participant ${cmd.id} is already registered`);
        if (this.members.size >= this.config.membersMax) return fail('too_many_members', `the group has ${this.config.membersMax} members already`);
        const m: PmMember = { id: cmd.id, status: 'online', host: cmd.host, port: cmd.port, joinedSeq: this.lastSeq, ackedSeq: this.lastSeq, offlineSinceMs: 0 };
        this.members.set(m.id, m);
        return { result: ok(), effects: [{ kind: 'save-member', member: m }, { kind: 'connect', id: m.id, host: m.host, port: m.port }] };
      }
      case 'deregister': {
        if (!member) return fail('not_registered', `participant ${cmd.id} is not registered`);
        this.members.delete(cmd.id);
        return { result: ok(), effects: [{ kind: 'delete-member', id: cmd.id }, { kind: 'disconnect', id: cmd.id }] };
      }
      case 'disconnect': {
        if (!member) return fail('not_registered', `participant ${cmd.id} is not registered`);
        if (member.status !== 'online') return fail('not_online', `participant ${cmd.id} is already offline`);
        const m: PmMember = { ...member, status: 'offline', offlineSinceMs: at, offlineAfterSeq: this.lastSeq };
        this.members.set(m.id, m);
        return { result: ok(), effects: [{ kind: 'save-member', member: m }, { kind: 'disconnect', id: m.id }] };
      }
      case 'reconnect': {
        if (!member) return fail('not_registered', `participant ${cmd.id} is not registered`);
        // Reconnecting while we think it online is a participant that restarted: it is owed
        // everything above its acked seq, as if never gone.
        let m: PmMember = { ...member, status: 'online', host: cmd.host, port: cmd.port, offlineSinceMs: 0 };
        if (member.status === 'offline' && at - member.offlineSinceMs > this.config.tdMs) {
          // Away longer than td: of what was accepted while it was away, only the last td ms
          // (inclusive) is owed; what it was owed when it left still is.
          const owedBefore = member.offlineAfterSeq ?? member.ackedSeq;
          m = skipping(m, owedBefore + 1, this.firstSeqAtOrAfter(at - this.config.tdMs) - 1);
        }
        this.members.set(m.id, m);
        return { result: ok(), effects: [{ kind: 'save-member', member: m }, { kind: 'connect', id: m.id, host: m.host, port: m.port }] };
      }
      case 'msend': {
        const result = this.accept(cmd.id, cmd.text, nowMs);
        if (!result.ok) return { result, effects: [] };
        return { result, effects: [{ kind: 'save-message', seq: result.seq, sender: cmd.id, text: cmd.text, acceptedMs: result.acceptedMs }, { kind: 'fanout', seq: result.seq }] };
      }
    }
  }

  /**
   * msend: `apply` without the effect list, for the coordinator's hot path.
   * An accepted message is to be saved (seq, sender, text, acceptedMs) and
   * fanned out, exactly as apply's effects say.
   */
  accept(id: string, text: string, nowMs: number): PmResult {
    if (!this.members.has(id)) return { ok: false, code: 'not_registered', message: `participant ${id} is not registered: register first` };
    // UTF-8 takes at most 3 bytes per UTF-16 unit: most texts need no encoding to be judged.
    if (text.length * 3 > this.config.messageBytesMax) {
      const bytes = encoder.encode(text).length;
      if (bytes > this.config.messageBytesMax) return { ok: false, code: 'too_large', message: `the message is ${bytes} bytes; the limit is ${this.config.messageBytesMax}` };
    }
    if (this.retainedCount >= this.config.retainedMax) return { ok: false, code: 'store_full', message: `${this.config.retainedMax} messages are waiting for slow members; try later` };
    const at = Math.max(nowMs, this.lastAcceptedMs);
    const seq = ++this.lastSeq;
    this.lastAcceptedMs = at;
    this.seqAt.push(seq);
    this.timeAt.push(at);
    return { ok: true, seq, acceptedMs: at };
  }

  /** The member's receiver logged everything up to `seq`. Returns the member to save, if it moved. */
  ack(id: string, seq: number): PmMember | undefined {
    const m = this.members.get(id);
    if (!m || seq <= m.ackedSeq || seq > this.lastSeq) return undefined;
    const moved = skipping({ ...m, ackedSeq: seq }, 1, 0);
    this.members.set(id, moved);
    return moved;
  }

  /** Seqs this member is owed above `afterSeq` (what is already in flight), ascending, at most `limit`. */
  owed(id: string, afterSeq: number, limit: number): number[] {
    const m = this.members.get(id);
    if (!m || m.status !== 'online') return [];
    const from = Math.max(afterSeq, m.ackedSeq) + 1;
    const skips = m.notOwed ?? [];
    let r = 0;
    const out: number[] = [];
    for (let i = this.indexOfFirstSeqAtOrAbove(from); i < this.seqAt.length && out.length < limit; i++) {
      const seq = this.seqAt[i]!;
      while (r < skips.length && skips[r]!.toSeq < seq) r += 1;
      const skip = skips[r];
      if (skip && skip.fromSeq <= seq) i = this.indexOfFirstSeqAtOrAbove(skip.toSeq + 1) - 1;
      else out.push(seq);
    }
    return out;
  }

  /**
   * Highest seq that may be deleted now: older than td, and not owed to any
   * member that could still claim it (online, offline for at most td, or
   * offline longer but still owed messages from before it went offline).
   */
  purgeableUpTo(nowMs: number): number {
    let upTo = this.lastSeqBefore(nowMs - this.config.tdMs);
    for (const m of this.members.values()) {
      const mayClaim = m.status === 'online' || nowMs - m.offlineSinceMs <= this.config.tdMs || m.ackedSeq < (m.offlineAfterSeq ?? m.ackedSeq);
      if (mayClaim) upTo = Math.min(upTo, m.ackedSeq);
    }
    return upTo;
  }

  /** Forgets retained messages up to `seq` (after the store deleted them). */
  purged(seq: number): void {
    while (this.head < this.seqAt.length && this.seqAt[this.head]! <= seq) this.head += 1;
    // Compact now and then so the arrays do not grow without end.
    if (this.head > 4_096 && this.head * 2 > this.seqAt.length) {
      this.seqAt = this.seqAt.slice(this.head);
      this.timeAt = this.timeAt.slice(this.head);
      this.head = 0;
    }
  }

  member(id: string): PmMember | undefined {
    return this.members.get(id);
  }

  allMembers(): PmMember[] {
    return [...this.members.values()];
  }

  get lastSequence(): number {
    return this.lastSeq;
  }

  get retainedCount(): number {
    return this.seqAt.length - this.head;
  }

  /** First retained seq accepted at or after `ms`; lastSeq + 1 when none. */
  private firstSeqAtOrAfter(ms: number): number {
    let lo = this.head;
    let hi = this.timeAt.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.timeAt[mid]! < ms) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.seqAt.length ? this.seqAt[lo]! : this.lastSeq + 1;
  }

  /** Last retained seq accepted strictly before `ms`; 0 when none. */
  private lastSeqBefore(ms: number): number {
    const first = this.firstSeqAtOrAfter(ms);
    const i = this.indexOfFirstSeqAtOrAbove(first) - 1;
    return i >= this.head ? this.seqAt[i]! : 0;
  }

  private indexOfFirstSeqAtOrAbove(seq: number): number {
    let lo = this.head;
    let hi = this.seqAt.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqAt[mid]! < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * The member with seqs fromSeq..toSeq not owed (nothing when the range is
 * empty), normalised: ranges at or below ackedSeq are dropped, and one that
 * starts right above it moves ackedSeq to its end.
 */
function skipping(m: PmMember, fromSeq: number, toSeq: number): PmMember {
  if (toSeq < fromSeq && !m.notOwed) return m;
  const ranges = [...(m.notOwed ?? [])];
  if (toSeq >= fromSeq) ranges.push({ fromSeq, toSeq });
  let ackedSeq = m.ackedSeq;
  while (ranges.length > 0 && ranges[0]!.fromSeq <= ackedSeq + 1) ackedSeq = Math.max(ackedSeq, ranges.shift()!.toSeq);
  const { notOwed: _old, ...rest } = m;
  return ranges.length > 0 ? { ...rest, ackedSeq, notOwed: ranges } : { ...rest, ackedSeq };
}
