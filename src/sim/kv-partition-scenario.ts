import { KV_SIM_EPOCH_MS } from './kv-cluster.js';
import type { KvClockSpec } from './kv-cluster.js';
import type { KvMonitor } from './kv-invariants.js';
import { KV_PARTITION_FIXES, KvPartitionCluster } from './kv-partition-cluster.js';
import type { KvPartitionKnobs, MembershipDelays } from './kv-partition-cluster.js';
import { checkPartitionReads, checkPartitionSettled, kvMonitorOf, PartitionMonitor } from './kv-partition-invariants.js';
import type { Violation } from './invariants.js';
import type { NetworkKnobs, NetworkStats } from './network.js';
import { SimRandom } from './random.js';
import type { StreamStats } from './streams.js';

export interface KvPartitionScenarioOptions {
  readonly nodeCount?: number;
  readonly replicas?: number;
  /** How long after the faults stop the cluster may take to settle (simulated ms). */
  readonly settleLimitMs?: number;
  /**
   * The fixes kv-service/kv-partition have (KV_PARTITION_FIXES: hand-over
   * checks the fingerprint the owners confirmed, apply answers after the
   * commit, a too-far-ahead stamp fails the apply); default true. False: the
   * runtime as it was before them, to show what they prevent.
   */
  readonly fixes?: boolean;
}

export interface KvPartitionScenarioResult {
  readonly seed: number;
  readonly nodeCount: number;
  readonly replicas: number;
  readonly keyCount: number;
  readonly bucketCount: number;
  readonly faultPhaseMs: number;
  /** Simulated ms from the end of the faults until the owners agreed and the hand-overs finished (or the limit). */
  readonly settledMs: number;
  readonly skewMs: number;
  /** Most nodes down at one moment. */
  readonly downMax: number;
  readonly violations: readonly Violation[];
  readonly trace: readonly string[];
  readonly counts: KvMonitor['counts'] & PartitionMonitor['counts'] & {
    readonly keysChecked: number;
    readonly faults: Record<string, number>;
    readonly outcomes: Record<string, number>;
    readonly syncRounds: number;
    readonly applyFailures: number;
    /** Entries an apply request brought to a node that did not own their bucket (the writer's view differed). */
    readonly strayApplies: number;
  };
  readonly network: NetworkStats;
  readonly streams: StreamStats;
  readonly eventsRun: number;
  /** Hash of the trace and every node's disk: equal runs give equal fingerprints. */
  readonly fingerprint: string;
}

const KV_PARTITION_SIM_DEFAULTS_FIXES_OFF = Object.freeze({ handOverChecksFingerprint: false, applyAnswersAfterCommit: false, applyRefusesFuture: false });

const FAULTS = ['crash', 'crash', 'crash-in-turn', 'crash-in-turn', 'conflict-crash', 'conflict-crash', 'flap', 'flap', 'loss', 'clock-step'] as const;
type FaultKind = (typeof FAULTS)[number];

/**
 * One seeded run of the partitioned cache (`replicas: R`): 3-16 nodes, R
 * from 1 to 3 and sometimes at least N (every node owns everything), a small
 * key space so writes conflict, puts, deletes (which read first) and puts
 * with short TTLs at random nodes, owners and non-owners alike, and reads at
 * random nodes, on request connections with delay, duplication, reordering
 * and loss (which breaks the connections, failing the requests on them:
 * a write whose every owner failed is not acknowledged). Faults: crashes,
 * never more than R-1 nodes down at once (some inside a group commit, some
 * of a key's owner right after a write to it), restarts from the disk,
 * membership that is wrong for a while (flap), changing loss, clock steps.
 * Membership follows crashes and restarts after delays, so views differ
 * between nodes for a while. Then the faults stop, every node runs, views
 * complete, and checkPartitionSettled must hold within settleLimitMs, then
 * checkPartitionReads at every node.
 */
export function runKvPartitionScenario(seed: number, options: KvPartitionScenarioOptions = {}): KvPartitionScenarioResult {
  const rng = SimRandom.derived(seed, 'kv-partition-scenario');
  const nodeCount = options.nodeCount ?? (rng.chance(0.6) ? rng.int(3, 8) : rng.int(9, 16));
  const replicas = options.replicas ?? (rng.chance(0.12) ? rng.int(nodeCount, nodeCount + 2) : rng.int(1, 3));
  const ids = Array.from({ length: nodeCount }, (_, i) => `p${i}`);
  const keys = makeKeys(rng, rng.chance(0.3) ? rng.int(1, 4) : rng.int(5, 40));
  // 1024 is the runtime's; with R >= N every node compares every bucket with every other (costly in the sim, the same code path).
  const bucketCount = rng.pick(replicas >= nodeCount ? [1, 2, 8, 64, 256] : [1, 2, 8, 64, 64, 256, 1024]);
  const offsetMaxMs = rng.chance(0.5) ? 100 : 400;
  const drawClock = (): KvClockSpec => ({
    offsetMs: rng.int(-offsetMaxMs, offsetMaxMs),
    driftPpm: rng.chance(0.2) ? rng.int(-5_000, 5_000) : rng.int(-200, 200),
  });
  const clocks = new Map(ids.map((id) => [id, drawClock()]));
  const delayMsMin = rng.int(0, 5);
  const network: Partial<NetworkKnobs> = {
    delayMsMin,
    // Sometimes a slow network: a sync round's answer takes long enough for writes to land meanwhile.
    delayMsMax: delayMsMin + (rng.chance(0.25) ? rng.int(30, 150) : rng.int(0, 30)),
    reorderProbability: rng.chance(0.5) ? rng.range(0, 0.3) : 0,
    reorderDelayMsMax: rng.int(0, 60),
    duplicateProbability: rng.chance(0.5) ? rng.range(0, 0.1) : 0,
    lossProbability: rng.chance(0.3) ? 0 : rng.range(0, 0.02),
  };
  const small = rng.chance(0.3);
  const knobs: KvPartitionKnobs = {
    turnMsMax: rng.int(0, 5),
    syncIntervalMs: rng.chance(0.3) ? 5_000 : rng.int(300, 3_000),
    syncVersionsMax: small ? rng.int(1, 6) : 4_096,
    syncBytesMax: small ? rng.int(60, 400) : 512 * 1024,
    syncTimeoutMs: 30_000,
    requestTimeoutMs: rng.chance(0.7) ? 2_000 : rng.int(100, 2_000),
    dialTimeoutMs: 2_000,
    frameBytesTarget: small ? rng.int(60, 300) : 1024 * 1024,
    pendingWritesMax: rng.chance(0.15) ? rng.int(2, 12) : 200_000,
    handoffWindowMs: 10_000,
    ...(options.fixes === false ? KV_PARTITION_SIM_DEFAULTS_FIXES_OFF : KV_PARTITION_FIXES),
  };
  const membership: MembershipDelays = {
    deadMsMin: rng.int(200, 1_500),
    deadMsMax: rng.int(1_500, 3_000),
    joinMsMin: rng.int(0, 50),
    // Sometimes a node hears a (re)started member seconds after others do: views differ longer.
    joinMsMax: rng.chance(0.3) ? rng.int(1_000, 3_000) : rng.int(50, 1_000),
  };
  const faultPhaseMs = rng.int(3_000, 10_000);
  const burstMax = rng.chance(0.5) ? rng.int(5, 30) : 0;
  const settleLimitMs = options.settleLimitMs ?? 60_000;
  /** At most R-1 nodes down at any moment (and never all). */
  const downBudget = Math.min(replicas, nodeCount) - 1;

  const cluster = new KvPartitionCluster({ seed, ids, bucketCount, replicas, network, knobs, membership, clocks });
  const monitor = kvMonitorOf(cluster);
  const pmon = new PartitionMonitor(cluster, monitor.durableMax);
  const net = cluster.net.network;
  const t0 = KV_SIM_EPOCH_MS;
  const trace: string[] = [];
  const log = (what: string): void => {
    trace.push(`t=${cluster.nowMs - t0} ${what}`);
  };
  const offsets = [...clocks.values()].map((c) => c.offsetMs);
  const skewMs = Math.max(...offsets) - Math.min(...offsets);
  log(`${nodeCount} nodes, R=${replicas}, ${keys.length} keys, ${bucketCount} buckets, faults until ${faultPhaseMs} ms, at most ${downBudget} down; clock skew ${skewMs} ms`);
  log(`clocks ${ids.map((id) => `${id}:${clocks.get(id)!.offsetMs}ms/${clocks.get(id)!.driftPpm}ppm`).join(' ')}`);
  log(`network ${JSON.stringify(net.knobs)}`);
  log(`kv ${JSON.stringify(knobs)}${options.fixes ? ' (with the proposed fixes)' : ''}`);
  log(`membership ${JSON.stringify(membership)}`);

  let faultsOver = false;
  let downMax = 0;
  const faults: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const count = (table: Record<string, number>, what: string): void => {
    table[what] = (table[what] ?? 0) + 1;
  };
  const down = (): number => ids.filter((id) => cluster.node(id).status === 'crashed').length;
  const ownersOf = (id: string, key: string): readonly string[] => {
    const s = cluster.node(id).service!;
    return s.owners.owners(s.replica.bucketOf(key));
  };

  const randomRunning = (): string | undefined => {
    const live = cluster.runningIds();
    return live.length === 0 ? undefined : rng.pick(live);
  };
  const value = (): Uint8Array => {
    const length = rng.chance(0.1) ? rng.int(100, 400) : rng.int(0, 24);
    return Uint8Array.from({ length }, () => rng.int(0, 255));
  };
  /** One client operation at `id`: a put, a delete (which reads first), or a put with a short TTL. */
  const writeAt = (id: string | undefined, key = rng.pick(keys)): void => {
    if (faultsOver || !id || cluster.node(id).status !== 'running') return;
    const owners = ownersOf(id, key).join(',');
    const r = rng.float();
    if (r < 0.25) {
      log(`del ${JSON.stringify(key)} at ${id} (owners ${owners})`);
      cluster.del(id, key, (outcome, e) => {
        count(outcomes, `del-${outcome}`);
        log(`del ${JSON.stringify(key)} at ${id}: ${outcome}${e ? ` hlc ${e.hlc}` : ''}`);
      });
      return;
    }
    const ttlMs = r < 0.45 ? rng.int(1, 3_000) : 0;
    const e = cluster.put(id, key, value(), ttlMs, (outcome) => {
      count(outcomes, `put-${outcome}`);
      if (outcome !== 'acknowledged') log(`put ${JSON.stringify(key)} at ${id}: ${outcome}`);
    });
    log(`put ${JSON.stringify(key)} at ${id}${ttlMs ? ` ttl ${ttlMs}` : ''} (owners ${owners}): ${e ? `hlc ${e.hlc}` : 'refused'}`);
  };
  const readAt = (id: string | undefined): void => {
    if (faultsOver || !id || cluster.node(id).status !== 'running') return;
    const some = rng.shuffle(keys).slice(0, rng.int(1, 4));
    cluster.read(id, some, () => count(outcomes, 'read'));
  };
  /** Writes at random nodes while views follow a membership change (the owners move meanwhile). */
  const burst = (): void => {
    const n = rng.int(0, burstMax);
    for (let i = 0; i < n; i++) cluster.scheduler.after(rng.int(0, 1_500), () => writeAt(randomRunning()));
  };
  const restart = (id: string): void => {
    if (faultsOver || cluster.node(id).status === 'running') return;
    if (rng.chance(0.3)) stepClock(id);
    cluster.start(id);
    log(`restart ${id} with ${cluster.node(id).disk.size} keys on disk`);
    burst();
  };
  const stepClock = (id: string): void => {
    const clock = drawClock();
    cluster.setClock(id, clock);
    log(`clock of ${id} stepped to ${clock.offsetMs} ms, ${clock.driftPpm} ppm`);
  };
  /** Crashes `id` if the budget allows; false when it does not. */
  const crash = (id: string, why: string): boolean => {
    if (cluster.node(id).status !== 'running' || down() >= downBudget) return false;
    const pending = cluster.node(id).service!.pendingCount;
    cluster.crash(id);
    downMax = Math.max(downMax, down());
    log(`crash ${id}${why} with ${pending} uncommitted (${down()} down)`);
    if (rng.chance(0.85)) cluster.scheduler.after(rng.int(5, 4_000), () => restart(id));
    return true;
  };

  cluster.addListener({
    onHandOver: (id, bucket, handed, owners) => log(`${id} handed bucket ${bucket} (${handed.length} keys: ${handed.slice(0, 4).map((k) => JSON.stringify(k)).join(',')}${handed.length > 4 ? ',...' : ''}) over to ${owners.join(',')}`),
  });

  const inject = (): void => {
    if (faultsOver) return;
    const kind: FaultKind = rng.pick(FAULTS);
    if (kind === 'crash') {
      const id = randomRunning();
      if (id && crash(id, '')) count(faults, kind);
    } else if (kind === 'crash-in-turn') {
      // Writes at a node, then a crash of it (maybe before its commit) or of
      // one of the key's owners (maybe while it applies them) a moment later.
      const id = randomRunning();
      if (!id || downBudget === 0) return;
      count(faults, kind);
      const key = rng.pick(keys);
      const burst = rng.int(1, 4);
      for (let i = 0; i < burst; i++) writeAt(id, key);
      const victim = rng.pick([id, ...ownersOf(id, key)]);
      if (victim === id && rng.chance(0.5)) {
        crash(id, ' in its own turn');
        return;
      }
      cluster.scheduler.after(rng.int(0, knobs.turnMsMax + network.delayMsMax!), () => {
        if (!faultsOver) crash(victim, ` shortly after writes of ${JSON.stringify(key)} at ${id}`);
      });
    } else if (kind === 'flap') {
      const id = randomRunning();
      if (!id) return;
      count(faults, kind);
      const others = rng.shuffle(cluster.runningIds().filter((o) => o !== id));
      const observers = others.slice(0, rng.int(1, Math.max(1, others.length)));
      const durationMs = rng.int(200, 3_000);
      const symmetric = rng.chance(0.5);
      cluster.flap(id, observers, durationMs, symmetric);
      log(`flap: ${observers.join(',')} count ${id} dead for ${durationMs} ms${symmetric ? ' (and it them)' : ''}`);
      burst();
      cluster.scheduler.after(durationMs, burst);
    } else if (kind === 'conflict-crash') {
      // Several nodes write one key at once, then one of its owners dies a moment
      // later: maybe with some of them applied but not committed.
      const writers = rng.shuffle(cluster.runningIds()).slice(0, rng.int(2, 4));
      if (writers.length === 0 || downBudget === 0) return;
      count(faults, kind);
      const key = rng.pick(keys);
      log(`conflict on ${JSON.stringify(key)} at ${writers.join(',')}, then an owner crashes`);
      for (const id of writers) writeAt(id, key);
      const victim = rng.pick(ownersOf(rng.pick(writers), key));
      cluster.scheduler.after(rng.int(0, knobs.turnMsMax + 2 * network.delayMsMax!), () => {
        if (!faultsOver) crash(victim, ` after the conflict on ${JSON.stringify(key)}`);
      });
    } else if (kind === 'loss') {
      count(faults, kind);
      const lossProbability = rng.chance(0.3) ? 0 : rng.range(0, 0.03);
      net.setKnobs({ lossProbability });
      log(`loss ${lossProbability.toFixed(4)}`);
    } else {
      count(faults, kind);
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
  const writeCount = rng.chance(0.4) ? rng.int(150, 500) : rng.int(20, 150);
  for (let i = 0; i < writeCount; i++) cluster.scheduler.at(t0 + rng.int(50, faultPhaseMs - 1), () => writeAt(randomRunning()));
  const conflictCount = rng.int(1, 8);
  for (let i = 0; i < conflictCount; i++) {
    cluster.scheduler.at(t0 + rng.int(50, faultPhaseMs - 1), () => {
      const key = rng.pick(keys);
      const writers = rng.shuffle(cluster.runningIds()).slice(0, rng.int(2, 5));
      log(`conflict on ${JSON.stringify(key)} at ${writers.join(',')}`);
      for (const id of writers) writeAt(id, key);
    });
  }
  const readCount = rng.int(10, 60);
  for (let i = 0; i < readCount; i++) cluster.scheduler.at(t0 + rng.int(50, faultPhaseMs - 1), () => readAt(randomRunning()));
  const faultCount = rng.int(0, 12);
  for (let i = 0; i < faultCount; i++) cluster.scheduler.at(t0 + rng.int(100, faultPhaseMs - 1), inject);
  cluster.scheduler.at(t0 + faultPhaseMs, () => {
    faultsOver = true;
    net.setKnobs({ lossProbability: 0 });
    // A request timeout below the network's round trip (some seeds) fails every read: back to the runtime's.
    cluster.setKnobs({ requestTimeoutMs: 2_000 });
    for (const id of ids) if (cluster.node(id).status !== 'running') cluster.start(id);
    log('faults end: loss 0, request timeout 2 s, every node running (views follow)');
  });
  cluster.runUntil(t0 + faultPhaseMs);

  // Settled: the check holds, and still holds a second later (a frame a round sent before may still be on its way).
  let report = checkPartitionSettled(cluster, monitor);
  let settledAtMs = report.violations.length === 0 ? cluster.nowMs : undefined;
  while (cluster.nowMs < t0 + faultPhaseMs + settleLimitMs) {
    if (settledAtMs !== undefined && cluster.nowMs - settledAtMs >= 1_000) break;
    cluster.runFor(250);
    report = checkPartitionSettled(cluster, monitor);
    if (report.violations.length > 0) settledAtMs = undefined;
    else settledAtMs ??= cluster.nowMs;
  }
  const settledMs = (settledAtMs ?? cluster.nowMs) - t0 - faultPhaseMs;
  log(report.violations.length === 0 ? `settled ${settledMs} ms after the faults` : `not settled within ${settleLimitMs} ms`);

  const late: Violation[] = [...report.violations];
  if (report.violations.length === 0) {
    // Reads once no TTL is pending on any clock (their expiry is each node's own view of time).
    const expiresMax = Math.max(0, ...[...monitor.written.values()].map((w) => w.entry.expiresMs));
    for (let lagMs = 1; lagMs > 0; ) {
      lagMs = Math.max(0, ...ids.map((id) => expiresMax + 1 - cluster.wallMs(id)));
      if (lagMs > 0) cluster.runFor(Math.max(lagMs, 10));
    }
    late.push(...checkPartitionReads(cluster, monitor, keys, 10_000));
    // Reading moved nothing.
    late.push(...checkPartitionSettled(cluster, monitor).violations);
    log(`read every key at every node ${cluster.nowMs - t0 - faultPhaseMs} ms after the faults`);
  }

  let syncRounds = 0;
  let applyFailures = 0;
  let strayApplies = 0;
  for (const id of ids) {
    const s = cluster.node(id).service;
    strayApplies += s?.stats.strayApplies ?? 0;
    syncRounds += s?.stats.syncRounds ?? 0;
    applyFailures += s?.owners.stats.applyFailures ?? 0;
  }
  return {
    seed, nodeCount, replicas, keyCount: keys.length, bucketCount, faultPhaseMs, settledMs, skewMs, downMax, trace,
    violations: [...monitor.violations, ...pmon.violations, ...late],
    counts: { ...monitor.counts, ...pmon.counts, keysChecked: report.keys, faults, outcomes, syncRounds, applyFailures, strayApplies },
    network: net.stats, streams: cluster.net.stats, eventsRun: cluster.scheduler.executedCount,
    fingerprint: fingerprint(cluster, trace),
  };
}

/** A few keys, some of them bytes outside ASCII (keys are latin1 strings, one char per byte). */
function makeKeys(rng: SimRandom, count: number): string[] {
  const keys = new Set<string>();
  while (keys.size < count) {
    keys.add(rng.chance(0.8) ? `k${keys.size}` : String.fromCharCode(...Array.from({ length: rng.int(1, 4) }, () => rng.int(0, 255))));
  }
  return [...keys];
}

function fingerprint(cluster: KvPartitionCluster, trace: readonly string[]): string {
  const parts = [...trace];
  for (const id of cluster.nodeIds()) parts.push(`${id}:${cluster.node(id).disk.all().map((e) => `${e.key}@${e.hlc}/${e.node}`).join(',')}`);
  let h = 0x811c9dc5;
  for (const p of parts) for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return `${(h >>> 0).toString(16).padStart(8, '0')}-${cluster.scheduler.executedCount}`;
}
