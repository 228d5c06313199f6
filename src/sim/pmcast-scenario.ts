import { analysePmHistory } from './pmcast-history.js';
import type { PmHistoryStats, PmViolation } from './pmcast-history.js';
import { PmCluster } from './pmcast-cluster.js';
import type { CommandOutcome, PmCoordinatorKnobs } from './pmcast-cluster.js';
import type { SimParticipant } from './pmcast-participant.js';
import type { NetworkKnobs } from './network.js';
import { PmFaults } from './pmcast-faults.js';
import { SimRandom } from './random.js';

export interface PmScenarioOptions {
  readonly participantCount?: number;
  readonly tdMs?: number;
  /** Simulated ms the cluster may take to settle after the faults. */
  readonly settleLimitMs?: number;
}

export interface PmScenarioCounts {
  msendsAccepted: number;
  commandsFailed: number;
  retries: number;
  refusedLocally: number;
  coordinatorErrors: number;
  coordinatorCrashes: number;
  participantCrashes: number;
  crashesBetweenWrites: number;
  linesCut: number;
  duplicatesDropped: number;
  streamsBroken: number;
  ackSavesLost: number;
  purged: number;
  redials: number;
  newPorts: number;
}

export interface PmScenarioResult {
  readonly seed: number;
  readonly tdMs: number;
  readonly participantCount: number;
  readonly faultPhaseMs: number;
  /** Simulated ms from the end of the faults until every registered participant was back and caught up. */
  readonly settledMs: number;
  readonly violations: readonly PmViolation[];
  /** What went wrong outside the four guarantees (the cluster did not settle, a purge left old messages, an owed message was gone). */
  readonly problems: readonly string[];
  readonly stats: PmHistoryStats;
  readonly counts: PmScenarioCounts;
  readonly trace: readonly string[];
  readonly fingerprint: string;
}

interface Driver {
  readonly p: SimParticipant;
  /** A command whose answer never came: run it again (a fresh port for register/reconnect) until one comes. */
  retry: 'register' | 'reconnect' | 'deregister' | 'disconnect' | undefined;
  /** While offline: when to send reconnect. */
  reconnectAtMs: number;
  nextPort: number;
  restartPending: boolean;
}

/**
 * One seeded run: a coordinator and 3-10 participants that send random
 * commands valid in their own state (mostly msend; disconnects planned
 * shorter than td, exactly td, within a few ms of it, or longer; deregister
 * and register again; reconnects on new ports), on a network with delay,
 * duplication and reordering, while faults strike: coordinator crashes
 * (restart from its durable store), participant crashes (some between a log
 * line and its state), broken delivery and command streams, partitions,
 * link cuts, loss. Then the faults stop, everything restarts, every
 * registered participant reconnects, deliveries complete, and the history
 * checker judges every participant's log against the four guarantees.
 */
export function runPmcastScenario(seed: number, options: PmScenarioOptions = {}): PmScenarioResult {
  const rng = SimRandom.derived(seed, 'pm-scenario');
  const tdMs = options.tdMs ?? (rng.chance(0.5) ? rng.int(200, 1_000) : rng.int(1_000, 5_000));
  const participantCount = options.participantCount ?? rng.int(3, 10);
  const constantDelay = rng.chance(0.35);
  const delayMsMin = rng.int(0, constantDelay ? 5 : 3);
  const network: Partial<NetworkKnobs> = constantDelay
    ? { delayMsMin, delayMsMax: delayMsMin }
    : {
        delayMsMin,
        delayMsMax: delayMsMin + rng.int(0, 10),
        reorderProbability: rng.chance(0.5) ? rng.range(0, 0.2) : 0,
        reorderDelayMsMax: rng.int(0, 20),
        duplicateProbability: rng.chance(0.5) ? rng.range(0, 0.05) : 0,
      };
  const coordinator: Partial<PmCoordinatorKnobs> = {
    batchMax: rng.pick([1, 4, 64]),
    windowSeqs: rng.pick([1, 8, 256]),
    ackFlushMs: rng.pick([0, 0, 10, 100, 1_000]),
    purgeEveryMs: rng.int(20, 500),
  };
  const diskMsMax = rng.int(0, 3);
  const thinkMsMax = rng.int(100, 600);
  const faultPhaseMs = rng.int(3_000, 6_000) + 3 * tdMs;
  const settleLimitMs = options.settleLimitMs ?? 60_000;
  const ids = Array.from({ length: participantCount }, (_, i) => `p${i}`);
  const cluster = new PmCluster({ seed, tdMs, participantIds: ids, network, coordinator, participant: { diskMsMax }, noticeMsMax: rng.int(0, 30) });
  const net = cluster.net.network;
  const sched = cluster.scheduler;
  const trace: string[] = [];
  const log = (what: string): void => {
    trace.push(`t=${cluster.nowMs} ${what}`);
  };
  const counts: PmScenarioCounts = {
    msendsAccepted: 0, commandsFailed: 0, retries: 0, refusedLocally: 0, coordinatorErrors: 0, coordinatorCrashes: 0, participantCrashes: 0,
    crashesBetweenWrites: 0, linesCut: 0, duplicatesDropped: 0, streamsBroken: 0, ackSavesLost: 0, purged: 0, redials: 0, newPorts: 0,
  };
  log(`${participantCount} participants, td ${tdMs} ms, faults until ${faultPhaseMs} ms, think <= ${thinkMsMax} ms, disk <= ${diskMsMax} ms`);
  log(`network ${JSON.stringify(net.knobs)}; coordinator ${JSON.stringify(coordinator)}`);

  const faults = new PmFaults(cluster, rng, tdMs, log);
  let texts = 0;
  const drivers = new Map<string, Driver>();
  for (const id of ids) {
    const p = cluster.participant(id);
    drivers.set(id, { p, retry: undefined, reconnectAtMs: 0, nextPort: 20_000, restartPending: false });
    const recordCrash = p.onCrash;
    p.onCrash = () => {
      recordCrash();
      log(`${id} crashed${p.log.length > p.saved.logLines ? ` between a log line and its state (${p.log.length} lines, state says ${p.saved.logLines})` : ''}`);
      scheduleRestart(id, rng.int(10, 3_000));
    };
  }

  const scheduleRestart = (id: string, afterMs: number): void => {
    const d = drivers.get(id)!;
    if (d.restartPending) return;
    d.restartPending = true;
    sched.after(afterMs, () => {
      if (faults.over && d.p.running) return;
      d.restartPending = false;
      if (d.p.running) return;
      d.p.start();
      d.retry = undefined;
      d.reconnectAtMs = cluster.nowMs;
      log(`${id} restarted: log ${d.p.log.length} lines, last seq ${d.p.saved.lastSeq}`);
    });
  };

  const port = (d: Driver): number => {
    const last = d.p.receiverPort ?? d.nextPort - 1;
    if (d.nextPort > 20_000 && rng.chance(0.15)) return last;
    counts.newPorts += 1;
    return d.nextPort++;
  };

  const run = (d: Driver, line: string): void => {
    const kind = line.split(' ')[0];
    d.p.command(line, (outcome) => outcomeOf(d, line, outcome));
    if (kind !== 'msend') log(`${d.p.id} > ${line}`);
  };

  const outcomeOf = (d: Driver, line: string, o: CommandOutcome): void => {
    const id = d.p.id;
    if (o.kind === 'invalid' || o.kind === 'refused') {
      counts.refusedLocally += 1;
      d.retry = undefined;
      return;
    }
    const kind = o.command.kind;
    if (o.kind === 'failed') {
      counts.commandsFailed += 1;
      log(`${id} ${line.slice(0, 40)}: no answer`);
      if (kind !== 'msend' && kind !== 'quit') d.retry = kind;
      return;
    }
    if (kind !== 'msend') d.retry = undefined;
    if (o.kind === 'error') {
      counts.coordinatorErrors += 1;
      log(`${id} ${line.slice(0, 40)}: ${o.code} (now ${d.p.status})`);
      if (d.p.status === 'offline') d.reconnectAtMs = cluster.nowMs + rng.int(0, tdMs);
      return;
    }
    if (kind === 'msend') {
      counts.msendsAccepted += 1;
      return;
    }
    log(`${id} ${line}: ok at ${o.result.acceptedMs}`);
    if (kind === 'disconnect') planAbsence(d, o.result.acceptedMs);
  };

  /** Chooses how long to stay away, aiming at the coordinator's clock: shorter than td, exactly td, a few ms either side, or longer. */
  const planAbsence = (d: Driver, disconnectedMs: number): void => {
    const r = rng.float();
    const awayMs = r < 0.3 ? rng.int(0, tdMs - 1) : r < 0.5 ? tdMs : r < 0.65 ? tdMs + rng.pick([-3, -2, -1, 1, 2, 3]) : tdMs + rng.int(1, 2 * tdMs);
    const arriveMs = disconnectedMs + awayMs;
    // A command arrives when its SYN and its data have: exactly delayMsMin later when the delay is constant.
    d.reconnectAtMs = Math.max(cluster.nowMs, arriveMs - delayMsMin);
    log(`${d.p.id} plans ${awayMs} ms away (td ${tdMs}): reconnect to arrive at ${arriveMs}`);
    sched.at(d.reconnectAtMs, () => act(d, false));
    // Now and then someone sends a message to arrive exactly at the edge of its td window.
    const edgeMs = arriveMs - tdMs - delayMsMin;
    if (awayMs > tdMs && edgeMs >= cluster.nowMs && rng.chance(0.6)) {
      sched.at(edgeMs, () => {
        const sender = [...drivers.values()].find((x) => x.p.running && !x.p.busy && x.p.status !== 'unregistered');
        if (!faults.over && sender) run(sender, `msend edge${++texts}.${sender.p.id}`);
      });
    }
  };

  const choose = (d: Driver): string | undefined => {
    if (d.retry) {
      counts.retries += 1;
      return d.retry === 'register' || d.retry === 'reconnect' ? `${d.retry} ${port(d)}` : d.retry;
    }
    const r = rng.float();
    const msend = (): string => `msend m${++texts}.${d.p.id}`;
    switch (d.p.status) {
      case 'unregistered':
        return r < 0.5 ? `register ${port(d)}` : r < 0.55 ? msend() : undefined;
      case 'online':
        return r < 0.74 ? msend() : r < 0.86 ? 'disconnect' : r < 0.89 ? 'deregister' : r < 0.91 ? `reconnect ${port(d)}` : undefined;
      case 'offline':
        if (cluster.nowMs >= d.reconnectAtMs) return `reconnect ${port(d)}`;
        return r < 0.25 ? msend() : r < 0.27 ? 'deregister' : undefined;
    }
  };

  const act = (d: Driver, loop: boolean): void => {
    if (loop && !faults.over) sched.after(rng.int(10, thinkMsMax), () => act(d, true));
    if (faults.over || !d.p.running || d.p.busy) return;
    const line = choose(d);
    if (line) run(d, line);
  };

  // ---- the run ----
  cluster.coordinator.start();
  for (const id of ids) {
    const d = drivers.get(id)!;
    sched.at(rng.chance(0.15) ? rng.int(500, Math.floor(faultPhaseMs / 2)) : rng.int(0, 200), () => {
      d.p.start();
      log(`${id} started`);
      act(d, true);
    });
  }
  const faultCount = rng.int(0, 4) + Math.floor(faultPhaseMs / rng.int(800, 3_000));
  for (let i = 0; i < faultCount; i++) sched.at(rng.int(200, faultPhaseMs - 1), () => faults.inject());
  cluster.runUntil(faultPhaseMs);

  // ---- settle: faults off, everything back, every registered participant reconnects ----
  faults.end();
  for (const d of drivers.values()) {
    if (!d.p.running) {
      d.p.start();
      d.retry = undefined;
      log(`${d.p.id} restarted for the settle: log ${d.p.log.length} lines, last seq ${d.p.saved.lastSeq}`);
    }
  }
  log('faults end: healed, loss 0, everything restarted');
  const settled = (): boolean => {
    const core = cluster.coordinator.core;
    if (!core || !cluster.coordinator.caughtUp()) return false;
    for (const d of drivers.values()) {
      const m = core.member(d.p.id);
      if (!d.p.running || d.p.busy || d.retry || !d.p.diskIdle || d.p.status === 'offline') return false;
      if ((d.p.status === 'online') !== (m?.status === 'online') || (d.p.status === 'unregistered') !== !m) return false;
    }
    return true;
  };
  const settleEnd = faultPhaseMs + settleLimitMs;
  let ok = settled();
  while (!ok && cluster.nowMs < settleEnd) {
    for (const d of drivers.values()) {
      if (!d.p.running || d.p.busy) continue;
      if (d.retry) run(d, choose(d)!);
      else if (d.p.status === 'offline') run(d, `reconnect ${port(d)}`);
    }
    cluster.runFor(50);
    ok = settled();
  }
  const settledMs = cluster.nowMs - faultPhaseMs;
  const problems = cluster.problems.map((p) => `t=${p.atMs} ${p.detail}`);
  if (!ok) problems.push(`not settled ${settleLimitMs} ms after the faults: ${describeUnsettled(cluster)}`);
  log(ok ? `settled ${settledMs} ms after the faults` : 'not settled');

  // Once every member has everything, a purge leaves nothing older than td.
  if (ok) {
    cluster.coordinator.purge();
    const horizon = cluster.nowMs - tdMs;
    const old = [...cluster.coordinator.store.messages.values()].filter((m) => m.acceptedMs < horizon);
    if (old.length > 0) problems.push(`after the final purge the store still holds ${old.length} message(s) older than td (first: seq ${old[0]!.seq} at ${old[0]!.acceptedMs} ms; now ${cluster.nowMs})`);
  }

  const { violations, stats } = analysePmHistory(cluster.history());
  for (const p of cluster.allParticipants()) {
    counts.participantCrashes += p.stats.crashes;
    counts.crashesBetweenWrites += p.stats.crashesBetweenWrites;
    counts.linesCut += p.stats.linesCut;
    counts.duplicatesDropped += p.stats.duplicatesDropped;
  }
  const c = cluster.coordinator.stats;
  Object.assign(counts, { coordinatorCrashes: c.crashes, ackSavesLost: c.ackSavesLost, purged: c.purged, redials: c.redials, streamsBroken: cluster.net.stats.broken });
  return { seed, tdMs, participantCount, faultPhaseMs, settledMs, violations, problems, stats, counts, trace, fingerprint: fingerprint(cluster, trace) };
}

function describeUnsettled(cluster: PmCluster): string {
  const core = cluster.coordinator.core;
  return cluster.allParticipants().map((p) => {
    const m = core?.member(p.id);
    const member = m ? `${m.status} acked ${m.ackedSeq}` : 'not a member';
    return `${p.id}: ${p.running ? p.status : 'down'}${p.busy ? ' busy' : ''}, logged up to ${p.saved.lastSeq}; coordinator: ${member}`;
  }).join('; ') + `; coordinator last seq ${core?.lastSequence ?? 'down'}`;
}

function fingerprint(cluster: PmCluster, trace: readonly string[]): string {
  let h = 0x811c9dc5;
  const mix = (s: string): void => {
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  };
  trace.forEach(mix);
  for (const p of cluster.allParticipants()) mix(`${p.id}:${p.log.join('\u0001')}`);
  return `${(h >>> 0).toString(16).padStart(8, '0')}-${cluster.scheduler.executedCount}`;
}
