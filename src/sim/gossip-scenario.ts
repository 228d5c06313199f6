import type { Endpoint } from '../core/address.js';
import { NetFaults } from './net-faults.js';
import { GOSSIP_DEFAULTS } from '../core/gossip/gossip.js';
import { GossipCluster } from './gossip-cluster.js';
import type { GossipSimKnobs, OverlaySpec } from './gossip-cluster.js';
import { checkGossipConverged, GossipMonitor } from './gossip-invariants.js';
import type { Violation } from './invariants.js';
import type { NetworkKnobs, NetworkStats } from './network.js';
import { SimRandom } from './random.js';
import { isConnected, randomCubicLinks } from './static-graph.js';

export interface GossipScenarioOptions {
  readonly overlay?: 'static' | 'dynamic';
  readonly nodeCount?: number;
  /** How long after the faults stop the cluster may take to converge (simulated ms). */
  readonly settleLimitMs?: number;
}

export interface GossipScenarioResult {
  readonly seed: number;
  readonly overlay: 'static' | 'dynamic';
  readonly nodeCount: number;
  readonly faultPhaseMs: number;
  /** Simulated ms from the end of the faults until every live node held every message (or the limit). */
  readonly settledMs: number;
  readonly violations: readonly Violation[];
  readonly trace: readonly string[];
  readonly counts: GossipMonitor['counts'] & { readonly exempt: number; readonly required: number };
  readonly network: NetworkStats;
  readonly cluster: GossipCluster['stats'];
  readonly eventsRun: number;
  /** Hash of the trace and every node's store: equal runs give equal fingerprints. */
  readonly fingerprint: string;
}

const WORDS = ['apple', 'pear', 'plum', 'grape', 'vine', 'øre', 'naïve', '葡萄', '🍇', 'a b', 'line\nbreak', '"quoted"', '\u0000nul'];

/**
 * One seeded gossip run: 8-64 nodes (mostly 8-24) on a static random cubic
 * graph or the dynamic overlay; a network with delay, duplication,
 * reordering and loss; faults (partitions that heal, link cuts, crashes
 * with restart from the durable store, nodes that leave for good, changing
 * loss, corrupted copies, failed store writes) while clients submit texts
 * (some empty or oversized) at random running nodes. Then the faults stop,
 * every crashed node but those gone for good restarts, and the cluster must
 * converge within settleLimitMs; the monitor watches throughout.
 */
export function runGossipScenario(seed: number, options: GossipScenarioOptions = {}): GossipScenarioResult {
  const rng = SimRandom.derived(seed, 'gossip-scenario');
  const overlayKind = options.overlay ?? (rng.chance(0.5) ? 'static' : 'dynamic');
  const nodeCount = options.nodeCount ?? (rng.chance(0.85) ? rng.int(8, 24) : rng.int(25, 64));
  const nodes = makeNodes(rng, nodeCount);
  const ids = nodes.map((n) => n.id);
  const links = overlayKind === 'static' ? randomCubicLinks(rng, ids) : [];
  const overlay: OverlaySpec = overlayKind === 'static' ? { kind: 'static', links } : { kind: 'dynamic' };
  const delayMsMin = rng.int(0, 5);
  const network: Partial<NetworkKnobs> = {
    delayMsMin,
    delayMsMax: delayMsMin + rng.int(0, 30),
    reorderProbability: rng.chance(0.5) ? rng.range(0, 0.3) : 0,
    reorderDelayMsMax: rng.int(0, 60),
    duplicateProbability: rng.chance(0.5) ? rng.range(0, 0.1) : 0,
    lossProbability: rng.range(0, 0.2),
  };
  const antiEntropyMsMin = rng.int(1_000, 1_500);
  const viewRefreshMsMin = rng.int(200, 800);
  const knobs: GossipSimKnobs = {
    commitDelayMsMax: rng.int(0, 5),
    forwardBeforeCommit: rng.chance(0.5),
    antiEntropyMsMin,
    antiEntropyMsMax: antiEntropyMsMin + rng.int(0, 1_000),
    batchMax: rng.chance(0.5) ? 500 : rng.int(1, 16),
    viewRefreshMsMin,
    viewRefreshMsMax: viewRefreshMsMin + rng.int(0, 1_000),
    writeFailureProbability: rng.chance(0.3) ? rng.range(0, 0.03) : 0,
    corruptProbability: rng.chance(0.3) ? rng.range(0, 0.03) : 0,
  };
  const messageBytesMax = rng.pick([64, 256, GOSSIP_DEFAULTS.messageBytesMax]);
  // A short run list cuts anti-entropy off above its first holes that never fill (StreamDigest.above),
  // and every failed write at an origin leaves one: short lists only where writes do not fail.
  const digestAboveMax = knobs.writeFailureProbability === 0 && rng.chance(0.4) ? rng.int(3, 12) : GOSSIP_DEFAULTS.digestAboveMax;
  const faultPhaseMs = rng.int(4_000, 12_000);
  const settleLimitMs = options.settleLimitMs ?? 60_000;

  const cluster = new GossipCluster({ seed, nodes, overlay, network, knobs, gossip: { messageBytesMax, digestAboveMax } });
  const monitor = new GossipMonitor(cluster, messageBytesMax);
  const net = cluster.network;
  const trace: string[] = [];
  const log = (what: string): void => {
    trace.push(`t=${cluster.nowMs} ${what}`);
  };
  log(`${nodeCount} nodes, ${overlayKind} overlay, faults until ${faultPhaseMs} ms; messageBytesMax ${messageBytesMax}, digestAboveMax ${digestAboveMax}`);
  log(`network ${JSON.stringify(net.knobs)}`);
  log(`gossip ${JSON.stringify(knobs)}`);
  if (overlayKind === 'static') log(`links ${links.map(([a, b]) => `${a}-${b}`).join(' ')}`);

  let faultsOver = false;
  const netFaults = new NetFaults(net, cluster.scheduler, rng, log, () => faultsOver);
  const gone = new Set<string>();
  const goneMax = rng.chance(0.25) ? rng.int(1, 2) : 0;

  const text = (): string => {
    const r = rng.float();
    if (r < 0.04) return '';
    if (r < 0.07) return 'x'.repeat(messageBytesMax + rng.int(1, 3));
    const words = Array.from({ length: rng.int(1, 4) }, () => rng.pick(WORDS));
    return rng.chance(0.2) ? words.join(' ') : `${words.join(' ')} ${rng.int(0, 999)}`;
  };
  const submitAt = (id: string | undefined, count = 1): void => {
    if (!id) return log('submit: no running node');
    for (let i = 0; i < count; i++) {
      const r = cluster.submit(id, text());
      log(r.ok ? `submit at ${id}: ${r.message.id} (${r.message.origin}@${r.message.incarnation}#${r.message.seq})` : `submit at ${id} refused: ${r.problem.code}`);
    }
  };
  const randomRunning = (): string | undefined => {
    const live = cluster.runningIds();
    return live.length === 0 ? undefined : rng.pick(live);
  };

  const restart = (id: string): void => {
    if (faultsOver || gone.has(id) || cluster.node(id).status === 'running') return;
    cluster.start(id);
    log(`restart ${id}@${cluster.node(id).core!.config.incarnation} with ${cluster.node(id).disk.size} stored`);
  };

  const inject = (): void => {
    if (faultsOver) return;
    const kind = rng.pick(['partition', 'partition', 'cut', 'crash', 'crash', 'crash-in-flight', 'crash-in-flight', 'gone', 'loss'] as const);
    if (kind === 'partition') {
      netFaults.partition(ids, 300, 8_000);
    } else if (kind === 'cut') {
      netFaults.cut(ids, 200, 5_000);
    } else if (kind === 'crash' || kind === 'gone') {
      const id = randomRunning();
      if (!id) return log(`${kind}: no running node`);
      if (kind === 'gone') {
        const rest = ids.filter((x) => x !== id && !gone.has(x));
        if (gone.size >= goneMax || (overlayKind === 'static' && !isConnected(rest, links))) return log(`gone ${id}: not allowed`);
        gone.add(id);
      }
      cluster.crash(id);
      log(`${kind === 'gone' ? 'crash for good' : 'crash'} ${id}`);
      if (kind === 'crash' && rng.chance(0.8)) cluster.scheduler.after(rng.int(50, 5_000), () => restart(id));
    } else if (kind === 'crash-in-flight') {
      // Submits, then a crash of the submitter or one of its neighbours while writes are in flight.
      const id = randomRunning();
      if (!id) return log('crash-in-flight: no running node');
      submitAt(id, rng.int(1, 5));
      const victims = [id, ...cluster.node(id).neighbourIds];
      cluster.scheduler.after(rng.int(0, knobs.commitDelayMsMax + network.delayMsMax!), () => {
        const victim = rng.pick(victims);
        if (faultsOver || cluster.node(victim).status !== 'running') return;
        const inFlight = cluster.node(victim).pendingCount;
        cluster.crash(victim);
        log(`crash ${victim} with ${inFlight} write(s) in flight`);
        if (rng.chance(0.8)) cluster.scheduler.after(rng.int(50, 3_000), () => restart(victim));
      });
    } else {
      const lossProbability = rng.chance(0.3) ? 0 : rng.range(0, 0.2);
      net.setKnobs({ lossProbability });
      log(`loss ${lossProbability.toFixed(3)}`);
    }
  };

  for (const id of ids) {
    const atMs = rng.chance(0.1) ? rng.int(1_000, faultPhaseMs - 1) : rng.int(0, 500);
    cluster.scheduler.at(atMs, () => {
      if (cluster.node(id).status !== 'idle') return;
      cluster.start(id);
      log(`start ${id}`);
    });
  }
  const submitCount = rng.int(10, 60);
  for (let i = 0; i < submitCount; i++) cluster.scheduler.at(rng.int(100, faultPhaseMs - 1), () => submitAt(randomRunning()));
  if (rng.chance(0.3)) {
    const burst = rng.int(20, 120);
    cluster.scheduler.at(rng.int(100, faultPhaseMs - 1), () => submitAt(randomRunning(), burst));
  }
  const faultCount = rng.int(0, 12);
  for (let i = 0; i < faultCount; i++) cluster.scheduler.at(rng.int(200, faultPhaseMs - 1), inject);
  cluster.scheduler.at(faultPhaseMs, () => {
    faultsOver = true;
    net.heal();
    for (const id of ids) net.restoreLink(id);
    net.setKnobs({ lossProbability: 0 });
    cluster.setKnobs({ writeFailureProbability: 0, corruptProbability: 0 });
    for (const id of ids) if (cluster.node(id).status !== 'running' && !gone.has(id)) cluster.start(id);
    log(`faults end: healed, links restored, loss 0, no corruption or failed writes; running ${cluster.runningIds().length}, gone for good [${[...gone].join(',')}]`);
  });
  cluster.runUntil(faultPhaseMs);

  let report = checkGossipConverged(cluster, monitor);
  while (report.violations.length > 0 && cluster.nowMs < faultPhaseMs + settleLimitMs) {
    cluster.runFor(250);
    report = checkGossipConverged(cluster, monitor);
  }
  const settledMs = cluster.nowMs - faultPhaseMs;
  log(report.violations.length === 0 ? `converged ${settledMs} ms after the faults` : `not converged within ${settleLimitMs} ms`);

  return {
    seed, overlay: overlayKind, nodeCount, faultPhaseMs, settledMs, trace,
    violations: [...monitor.violations, ...report.violations],
    counts: { ...monitor.counts, exempt: report.exempt, required: report.required },
    network: net.stats, cluster: cluster.stats, eventsRun: cluster.scheduler.executedCount,
    fingerprint: fingerprint(cluster, trace),
  };
}

/** Ids g0..g(N-1) on a few hosts, so the ring orders some by port. */
function makeNodes(rng: SimRandom, count: number): Endpoint[] {
  const hosts = Array.from({ length: rng.int(1, count) }, () => `10.${rng.int(0, 1)}.${rng.int(0, 3)}.${rng.int(1, 254)}`);
  return Array.from({ length: count }, (_, i) => ({ id: `g${i}`, host: rng.pick(hosts), port: 7_000 + 100 * rng.int(0, 9) + i }));
}

function fingerprint(cluster: GossipCluster, trace: readonly string[]): string {
  const parts = [...trace];
  for (const id of cluster.nodeIds()) parts.push(`${id}:${cluster.node(id).disk.all().map((m) => `${m.id}@${m.receivedMs}`).join(',')}`);
  let h = 0x811c9dc5;
  for (const p of parts) for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return `${(h >>> 0).toString(16).padStart(8, '0')}-${cluster.scheduler.executedCount}`;
}
