import { LockSimCluster, LOCK_SIM_CONFIG } from './lock-cluster.js';
import type { LockSimConfig } from './lock-cluster.js';
import { LockHistory } from './lock-history.js';
import type { LockHistoryStats, LockOp, LockViolation } from './lock-history.js';
import type { NetworkKnobs, NetworkStats } from './network.js';
import { SimRandom } from './random.js';
import { sha256 } from './sha256.js';

export interface LockScenarioOptions {
  readonly nodeCount?: number;
  /** No loss, partitions or crashes (delay, duplication, reordering and clock drift stay): fairness is checked strictly. */
  readonly calm?: boolean;
  readonly keyCount?: number;
  readonly opCount?: number;
  readonly config?: LockSimConfig;
}

export interface LockScenarioCounts {
  partitions: number;
  crashes: number;
  holderCrashes: number;
  restarts: number;
  leftDown: number;
  wallSteps: number;
  splitRounds: number;
  yields: number;
  restoredLeases: number;
  strayGrants: number;
  releasesElsewhere: number;
}

export interface LockScenarioResult {
  readonly seed: number;
  readonly nodeCount: number;
  readonly calm: boolean;
  readonly knobs: NetworkKnobs;
  readonly violations: readonly LockViolation[];
  readonly stats: LockHistoryStats;
  readonly counts: LockScenarioCounts;
  readonly network: NetworkStats;
  readonly eventsRun: number;
  readonly simulatedMs: number;
  readonly trace: readonly string[];
  /** Contenders served before a better one that had waited long enough (allowed only under faults). */
  readonly overtakes: readonly string[];
  readonly fingerprint: string;
}

const RATE_ERROR_MAX = 0.01;
const WALL_OFFSET_MS_MAX = 500;
const TTL_MS_MAX = 2_500;
const WAIT_MS_MAX = 6_000;

/**
 * One seeded run: 3-32 nodes (every node a grantor, the quorum set all of
 * them), 1-3 keys, clients asking random nodes for locks with random ttl and
 * wait, holding them for a while and releasing (or not, or dying while
 * holding), on a network with delay, duplication and reordering, and clocks
 * that drift ±1 % and sit up to 500 ms apart. Unless calm: loss, partitions,
 * crashes and restarts of grantors and holders (with what they persisted;
 * the wall clock may step at a restart). Then the faults end, crashed nodes
 * come back (a minority of dead holders stays down), every acquire is
 * answered, and a probe per key must get the lock (no lock stays stuck).
 * The history checker judges it all (lock-history.ts).
 */
export function runLockScenario(seed: number, options: LockScenarioOptions = {}): LockScenarioResult {
  const rng = SimRandom.derived(seed, 'lock-scenario');
  const calm = options.calm ?? rng.chance(0.3);
  const sizeDraw = rng.float();
  const nodeCount = options.nodeCount ?? (sizeDraw < 0.6 ? rng.int(3, 7) : sizeDraw < 0.9 ? rng.int(8, 15) : rng.int(16, 32));
  const keyCount = options.keyCount ?? rng.int(1, 3);
  const opCount = options.opCount ?? rng.int(8, 30);
  const activeMs = rng.int(6_000, 12_000);
  const delayMsMin = rng.int(0, 5);
  const knobs: Partial<NetworkKnobs> = {
    delayMsMin,
    delayMsMax: delayMsMin + rng.int(0, 30),
    reorderProbability: rng.chance(0.5) ? rng.range(0, 0.2) : 0,
    reorderDelayMsMax: rng.int(0, 40),
    duplicateProbability: rng.chance(0.5) ? rng.range(0, 0.1) : 0,
    lossProbability: calm ? 0 : rng.chance(0.7) ? rng.range(0, 0.1) : 0,
  };
  const history = new LockHistory();
  const config = options.config ?? LOCK_SIM_CONFIG;
  const cluster = new LockSimCluster({ seed, nodeCount, network: knobs, config, rateErrorMax: RATE_ERROR_MAX, wallOffsetMsMax: WALL_OFFSET_MS_MAX, recorder: history });
  const sched = cluster.scheduler;
  const net = cluster.network;
  const majority = Math.floor(nodeCount / 2) + 1;
  const counts: LockScenarioCounts = { partitions: 0, crashes: 0, holderCrashes: 0, restarts: 0, leftDown: 0, wallSteps: 0, splitRounds: 0, yields: 0, restoredLeases: 0, strayGrants: 0, releasesElsewhere: 0 };
  const trace = (line: string): void => history.trace(cluster.nowMs, line);
  trace(`${nodeCount} nodes${calm ? ' (calm)' : ''}, ${keyCount} keys, ${opCount} acquires over ${activeMs} ms, network ${JSON.stringify(net.knobs)}`);
  trace(`clocks: ${cluster.nodes.map((n) => `${n.id} rate ${(n.clock.rateError * 100).toFixed(3)}% wall ${(n.clock.wall(0) - 1_700_000_000_000).toFixed(0)}`).join(', ')}`);

  const faultsOn = (): boolean => !calm && cluster.nowMs < activeMs;
  /** Nodes that stay down to the end: a minority, so the probes have a majority. */
  const stayDown = new Set<string>();
  const downCount = (): number => cluster.nodes.filter((n) => !n.up).length;
  const crash = (id: string, why: string): void => {
    const n = cluster.node(id);
    if (!n.up) return;
    // Keep a majority able to come back: never more than a minority down.
    if (downCount() + 1 > nodeCount - majority) return;
    counts.crashes += 1;
    trace(`crash ${id} (${why})`);
    n.crash();
    if (!calm && rng.chance(0.2) && stayDown.size + 1 <= nodeCount - majority) {
      stayDown.add(id);
      return;
    }
    sched.after(rng.chance(0.3) ? rng.int(0, 50) : rng.int(50, 3_000), () => restart(id));
  };
  const restart = (id: string): void => {
    if (cluster.node(id).up || stayDown.has(id)) return;
    const step = rng.chance(0.3) ? rng.int(-100, 100) : 0;
    if (step !== 0) counts.wallSteps += 1;
    counts.restarts += 1;
    trace(`restart ${id}${step ? ` (wall clock steps ${step} ms)` : ''}`);
    cluster.restart(id, step);
  };

  const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);
  const startOp = (node: string, key: string, ttlMs: number, waitMs: number, probe: boolean): void => {
    const n = cluster.node(node);
    const started = n.acquire(key, ttlMs, waitMs);
    if (!started) return;
    history.addOp({ node, key, ttlMs, waitMs, attempt: started.attempt, priority: started.priority, startMs: cluster.nowMs, probe });
  };
  // After an acquire is answered: hold, then release; or let it expire; or die holding it.
  history.onAnswer = (op: LockOp): void => {
    if (op.outcome !== 'acquired' || op.probe) return;
    const roll = rng.float();
    const holdMs = rng.int(0, Math.max(1, Math.floor(op.ttlMs * 0.9)));
    if (roll < 0.55) {
      sched.after(holdMs, () => {
        if (op.endWhy !== 'valid-until') return;
        const n = cluster.node(op.node);
        if (n.release(op.key, op.token!)) history.released(op, cluster.nowMs);
      });
    } else if (roll < 0.7) {
      // Released through another node (by token): the client stops using the lock when it asks.
      sched.after(holdMs, () => {
        if (op.endWhy !== 'valid-until') return;
        const up = cluster.nodes.filter((n) => n.up && n.id !== op.node);
        if (up.length === 0) return;
        counts.releasesElsewhere += 1;
        history.released(op, cluster.nowMs);
        rng.pick(up).releaseByToken(op.key, op.token!);
      });
    } else if (roll < 0.85 || !faultsOn()) {
      // Never released: the lease runs out.
    } else {
      sched.after(holdMs, () => {
        if (op.endWhy !== 'valid-until' || !faultsOn()) return;
        counts.holderCrashes += 1;
        crash(op.node, `holder of ${op.key}`);
      });
    }
  };

  for (let i = 0; i < opCount; i++) {
    const atMs = rng.int(0, activeMs);
    const node = rng.pick(cluster.nodes).id;
    const key = rng.pick(keys);
    const ttlMs = rng.chance(0.1) ? rng.int(30, 150) : rng.int(150, TTL_MS_MAX);
    const waitMs = rng.chance(0.1) ? 0 : rng.int(100, WAIT_MS_MAX);
    sched.at(atMs, () => startOp(node, key, ttlMs, waitMs, false));
  }
  // Bursts: several clients ask for one key at nearly the same moment (split votes).
  for (let b = rng.int(0, 3); b > 0; b--) {
    const atMs = rng.int(0, activeMs);
    const key = rng.pick(keys);
    for (let i = rng.int(2, 5); i > 0; i--) {
      const node = rng.pick(cluster.nodes).id;
      const ttlMs = rng.int(200, TTL_MS_MAX);
      const waitMs = rng.int(1_000, WAIT_MS_MAX);
      sched.at(atMs + rng.int(0, 3), () => startOp(node, key, ttlMs, waitMs, false));
    }
  }
  if (!calm) {
    for (let i = rng.int(0, 3); i > 0; i--) {
      const atMs = rng.int(0, activeMs);
      sched.at(atMs, () => {
        const shuffled = rng.shuffle(cluster.quorum);
        const cut = rng.int(1, nodeCount - 1);
        const sides = [shuffled.slice(0, cut), shuffled.slice(cut)];
        counts.partitions += 1;
        trace(`partition ${sides.map((s) => `[${s.join(' ')}]`).join(' | ')}`);
        net.partition(sides);
        sched.after(rng.int(200, 3_000), () => {
          trace('heal');
          net.heal();
        });
      });
    }
    for (let i = rng.int(0, 5); i > 0; i--) {
      sched.at(rng.int(0, activeMs), () => crash(rng.pick(cluster.nodes).id, 'random'));
    }
  }

  sched.runUntil(activeMs);
  // The faults end: heal, no loss, everybody back except the dead holders that stay down.
  net.heal();
  net.setKnobs({ lossProbability: 0 });
  for (const n of cluster.nodes) if (!n.up && !stayDown.has(n.id)) restart(n.id);
  counts.leftDown = stayDown.size;
  trace(`faults over; down for good: ${[...stayDown].join(' ') || 'none'}`);
  sched.runUntil(activeMs + WAIT_MS_MAX * 1.05 + 500);
  // Probes: every key must be acquirable once leases of the dead have run out.
  const probeWaitMs = Math.ceil(TTL_MS_MAX * 1.05 + config.grantor.restoreSkewMs + 200 + 3_000);
  const probeAt = cluster.nowMs;
  for (const key of keys) {
    const up = cluster.nodes.filter((n) => n.up);
    startOp(rng.pick(up).id, key, 500, probeWaitMs, true);
  }
  sched.runUntil(probeAt + probeWaitMs * 1.05 + 1_000);

  const d = net.knobs;
  const { violations, stats } = history.check({
    rateErrorMax: RATE_ERROR_MAX,
    fairSlackMs: d.delayMsMax + d.reorderDelayMsMax + 1,
    strictFairness: calm,
    majority,
  });
  for (const n of cluster.nodes) {
    counts.splitRounds += n.acquirer?.stats.splitRounds ?? 0;
    counts.yields += n.grantor?.stats.yields ?? 0;
    counts.restoredLeases += n.grantor?.stats.restoredLeases ?? 0;
    counts.strayGrants += n.acquirer?.stats.strayGrants ?? 0;
  }
  const fingerprint = Buffer.from(sha256(new TextEncoder().encode(JSON.stringify({
    log: history.log,
    ops: history.ops.map((o) => [o.node, o.key, o.outcome, o.token?.toString(), o.acquiredMs, o.endMs]),
    events: sched.executedCount,
  })))).toString('hex');
  return {
    seed, nodeCount, calm, knobs: net.knobs, violations, stats, counts, network: net.stats,
    eventsRun: sched.executedCount, simulatedMs: cluster.nowMs, trace: history.log, overtakes: history.overtakes, fingerprint,
  };
}
