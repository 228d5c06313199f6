import type { Endpoint } from '../core/address.js';
import { NetFaults } from './net-faults.js';
import { KV_SIM_EPOCH_MS, KvCluster } from './kv-cluster.js';
import type { KvClockSpec, KvSimKnobs } from './kv-cluster.js';
import { checkKvConverged, KvMonitor } from './kv-invariants.js';
import type { Violation } from './invariants.js';
import type { NetworkKnobs, NetworkStats } from './network.js';
import { SimRandom } from './random.js';
import type { StreamStats } from './streams.js';

export interface KvScenarioOptions {
  readonly nodeCount?: number;
  /** How long after the faults stop the cluster may take to converge (simulated ms). */
  readonly settleLimitMs?: number;
  /**
   * Default true, as kv-service.ts does: the turn's writes are committed
   * before an anti-entropy answer or push can carry them. False shows what
   * that prevents (before the fix, an uncommitted write reached a peer, died
   * with its node, and its version was stamped again after the restart:
   * seeds 168 and 211); the persisted clock ceiling now also prevents the
   * re-stamping.
   */
  readonly commitBeforeServing?: boolean;
}

export interface KvScenarioResult {
  readonly seed: number;
  readonly nodeCount: number;
  readonly keyCount: number;
  readonly bucketCount: number;
  readonly faultPhaseMs: number;
  /** Simulated ms from the end of the faults until the replicas agreed (or the limit). */
  readonly settledMs: number;
  /** Largest difference between two nodes' wall clocks at the start, ms. */
  readonly skewMs: number;
  readonly violations: readonly Violation[];
  readonly trace: readonly string[];
  readonly counts: KvMonitor['counts'] & { readonly keysChecked: number; readonly unackedSurvivors: number; readonly faults: Record<string, number> };
  readonly network: NetworkStats;
  readonly streams: StreamStats;
  readonly eventsRun: number;
  /** Hash of the trace and every node's disk: equal runs give equal fingerprints. */
  readonly fingerprint: string;
}

const FAULTS = ['partition', 'partition', 'cut', 'crash', 'crash', 'crash-in-turn', 'crash-in-turn', 'crash-in-turn', 'loss', 'clock-step'] as const;
type FaultKind = (typeof FAULTS)[number];

/**
 * One seeded cache run: 3-32 nodes with wall clocks up to 500 ms apart
 * (some drifting), a small key space so writes conflict, concurrent puts,
 * deletes and puts with short TTLs at random nodes (some at the same
 * moment on the same key), on a network with delay, duplication,
 * reordering and loss (which breaks TCP connections), and faults:
 * partitions that heal, a node's links cut, crashes with restart from the
 * disk (some in the middle of a group commit, some with the clock stepped),
 * changing loss. Then the faults stop, every node runs again, and the
 * replicas must converge within settleLimitMs to what checkKvConverged says.
 */
export function runKvScenario(seed: number, options: KvScenarioOptions = {}): KvScenarioResult {
  const rng = SimRandom.derived(seed, 'kv-scenario');
  const nodeCount = options.nodeCount ?? (rng.chance(0.7) ? rng.int(3, 10) : rng.int(11, 32));
  const nodes = makeNodes(rng, nodeCount);
  const ids = nodes.map((n) => n.id);
  const keys = makeKeys(rng, rng.chance(0.5) ? rng.int(1, 4) : rng.int(5, 16));
  const bucketCount = rng.pick([1, 2, 8, 64, 1024]);
  const offsetMaxMs = rng.chance(0.5) ? 250 : 500;
  const drawClock = (): KvClockSpec => ({
    offsetMs: rng.int(-offsetMaxMs, offsetMaxMs),
    driftPpm: rng.chance(0.3) ? rng.int(-20_000, 20_000) : rng.int(-200, 200),
  });
  const clocks = new Map(ids.map((id) => [id, drawClock()]));
  const delayMsMin = rng.int(0, 5);
  const network: Partial<NetworkKnobs> = {
    delayMsMin,
    delayMsMax: delayMsMin + rng.int(0, 30),
    reorderProbability: rng.chance(0.5) ? rng.range(0, 0.3) : 0,
    reorderDelayMsMax: rng.int(0, 60),
    duplicateProbability: rng.chance(0.5) ? rng.range(0, 0.1) : 0,
    lossProbability: rng.chance(0.3) ? 0 : rng.range(0, 0.02),
  };
  const small = rng.chance(0.4);
  const knobs: KvSimKnobs = {
    turnMsMax: rng.int(0, 5),
    idleSyncIntervalMs: rng.int(500, 3_000),
    syncVersionsMax: small ? rng.int(1, 6) : 50_000,
    syncBytesMax: small ? rng.int(60, 400) : 2 * 1024 * 1024,
    syncTimeoutMs: 30_000,
    frameBytesTarget: small ? rng.int(60, 300) : 1024 * 1024,
    pendingWritesMax: rng.chance(0.2) ? rng.int(2, 12) : 200_000,
    redialMsMin: 20,
    redialMsMax: rng.int(50, 500),
    viewRefreshMsMin: 200,
    viewRefreshMsMax: rng.int(300, 1_000),
    commitBeforeServing: options.commitBeforeServing ?? true,
    // 0: even views that just changed (and may differ between nodes) are trusted.
    overlayTrustAfterMs: rng.pick([0, 300, 5_000, Infinity]),
  };
  // Some runs kill a node right after an anti-entropy frame carried one of its
  // own writes that was not committed yet (the turn's commit never happens).
  const crashWhenServingProbability = rng.chance(0.3) ? rng.range(0.2, 1) : 0;
  const faultPhaseMs = rng.int(3_000, 10_000);
  const settleLimitMs = options.settleLimitMs ?? 60_000;

  const cluster = new KvCluster({ seed, nodes, bucketCount, network, knobs, clocks });
  const monitor = new KvMonitor(cluster);
  const net = cluster.net.network;
  const t0 = KV_SIM_EPOCH_MS;
  const trace: string[] = [];
  const log = (what: string): void => {
    trace.push(`t=${cluster.nowMs - t0} ${what}`);
  };
  const offsets = [...clocks.values()].map((c) => c.offsetMs);
  const skewMs = Math.max(...offsets) - Math.min(...offsets);
  log(`${nodeCount} nodes, ${keys.length} keys, ${bucketCount} buckets, faults until ${faultPhaseMs} ms; clock skew ${skewMs} ms`);
  log(`clocks ${ids.map((id) => `${id}:${clocks.get(id)!.offsetMs}ms/${clocks.get(id)!.driftPpm}ppm`).join(' ')}`);
  log(`network ${JSON.stringify(net.knobs)}`);
  log(`kv ${JSON.stringify(knobs)}`);

  let faultsOver = false;
  const netFaults = new NetFaults(net, cluster.scheduler, rng, log, () => faultsOver);
  const faults: Record<string, number> = {};

  const randomRunning = (): string | undefined => {
    const live = cluster.runningIds();
    return live.length === 0 ? undefined : rng.pick(live);
  };
  const value = (): Uint8Array => {
    const length = rng.chance(0.1) ? rng.int(100, 400) : rng.int(0, 24);
    return Uint8Array.from({ length }, () => rng.int(0, 255));
  };
  /** One client operation at `id`: a put, a delete, or a put with a short TTL. */
  const writeAt = (id: string | undefined, key = rng.pick(keys)): void => {
    if (!id || cluster.node(id).status !== 'running') return;
    const r = rng.float();
    if (r < 0.25) {
      const e = cluster.del(id, key);
      log(`del ${JSON.stringify(key)} at ${id}: ${e ? `hlc ${e.hlc}` : 'nothing to delete or refused'}`);
      return;
    }
    const ttlMs = r < 0.45 ? rng.int(1, 3_000) : 0;
    const e = cluster.put(id, key, value(), ttlMs);
    log(`put ${JSON.stringify(key)} at ${id}${ttlMs ? ` ttl ${ttlMs}` : ''}: ${e ? `hlc ${e.hlc}` : 'refused'}`);
  };
  const restart = (id: string): void => {
    if (faultsOver || cluster.node(id).status === 'running') return;
    if (rng.chance(0.3)) stepClock(id);
    cluster.start(id);
    log(`restart ${id} with ${cluster.node(id).disk.size} keys on disk`);
  };
  const stepClock = (id: string): void => {
    const clock = drawClock();
    cluster.setClock(id, clock);
    log(`clock of ${id} stepped to ${clock.offsetMs} ms, ${clock.driftPpm} ppm`);
  };
  const crash = (id: string, why: string, restartMsMax = 3_000): void => {
    const pending = cluster.node(id).service!.pendingCount;
    cluster.crash(id);
    log(`crash ${id}${why} with ${pending} uncommitted`);
    if (rng.chance(0.85)) cluster.scheduler.after(rng.int(5, restartMsMax), () => restart(id));
  };

  cluster.addListener({
    onServedUncommitted: (id, peer, entries) => {
      if (faultsOver || !entries.some((e) => e.node === id) || !rng.chance(crashWhenServingProbability)) return;
      faults['crash-when-serving'] = (faults['crash-when-serving'] ?? 0) + 1;
      // A quick restart: while its HLC may still be ahead of its wall clock.
      crash(id, ` right after sending ${peer} ${entries.length} uncommitted entr${entries.length === 1 ? 'y' : 'ies'}`, 300);
    },
  });

  const inject = (): void => {
    if (faultsOver) return;
    const kind: FaultKind = rng.pick(FAULTS);
    faults[kind] = (faults[kind] ?? 0) + 1;
    if (kind === 'partition') {
      netFaults.partition(ids, 300, 5_000);
    } else if (kind === 'cut') {
      netFaults.cut(ids, 200, 4_000);
    } else if (kind === 'crash') {
      const id = randomRunning();
      if (id) crash(id, '');
    } else if (kind === 'crash-in-turn') {
      // Writes at a node, then a crash of it (maybe before its commit) or of a
      // neighbour (maybe while it applies them) within a few turns and hops.
      const id = randomRunning();
      if (!id) return;
      const burst = rng.int(1, 5);
      for (let i = 0; i < burst; i++) writeAt(id);
      const victims = [id, ...cluster.node(id).neighbourIds];
      const victim = rng.pick(victims);
      if (victim === id && rng.chance(0.5)) return crash(id, ' in its own turn');
      cluster.scheduler.after(rng.int(0, knobs.turnMsMax + network.delayMsMax!), () => {
        if (!faultsOver && cluster.node(victim).status === 'running') crash(victim, ' shortly after writes');
      });
    } else if (kind === 'loss') {
      const lossProbability = rng.chance(0.3) ? 0 : rng.range(0, 0.03);
      net.setKnobs({ lossProbability });
      log(`loss ${lossProbability.toFixed(4)}`);
    } else {
      stepClock(rng.pick(ids));
    }
  };

  for (const id of ids) {
    const atMs = rng.chance(0.1) ? rng.int(500, faultPhaseMs - 1) : rng.int(0, 300);
    cluster.scheduler.at(t0 + atMs, () => {
      if (cluster.node(id).status !== 'idle') return;
      cluster.start(id);
      log(`start ${id}`);
    });
  }
  const writeCount = rng.int(20, 150);
  for (let i = 0; i < writeCount; i++) cluster.scheduler.at(t0 + rng.int(50, faultPhaseMs - 1), () => writeAt(randomRunning()));
  // Conflicts on purpose: several nodes write one key at the same moment.
  const conflictCount = rng.int(1, 10);
  for (let i = 0; i < conflictCount; i++) {
    cluster.scheduler.at(t0 + rng.int(50, faultPhaseMs - 1), () => {
      const key = rng.pick(keys);
      const writers = rng.shuffle(cluster.runningIds()).slice(0, rng.int(2, 5));
      log(`conflict on ${JSON.stringify(key)} at ${writers.join(',')}`);
      for (const id of writers) writeAt(id, key);
    });
  }
  const faultCount = rng.int(0, 14);
  for (let i = 0; i < faultCount; i++) cluster.scheduler.at(t0 + rng.int(100, faultPhaseMs - 1), inject);
  cluster.scheduler.at(t0 + faultPhaseMs, () => {
    faultsOver = true;
    net.heal();
    for (const id of ids) net.restoreLink(id);
    net.setKnobs({ lossProbability: 0 });
    for (const id of ids) if (cluster.node(id).status !== 'running') cluster.start(id);
    log('faults end: healed, links restored, loss 0, every node running');
  });
  cluster.runUntil(t0 + faultPhaseMs);

  let report = checkKvConverged(cluster, monitor);
  while (report.violations.length > 0 && cluster.nowMs < t0 + faultPhaseMs + settleLimitMs) {
    cluster.runFor(250);
    report = checkKvConverged(cluster, monitor);
  }
  const settledMs = cluster.nowMs - t0 - faultPhaseMs;
  log(report.violations.length === 0 ? `converged ${settledMs} ms after the faults` : `not converged within ${settleLimitMs} ms`);

  // Writes never acknowledged that survive: they left their node before its commit (served uncommitted).
  const survivors = cluster.node(ids[0]!).service?.replica;
  let unackedSurvivors = 0;
  for (const w of monitor.written.values()) {
    const held = survivors?.raw(w.entry.key);
    if (!w.acked && held && held.hlc === w.entry.hlc && held.node === w.entry.node) unackedSurvivors += 1;
  }

  return {
    seed, nodeCount, keyCount: keys.length, bucketCount, faultPhaseMs, settledMs, skewMs, trace,
    violations: [...monitor.violations, ...report.violations],
    counts: { ...monitor.counts, keysChecked: report.keys, unackedSurvivors, faults },
    network: net.stats, streams: cluster.net.stats, eventsRun: cluster.scheduler.executedCount,
    fingerprint: fingerprint(cluster, trace),
  };
}

/** Ids c0..c(N-1) on a few hosts, so the ring orders some by port. */
function makeNodes(rng: SimRandom, count: number): Endpoint[] {
  const hosts = Array.from({ length: rng.int(1, count) }, () => `10.77.${rng.int(0, 3)}.${rng.int(1, 254)}`);
  return Array.from({ length: count }, (_, i) => ({ id: `c${i}`, host: rng.pick(hosts), port: 7_000 + 100 * rng.int(0, 9) + i }));
}

/** A few keys, some of them bytes outside ASCII (keys are latin1 strings, one char per byte). */
function makeKeys(rng: SimRandom, count: number): string[] {
  const keys = new Set<string>();
  while (keys.size < count) {
    keys.add(rng.chance(0.8) ? `k${keys.size}` : String.fromCharCode(...Array.from({ length: rng.int(1, 4) }, () => rng.int(0, 255))));
  }
  return [...keys];
}

function fingerprint(cluster: KvCluster, trace: readonly string[]): string {
  const parts = [...trace];
  for (const id of cluster.nodeIds()) parts.push(`${id}:${cluster.node(id).disk.all().map((e) => `${e.key}@${e.hlc}/${e.node}`).join(',')}`);
  let h = 0x811c9dc5;
  for (const p of parts) for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return `${(h >>> 0).toString(16).padStart(8, '0')}-${cluster.scheduler.executedCount}`;
}
