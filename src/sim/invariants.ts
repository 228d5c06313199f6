import type { BeaconInfo, Member, MembershipEvent } from '../core/membership.js';
import { ringNeighbours } from '../core/ring.js';
import type { ClusterListener, LifecycleChange, MembershipCluster } from './membership-cluster.js';

export interface Violation {
  readonly atMs: number;
  readonly invariant: string;
  readonly detail: string;
}

/** Ignore reasons a healthy simulated cluster can produce; any other one is a bug. */
const EXPECTED_IGNORES: ReadonlySet<string> = new Set(['own_beacon', 'stale']);

/**
 * Checks that must hold at every moment of a run, faults or not:
 * - incarnations an observer sees for a member never go back, and are never
 *   higher than the member ever used (no invented incarnations, no ghosts);
 * - no member was last heard in the future (that would delay its detection);
 * - `dead` for reason `left` only for an incarnation that really left;
 * - a timeout (suspect or dead) needs silence: no beacon of that member's
 *   incarnation reached the observer within suspectAfterMs / deadAfterMs;
 * - no false positive: a `dead` by timeout is only allowed when the
 *   member's beacons to that observer were really held up within the last
 *   deadAfterMs plus the network delay (a drop, a crash or restart, a stall
 *   too long to bridge);
 * - the core reports a stall of its own event loop only when there was one;
 * - no beacon is ignored for a reason other than own beacon or stale.
 */
export class SafetyMonitor implements ClusterListener {
  readonly violations: Violation[] = [];
  /** How much the run exercised: deaths of members that were in fact running had to be explained by a fault. */
  readonly counts = { suspect: 0, recovered: 0, deadByTimeout: 0, deadOfRunningMember: 0 };
  private readonly violationsMax = 50;
  /** `observer#instance` -> member id -> highest incarnation seen by that instance. */
  private readonly seen = new Map<string, Map<string, number>>();
  private readonly instance = new Map<string, number>();
  private readonly highestIncarnation = new Map<string, number>();
  /** `from>to` -> last time a copy between them did not arrive. */
  private readonly lastDropMs = new Map<string, number>();
  /** Member id -> end of its latest stall long enough to explain a death. */
  private readonly longStallUntilMs = new Map<string, number>();
  private readonly lastStallEndMs = new Map<string, number>();
  /** `from@incarnation>to` -> last time such a beacon reached `to`. */
  private readonly lastArrivalMs = new Map<string, number>();

  constructor(private readonly cluster: MembershipCluster) {
    cluster.addListener(this);
  }

  onDrop(from: string, to: string, _reason: string, nowMs: number): void {
    this.lastDropMs.set(`${from}>${to}`, nowMs);
  }

  onArrival(to: string, from: string, beacon: BeaconInfo, nowMs: number): void {
    if (!beacon.leaving && from !== to) this.lastArrivalMs.set(`${from}@${beacon.incarnation}>${to}`, nowMs);
  }

  onLifecycle(nodeId: string, change: LifecycleChange): void {
    if (change.kind === 'start') {
      this.instance.set(nodeId, (this.instance.get(nodeId) ?? 0) + 1);
      this.highestIncarnation.set(nodeId, Math.max(change.incarnation, this.highestIncarnation.get(nodeId) ?? 0));
    } else if (change.kind === 'stall') {
      this.lastStallEndMs.set(nodeId, change.untilMs);
      if (change.untilMs - change.sinceMs >= this.stallExcuseMs()) {
        this.longStallUntilMs.set(nodeId, Math.max(change.untilMs, this.longStallUntilMs.get(nodeId) ?? 0));
      }
    }
  }

  onEvents(observer: string, events: readonly MembershipEvent[], nowMs: number): void {
    for (const e of events) {
      switch (e.type) {
        case 'ignored':
          if (!EXPECTED_IGNORES.has(e.reason)) this.fail(nowMs, 'no-unexpected-ignore', `${observer} ignored a beacon of ${e.id}: ${e.reason}`);
          break;
        case 'stall':
          if (this.lastStallEndMs.get(observer) !== nowMs) {
            this.fail(nowMs, 'no-spurious-stall', `${observer} reported a ${e.stalledMs} ms stall of its event loop, but it was not stalled`);
          }
          // The stall compensation moves every lastHeardMs: look at them all.
          for (const m of this.cluster.node(observer).membership?.members() ?? []) if (!m.self) this.checkMember(observer, m, nowMs);
          break;
        case 'forgotten':
          break;
        default:
          this.checkMember(observer, e.member, nowMs);
          if (e.type === 'restarted' && !(e.previousIncarnation < e.member.incarnation)) {
            this.fail(nowMs, 'incarnation-monotonic', `${observer}: restart of ${e.member.id} from ${e.previousIncarnation} to ${e.member.incarnation}`);
          }
          if (e.type === 'suspect') {
            this.counts.suspect += 1;
            this.checkSilence(observer, e.member, this.cluster.config.suspectAfterMs, nowMs);
          }
          if (e.type === 'recovered') this.counts.recovered += 1;
          if (e.type === 'dead' && e.reason === 'left' && !this.cluster.node(e.member.id).leftIncarnations.has(e.member.incarnation)) {
            this.fail(nowMs, 'left-only-if-left', `${observer} says ${e.member.id}@${e.member.incarnation} left; it did not`);
          }
          if (e.type === 'dead' && e.reason === 'timeout') this.checkDeath(observer, e.member, nowMs);
      }
    }
  }

  /** Checks and records one member as an observer sees it now (also used by the convergence check). */
  checkMember(observer: string, m: Member, nowMs: number): void {
    const highest = this.highestIncarnation.get(m.id);
    if (highest === undefined) {
      this.fail(nowMs, 'no-ghosts', `${observer} lists ${m.id}@${m.incarnation}, which never ran`);
      return;
    }
    if (m.lastHeardMs > nowMs) this.fail(nowMs, 'no-future-evidence', `${observer} last heard ${m.id} at ${m.lastHeardMs}, after now`);
    if (m.incarnation > highest) this.fail(nowMs, 'no-invented-incarnation', `${observer} lists ${m.id}@${m.incarnation}; its highest is ${highest}`);
    const key = `${observer}#${this.instance.get(observer) ?? 0}`;
    let table = this.seen.get(key);
    if (!table) this.seen.set(key, (table = new Map()));
    const before = table.get(m.id) ?? Number.NEGATIVE_INFINITY;
    if (m.incarnation < before) this.fail(nowMs, 'incarnation-monotonic', `${observer} saw ${m.id} go back from ${before} to ${m.incarnation}`);
    else table.set(m.id, m.incarnation);
  }

  /**
   * The shortest stall of a sender that can explain a death: a shorter one
   * leaves a gap between its beacons' arrivals (stall + one jittered
   * heartbeat + delay spread) below deadAfterMs.
   */
  stallExcuseMs(): number {
    const k = this.cluster.network.knobs;
    const spreadMs = k.delayMsMax + k.reorderDelayMsMax - k.delayMsMin;
    return this.cluster.config.deadAfterMs - 1.1 * this.cluster.config.heartbeatIntervalMs - spreadMs;
  }

  /** A timeout needs that much silence: no beacon of that incarnation may have arrived within it. */
  private checkSilence(observer: string, m: Member, silenceMs: number, nowMs: number): void {
    const arrivedMs = this.lastArrivalMs.get(`${m.id}@${m.incarnation}>${observer}`);
    if (arrivedMs !== undefined && arrivedMs > nowMs - silenceMs) {
      this.fail(nowMs, 'timeout-needs-silence', `${observer} timed ${m.id}@${m.incarnation} out (${m.state}), but heard it at ${arrivedMs}`);
    }
  }

  private checkDeath(observer: string, m: Member, nowMs: number): void {
    this.counts.deadByTimeout += 1;
    this.checkSilence(observer, m, this.cluster.config.deadAfterMs, nowMs);
    const subject = this.cluster.node(m.id);
    // Another incarnation, or a node that is down, is rightly dead.
    if (subject.status !== 'running' || subject.incarnation !== m.incarnation) return;
    this.counts.deadOfRunningMember += 1;
    const k = this.cluster.network.knobs;
    const windowStartMs = nowMs - this.cluster.config.deadAfterMs - k.delayMsMax - k.reorderDelayMsMax;
    if ((this.lastDropMs.get(`${m.id}>${observer}`) ?? Number.NEGATIVE_INFINITY) >= windowStartMs) return;
    if ((this.longStallUntilMs.get(m.id) ?? Number.NEGATIVE_INFINITY) >= windowStartMs) return;
    this.fail(nowMs, 'no-false-positive', `${observer} declared ${m.id}@${m.incarnation} dead, but every beacon it sent since ${windowStartMs} was delivered`);
  }

  private fail(atMs: number, invariant: string, detail: string): void {
    if (this.violations.length < this.violationsMax) this.violations.push({ atMs, invariant, detail });
  }
}

/**
 * The state a quiet cluster must reach (call after faults stop and a settle
 * time): every running node lists every other running node alive at its
 * current incarnation; every stopped node is dead or forgotten; each running
 * node's ring neighbours are those of the global set of running nodes.
 */
export function checkConverged(cluster: MembershipCluster, monitor?: SafetyMonitor): Violation[] {
  const out: Violation[] = [];
  const nowMs = cluster.nowMs;
  const fail = (invariant: string, detail: string): void => {
    out.push({ atMs: nowMs, invariant, detail });
  };
  const running = cluster.running();
  for (const self of running) {
    const m = cluster.node(self.id).membership!;
    for (const member of m.members()) if (!member.self) monitor?.checkMember(self.id, member, nowMs);
    for (const id of cluster.nodeIds()) {
      if (id === self.id) continue;
      const subject = cluster.node(id);
      const seen = m.get(id);
      if (subject.status === 'running') {
        if (!seen) fail('converged-alive', `${self.id} does not know ${id}`);
        else if (seen.state !== 'alive' || seen.incarnation !== subject.incarnation) {
          fail('converged-alive', `${self.id} sees ${id} ${seen.state}@${seen.incarnation}, it runs @${subject.incarnation}`);
        }
      } else if (seen && seen.state !== 'dead') {
        fail('converged-dead', `${self.id} sees ${id} ${seen.state}@${seen.incarnation}, but it is ${subject.status}`);
      }
    }
    const want = ringNeighbours(self, running.filter((r) => r.id !== self.id)).map((e) => e.id);
    const got = ringNeighbours(self, m.liveOthers()).map((e) => e.id);
    if (want.join(',') !== got.join(',')) fail('converged-ring', `${self.id} has neighbours [${got.join(',')}], want [${want.join(',')}]`);
  }
  for (const a of cluster.anomalies) fail('core-contract', a);
  return out;
}
