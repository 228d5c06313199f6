import type { LockProposal, LockReleaseMsg, LockVote } from '../core/locks/types.js';
import type { EnvelopeInit, LockPropose as WirePropose, LockRelease as WireRelease, LockVote as WireVote } from '../wire/index.js';

/**
 * Lock messages between the wire (protobuf, uint64 as bigint) and the core.
 * A ttl that does not fit a safe integer becomes -1, which the grantor
 * refuses as out of range (it never sees a silently rounded number).
 */
export function proposalFromWire(w: WirePropose): LockProposal {
  return { key: w.key, holder: w.holder, attempt: w.attempt, token: w.token, ttlMs: w.ttlMs <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(w.ttlMs) : -1, priority: w.priority };
}

export function voteFromWire(w: WireVote): LockVote {
  return { key: w.key, attempt: w.attempt, token: w.token, granted: w.granted, maxToken: w.maxToken, queued: w.queued };
}

export function releaseFromWire(w: WireRelease): LockReleaseMsg {
  return { key: w.key, holder: w.holder, attempt: w.attempt, token: w.token };
}

export function proposeBody(p: LockProposal): EnvelopeInit['body'] {
  return { case: 'lockPropose', value: { key: p.key, holder: p.holder, attempt: p.attempt, token: p.token, ttlMs: BigInt(p.ttlMs), priority: p.priority } };
}

export function voteBody(v: LockVote): EnvelopeInit['body'] {
  return { case: 'lockVote', value: { key: v.key, attempt: v.attempt, token: v.token, granted: v.granted, maxToken: v.maxToken, queued: v.queued } };
}

export function releaseBody(r: LockReleaseMsg): EnvelopeInit['body'] {
  return { case: 'lockRelease', value: { key: r.key, holder: r.holder, attempt: r.attempt, token: r.token } };
}
