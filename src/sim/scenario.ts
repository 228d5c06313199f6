import type { Endpoint } from '../core/address.js';
import { NetFaults } from './net-faults.js';
import { checkConverged, SafetyMonitor } from './invariants.js';
import type { Violation } from './invariants.js';
import { MembershipCluster } from './membership-cluster.js';
import type { NetworkKnobs, NetworkStats } from './network.js';
import { SimRandom } from './random.js';

export interface RandomScenarioOptions {
  /** Fault-free time (no loss, no partition, no stall; delay, duplication and reordering go on) before the convergence check. */
  readonly quietMs?: number;
  readonly nodesMin?: number;
  readonly nodesMax?: number;
}

export interface ScenarioResult {
  readonly seed: number;
  readonly nodeCount: number;
  readonly faultPhaseMs: number;
  readonly knobs: NetworkKnobs;
  readonly violations: readonly Violation[];
  /** What happened when: starts and every fault, for the failure report. */
  readonly trace: readonly string[];
  readonly counts: SafetyMonitor['counts'];
  readonly network: NetworkStats;
  readonly eventsRun: number;
  /** Hash of the trace and every node's final member table: equal runs give equal fingerprints. */
  readonly fingerprint: string;
}

/**
 * One seeded run: a cluster of 3-24 nodes on a network with random delay,
 * duplication, reordering and loss (up to 20%), random faults (partitions
 * that heal, link cuts, crashes with or without restart, graceful leaves
 * and rejoins, event-loop stalls, loss changes, late joiners), then a quiet
 * period and the convergence check. The safety monitor watches throughout.
 */
export function runRandomScenario(seed: number, options: RandomScenarioOptions = {}): ScenarioResult {
  const rng = SimRandom.derived(seed, 'scenario');
  const quietMs = options.quietMs ?? 5_000;
  const nodeCount = rng.int(options.nodesMin ?? 3, options.nodesMax ?? 24);
  const nodes = makeNodes(rng, nodeCount);
  const delayMsMin = rng.int(0, 5);
  const knobs: Partial<NetworkKnobs> = {
    delayMsMin,
    delayMsMax: delayMsMin + rng.int(0, 60),
    reorderProbability: rng.chance(0.5) ? rng.range(0, 0.3) : 0,
    reorderDelayMsMax: rng.int(0, 120),
    duplicateProbability: rng.chance(0.5) ? rng.range(0, 0.1) : 0,
    lossProbability: rng.range(0, 0.2),
  };
  const faultPhaseMs = rng.int(3_000, 12_000);

  const cluster = new MembershipCluster({ seed, nodes, network: knobs });
  const monitor = new SafetyMonitor(cluster);
  const net = cluster.network;
  const trace: string[] = [];
  const log = (what: string): void => {
    trace.push(`t=${cluster.nowMs} ${what}`);
  };
  log(`${nodeCount} nodes, faults until ${faultPhaseMs} ms, network ${JSON.stringify(net.knobs)}`);

  let faultsOver = false;
  const netFaults = new NetFaults(net, cluster.scheduler, rng, log, () => faultsOver);
  const ids = nodes.map((n) => n.id);
  const runningIds = (): string[] => cluster.running().map((n) => n.id);

  const inject = (): void => {
    const kind = rng.pick(['partition', 'partition', 'cut', 'crash', 'crash', 'leave', 'stall', 'stall', 'stall', 'loss'] as const);
    const live = runningIds();
    const remainingMs = faultPhaseMs - cluster.nowMs;
    if (kind === 'partition') {
      netFaults.partition(ids, 300, 10_000);
    } else if (kind === 'cut') {
      netFaults.cut(ids, 200, 6_000);
    } else if (kind === 'crash' || kind === 'leave') {
      const candidates = kind === 'crash' ? live : live.filter((id) => !cluster.node(id).stalled);
      if (candidates.length === 0) return log(`${kind}: no candidate`);
      const id = rng.pick(candidates);
      if (kind === 'crash') cluster.crash(id);
      else cluster.leave(id);
      log(`${kind} ${id}@${cluster.node(id).incarnation}`);
      if (rng.chance(kind === 'crash' ? 0.7 : 0.5)) {
        cluster.scheduler.after(rng.int(50, 6_000), () => {
          if (faultsOver || cluster.node(id).status === 'running') return;
          cluster.start(id);
          log(`restart ${id}@${cluster.node(id).incarnation}`);
        });
      }
    } else if (kind === 'stall') {
      if (live.length === 0) return log('stall: no candidate');
      const id = rng.pick(live);
      const excuseMs = Math.floor(monitor.stallExcuseMs());
      // Short stalls must cause no death (checked strictly); long ones may.
      const wantMs = rng.chance(0.3) ? rng.int(excuseMs, 4_000) : rng.int(10, Math.max(10, excuseMs - 1));
      const durationMs = Math.min(wantMs, remainingMs);
      cluster.stall(id, durationMs);
      log(`stall ${id} for ${durationMs} ms`);
    } else {
      const lossProbability = rng.chance(0.3) ? 0 : rng.range(0, 0.2);
      net.setKnobs({ lossProbability });
      log(`loss ${lossProbability.toFixed(3)}`);
    }
  };

  for (const id of ids) {
    const lateJoiner = rng.chance(0.15);
    const atMs = lateJoiner ? rng.int(1_000, faultPhaseMs - 1) : rng.int(0, 1_000);
    cluster.scheduler.at(atMs, () => {
      cluster.start(id);
      log(`start ${id}`);
    });
  }
  const faultCount = rng.int(0, 10);
  for (let i = 0; i < faultCount; i++) cluster.scheduler.at(rng.int(200, faultPhaseMs - 1), inject);
  cluster.scheduler.at(faultPhaseMs, () => {
    faultsOver = true;
    net.heal();
    for (const id of ids) net.restoreLink(id);
    net.setKnobs({ lossProbability: 0 });
    log('faults end: healed, links restored, loss 0');
  });
  cluster.runUntil(faultPhaseMs + quietMs);

  const violations = [...monitor.violations, ...checkConverged(cluster, monitor)];
  return {
    seed, nodeCount, faultPhaseMs, knobs: net.knobs, violations, trace,
    counts: monitor.counts, network: net.stats, eventsRun: cluster.scheduler.executedCount,
    fingerprint: fingerprint(cluster, trace),
  };
}

/** Ids n0..n(N-1); hosts drawn from a few addresses so several nodes share one and order by port. */
function makeNodes(rng: SimRandom, count: number): Endpoint[] {
  const hosts = Array.from({ length: rng.int(1, count) }, () => `10.${rng.int(0, 1)}.${rng.int(0, 3)}.${rng.int(1, 254)}`);
  // Ports differ per node (index in the low digits), so no two nodes share host and port.
  return Array.from({ length: count }, (_, i) => ({ id: `n${i}`, host: rng.pick(hosts), port: 7_000 + 100 * rng.int(0, 9) + i }));
}

function fingerprint(cluster: MembershipCluster, trace: readonly string[]): string {
  const parts = [...trace];
  for (const n of cluster.running()) {
    for (const m of cluster.node(n.id).membership!.members()) parts.push(`${n.id}:${m.id}@${m.incarnation}:${m.state}:${m.lastHeardMs}`);
  }
  let h = 0x811c9dc5;
  for (const p of parts) for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return `${(h >>> 0).toString(16).padStart(8, '0')}-${cluster.scheduler.executedCount}`;
}
