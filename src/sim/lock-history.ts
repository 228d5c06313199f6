import { compareContenders } from '../core/locks/types.js';
import type { LockRecorder } from './lock-cluster.js';

/**
 * The history of a simulated lock run and the checker of DESIGN.md's lock
 * guarantees. Times are true simulated ms (no node's clock).
 *
 * A holder's validity interval runs from when its node learned it holds
 * the lock to the first of: its own clock saying the lease is over, its
 * release, its node's crash. The checks:
 *   exclusion  no two intervals of a key overlap;
 *   tokens     tokens grow strictly in the order the intervals begin;
 *   answered   every acquire whose node stayed up was answered, by its wait's end;
 *   probes     after the faults, each key is acquirable within ttl + margins
 *              (no lock stays stuck when its holder died);
 *   fairness   (runs without loss, partitions or crashes) no contender L is
 *              granted the lock by a majority that completed while a better
 *              waiting contender W (by (priority, node, attempt)) had had time
 *              to reach the grantors (fairSlackMs after W began); in other
 *              runs such overtakes are only counted.
 */
export interface LockOp {
  readonly id: number;
  readonly node: string;
  readonly key: string;
  readonly ttlMs: number;
  readonly waitMs: number;
  readonly attempt: bigint;
  readonly priority: bigint;
  readonly startMs: number;
  readonly probe: boolean;
  outcome: 'pending' | 'acquired' | 'failed' | 'crashed';
  reason?: string;
  resolvedMs?: number;
  token?: bigint;
  acquiredMs?: number;
  /** End of the validity interval (true ms). */
  endMs?: number;
  endWhy?: 'valid-until' | 'released' | 'expired' | 'crashed';
}

export interface LockGrantRecord {
  readonly grantor: string;
  readonly holder: string;
  readonly attempt: bigint;
  readonly token: bigint;
  readonly atMs: number;
}

export interface LockViolation {
  readonly check: 'exclusion' | 'tokens' | 'answered' | 'probes' | 'fairness';
  readonly key: string;
  readonly detail: string;
}

export interface LockHistoryStats {
  acquires: number;
  acquired: number;
  timedOut: number;
  busy: number;
  crashedWhileWaiting: number;
  released: number;
  expired: number;
  holderCrashes: number;
  grants: number;
  overtakes: number;
  /** Pairs (waiting W, later-granted L) the fairness check judged. */
  fairnessPairs: number;
  waitMsTotal: number;
}

export class LockHistory implements LockRecorder {
  readonly ops: LockOp[] = [];
  readonly grants = new Map<string, LockGrantRecord[]>();
  private readonly byAttempt = new Map<string, LockOp>();
  readonly log: string[] = [];
  /** The overtakes found by check() (judged or only counted), described. */
  readonly overtakes: string[] = [];
  /** Told when an acquire is answered (acquired or not). */
  onAnswer: ((op: LockOp) => void) | undefined;

  constructor(private readonly traceMax = 400) {}

  addOp(op: Omit<LockOp, 'id' | 'outcome'>): LockOp {
    const full: LockOp = { ...op, id: this.ops.length + 1, outcome: 'pending' };
    this.ops.push(full);
    this.byAttempt.set(`${op.node}/${op.attempt}`, full);
    this.trace(op.startMs, `op${full.id} ${op.node} acquire ${op.key} ttl=${op.ttlMs} wait=${op.waitMs} prio=${op.priority}${op.probe ? ' (probe)' : ''}`);
    return full;
  }

  trace(atMs: number, line: string): void {
    if (this.log.length < this.traceMax) this.log.push(`t=${atMs.toFixed(1)} ${line}`);
  }

  grant(grantor: string, key: string, holder: string, attempt: bigint, token: bigint, atMs: number): void {
    let list = this.grants.get(key);
    if (!list) this.grants.set(key, (list = []));
    list.push({ grantor, holder, attempt, token, atMs });
  }

  acquired(node: string, attempt: bigint, key: string, token: bigint, atMs: number, validUntilTrueMs: number): void {
    const op = this.byAttempt.get(`${node}/${attempt}`);
    if (!op) return;
    op.outcome = 'acquired';
    op.resolvedMs = atMs;
    op.acquiredMs = atMs;
    op.token = token;
    op.endMs = validUntilTrueMs;
    op.endWhy = 'valid-until';
    this.trace(atMs, `op${op.id} ${node} ACQUIRED ${key} token=${token} until=${validUntilTrueMs.toFixed(1)}`);
    this.onAnswer?.(op);
  }

  failed(node: string, attempt: bigint, reason: string, atMs: number): void {
    const op = this.byAttempt.get(`${node}/${attempt}`);
    if (!op) return;
    op.outcome = 'failed';
    op.reason = reason;
    op.resolvedMs = atMs;
    this.trace(atMs, `op${op.id} ${node} not acquired (${reason})`);
    this.onAnswer?.(op);
  }

  expired(node: string, attempt: bigint, atMs: number): void {
    const op = this.byAttempt.get(`${node}/${attempt}`);
    if (!op || op.endWhy !== 'valid-until') return;
    op.endWhy = 'expired';
    this.trace(atMs, `op${op.id} ${node} lease expired`);
  }

  released(op: LockOp, atMs: number): void {
    if (op.endMs !== undefined && atMs < op.endMs) op.endMs = atMs;
    op.endWhy = 'released';
    this.trace(atMs, `op${op.id} ${op.node} released ${op.key} token=${op.token}`);
  }

  crashed(node: string, atMs: number): void {
    this.trace(atMs, `${node} CRASHED`);
    for (const op of this.ops) {
      if (op.node !== node) continue;
      if (op.outcome === 'pending') {
        op.outcome = 'crashed';
        op.resolvedMs = atMs;
      } else if (op.outcome === 'acquired' && op.endMs !== undefined && op.endMs > atMs && (op.endWhy === 'valid-until')) {
        op.endMs = atMs;
        op.endWhy = 'crashed';
      }
    }
  }

  check(options: { readonly rateErrorMax: number; readonly fairSlackMs: number; readonly strictFairness: boolean; readonly majority: number }): { violations: LockViolation[]; stats: LockHistoryStats } {
    const violations: LockViolation[] = [];
    const stats: LockHistoryStats = {
      acquires: 0, acquired: 0, timedOut: 0, busy: 0, crashedWhileWaiting: 0, released: 0, expired: 0, holderCrashes: 0,
      grants: [...this.grants.values()].reduce((n, l) => n + l.length, 0), overtakes: 0, fairnessPairs: 0, waitMsTotal: 0,
    };
    const keys = new Set(this.ops.map((o) => o.key));
    for (const op of this.ops) {
      if (!op.probe) stats.acquires += 1;
      if (op.outcome === 'acquired') {
        stats.acquired += 1;
        stats.waitMsTotal += op.acquiredMs! - op.startMs;
        if (op.endWhy === 'released') stats.released += 1;
        if (op.endWhy === 'expired' || op.endWhy === 'valid-until') stats.expired += 1;
        if (op.endWhy === 'crashed') stats.holderCrashes += 1;
      }
      if (op.outcome === 'failed') stats[op.reason === 'timeout' ? 'timedOut' : 'busy'] += 1;
      if (op.outcome === 'crashed') stats.crashedWhileWaiting += 1;
      // answered: by the end of the wait (its node's clock may run 1 % slow), never left hanging.
      const deadlineMs = op.startMs + Math.max(op.waitMs, 1) / (1 - options.rateErrorMax) + 2;
      if (op.outcome === 'pending') violations.push({ check: 'answered', key: op.key, detail: `op${op.id} on ${op.node} (started ${op.startMs.toFixed(1)}, wait ${op.waitMs}) was never answered` });
      else if (op.outcome !== 'crashed' && op.waitMs > 0 && op.resolvedMs! > deadlineMs) {
        violations.push({ check: 'answered', key: op.key, detail: `op${op.id} on ${op.node} answered at ${op.resolvedMs!.toFixed(1)}, after its wait ended at ${deadlineMs.toFixed(1)}` });
      }
      if (op.probe && op.outcome !== 'acquired') {
        violations.push({ check: 'probes', key: op.key, detail: `probe op${op.id} on ${op.node} was not acquired (${op.outcome}${op.reason ? `: ${op.reason}` : ''}) within ${op.waitMs} ms: the key stayed locked` });
      }
    }
    for (const key of keys) {
      const held = this.ops.filter((o) => o.key === key && o.outcome === 'acquired' && o.endMs! > o.acquiredMs!).sort((a, b) => a.acquiredMs! - b.acquiredMs!);
      let last: LockOp | undefined;
      let prev: LockOp | undefined;
      for (const op of held) {
        if (last && op.acquiredMs! < last.endMs!) {
          violations.push({ check: 'exclusion', key, detail: `op${op.id} (${op.node}, token ${op.token}) held from ${op.acquiredMs!.toFixed(3)} while op${last.id} (${last.node}, token ${last.token}) held until ${last.endMs!.toFixed(3)} (${last.endWhy})` });
        }
        if (prev && op.token! <= prev.token!) {
          violations.push({ check: 'tokens', key, detail: `op${op.id} got token ${op.token} at ${op.acquiredMs!.toFixed(1)}, not above op${prev.id}'s ${prev.token} from ${prev.acquiredMs!.toFixed(1)}` });
        }
        if (!last || op.endMs! > last.endMs!) last = op;
        prev = op;
      }
      this.checkFairness(key, options, violations, stats);
    }
    return { violations, stats };
  }

  /** The moment a majority of grantors had granted (attempt, token): when the lock became L's. */
  private majorityAt(key: string, op: LockOp, majority: number): number | undefined {
    const latest = new Map<string, number>();
    for (const g of this.grants.get(key) ?? []) {
      if (g.holder === op.node && g.attempt === op.attempt && g.token === op.token && g.atMs <= op.acquiredMs!) latest.set(g.grantor, g.atMs);
    }
    const times = [...latest.values()].sort((a, b) => a - b);
    return times.length >= majority ? times[majority - 1] : undefined;
  }

  private checkFairness(key: string, options: { readonly fairSlackMs: number; readonly strictFairness: boolean; readonly majority: number }, violations: LockViolation[], stats: LockHistoryStats): void {
    const ops = this.ops.filter((o) => o.key === key);
    for (const l of ops) {
      if (l.outcome !== 'acquired') continue;
      const wonAt = this.majorityAt(key, l, options.majority);
      if (wonAt === undefined) continue;
      for (const w of ops) {
        if (w === l) continue;
        // W waiting when L won, long enough for its proposals to have reached every grantor.
        if (!(w.startMs + options.fairSlackMs <= wonAt && (w.resolvedMs ?? Infinity) > l.acquiredMs!)) continue;
        stats.fairnessPairs += 1;
        const better = compareContenders({ holder: w.node, attempt: w.attempt, priority: w.priority }, { holder: l.node, attempt: l.attempt, priority: l.priority }) < 0;
        if (!better) continue;
        stats.overtakes += 1;
        const detail = `op${l.id} (${l.node}, priority ${l.priority}) won at ${wonAt.toFixed(1)} while op${w.id} (${w.node}, priority ${w.priority}, waiting since ${w.startMs.toFixed(1)}) waited`;
        this.overtakes.push(`[${key}] ${detail}`);
        if (options.strictFairness) violations.push({ check: 'fairness', key, detail });
      }
    }
  }
}
