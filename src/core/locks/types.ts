/**
 * Distributed locks (DESIGN.md section 2 "Locks"): majority leases with
 * fencing tokens. The messages of the protocol, the durable record of a
 * grantor, the limits, and the fair order of contenders. Plain values (no
 * wire types): src/runtime/lock-codec.ts maps them to and from protobuf.
 *
 * The protocol in one paragraph: every node of the quorum set is a grantor;
 * the node a client asks is the acquirer. It proposes (holder, attempt,
 * token) to every grantor; a grantor grants when it has no other valid lease
 * for the key, the token is above every token it ever granted for the key,
 * and no better contender waits in its queue. A majority of grants for the
 * same token is the lock. grantor.ts and acquirer.ts hold the details and
 * the safety argument.
 */

/** uint64 fields on the wire; tokens stay below 2^63 so SQLite's INTEGER holds them. */
export const TOKEN_MAX = (1n << 63n) - 1n;
export const UINT64_MAX = (1n << 64n) - 1n;

/** "Grant `holder`'s attempt a lease on `key` with this token for ttlMs." */
export interface LockProposal {
  readonly key: string;
  readonly holder: string;
  readonly attempt: bigint;
  readonly token: bigint;
  readonly ttlMs: number;
  /** Fair order of contenders: (priority, holder, attempt), lowest first. */
  readonly priority: bigint;
}

/** A grantor's answer to a proposal, now or later (when a queued proposal moves). */
export interface LockVote {
  readonly key: string;
  readonly attempt: bigint;
  /** The token this vote is about (the proposal's). */
  readonly token: bigint;
  readonly granted: boolean;
  /** Highest token the grantor ever granted for the key. */
  readonly maxToken: bigint;
  /** Not granted but waiting in the grantor's queue. */
  readonly queued: boolean;
}

/** End `holder`'s attempt's lease (if its token is <= token) and its place in the queue. */
export interface LockReleaseMsg {
  readonly key: string;
  readonly holder: string;
  readonly attempt: bigint;
  readonly token: bigint;
}

/** A lease a grantor gave, as persisted: the expiry is in the grantor's wall-clock ms. */
export interface PersistedLease {
  readonly holder: string;
  readonly attempt: bigint;
  readonly token: bigint;
  readonly priority: bigint;
  readonly ttlMs: number;
  readonly expiresWallMs: number;
}

/**
 * What a grantor must have on disk for one key before it answers: the
 * highest token it granted (never forgotten: tokens must grow forever) and
 * the lease it gave, if any.
 */
export interface LockRecord {
  readonly key: string;
  readonly maxToken: bigint;
  readonly lease: PersistedLease | undefined;
}

export interface LockLimits {
  /** UTF-8 bytes of a key. */
  readonly keyBytesMax: number;
  readonly ttlMsMin: number;
  readonly ttlMsMax: number;
  readonly waitMsMax: number;
}

export const LOCK_LIMITS_DEFAULT: LockLimits = Object.freeze({
  keyBytesMax: 1024,
  ttlMsMin: 1,
  ttlMsMax: 10 * 60_000,
  waitMsMax: 10 * 60_000,
});

export const LOCK_TTL_DEFAULT_MS = 10_000;

const encoder = new TextEncoder();

/** Why `key` is not acceptable, or undefined. */
export function keyProblem(key: string, limits: LockLimits): string | undefined {
  if (key.length === 0) return 'the key is empty';
  const bytes = encoder.encode(key).length;
  if (bytes > limits.keyBytesMax) return `the key is ${bytes} bytes; the limit is ${limits.keyBytesMax}`;
  return undefined;
}

export function ttlProblem(ttlMs: number, limits: LockLimits): string | undefined {
  if (!Number.isSafeInteger(ttlMs) || ttlMs < limits.ttlMsMin || ttlMs > limits.ttlMsMax) {
    return `ttl must be a whole number of ms in [${limits.ttlMsMin}, ${limits.ttlMsMax}], got ${ttlMs}`;
  }
  return undefined;
}

/** Identity of one attempt of one holder (attempt ids are unique per holder, across restarts). */
export function contenderId(holder: string, attempt: bigint): string {
  return `${attempt}@${holder}`;
}

export interface Contender {
  readonly holder: string;
  readonly attempt: bigint;
  readonly priority: bigint;
}

/**
 * The one order every grantor uses for contenders: (priority, holder,
 * attempt), lowest first. Because it is the same everywhere, the best
 * waiting contender is the same at every grantor, which is what ends split
 * votes (see grantor.ts) and makes the queue fair.
 */
export function compareContenders(a: Contender, b: Contender): number {
  if (a.priority !== b.priority) return a.priority < b.priority ? -1 : 1;
  if (a.holder !== b.holder) return a.holder < b.holder ? -1 : 1;
  if (a.attempt !== b.attempt) return a.attempt < b.attempt ? -1 : 1;
  return 0;
}

export function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
