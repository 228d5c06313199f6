import { compareEndpoints } from './address.js';
import type { Endpoint } from './address.js';

/**
 * Membership by multicast heartbeats (seeds 000/001, DESIGN.md section 2).
 *
 * Sans-IO: the runtime feeds beacons and ticks with the current time and
 * sends the beacons this returns; the simulator does the same with a
 * simulated clock and network. Every beacon is first-hand evidence that its
 * sender is alive, so a dead member whose beacons come back (a healed
 * partition) is accepted again at the same incarnation; second-hand news
 * (a seed's member list) only ever introduces ids or newer incarnations.
 */

export type MemberState = 'alive' | 'suspect' | 'dead';
export type BeaconSource = 'direct' | 'unicast' | 'indirect';
/**
 * What a suspect's host said when we opened a TCP connection to its port:
 * 'answered' (the kernel still holds its listening socket: the process
 * exists, it is only slow or frozen) or 'refused' (nothing listens there: the
 * process is gone). No answer at all (host down, link cut) is not reported.
 */
export type ProbeOutcome = 'answered' | 'refused';

export interface BeaconInfo {
  readonly cluster: string;
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly incarnation: number;
  /** Wall-clock ms of the sender's oldest unreplicated change; 0 when none. */
  readonly oldestPendingMs: number;
  readonly leaving: boolean;
  /** Fingerprint of the versions the sender's cache holds; 0 or absent: not given. */
  readonly cacheDigest?: bigint;
}

export interface MembershipConfig {
  readonly clusterName: string;
  readonly heartbeatIntervalMs: number;
  /** Silence after which a member turns suspect. */
  readonly suspectAfterMs: number;
  /** Silence after which a member is declared dead (> suspectAfterMs). */
  readonly deadAfterMs: number;
  /**
   * Silence after which a suspect whose host still answers for its port
   * (a probe, see ProbeOutcome) is declared dead all the same (a process
   * frozen this long is of no use). Only probe answers from the last
   * PROBE_FRESH_BEATS heartbeat intervals count, so a process killed while
   * suspect is still declared dead at deadAfterMs. <= deadAfterMs: no probes.
   */
  readonly deadAfterAnsweringMs: number;
  /** Dead members stay listed this long, then are forgotten. */
  readonly forgetDeadAfterMs: number;
  /** Bound of the member table. */
  readonly membersMax: number;
  /** A newcomer is answered with an early beacon within this window, so it learns everyone fast. */
  readonly joinReplyDelayMaxMs: number;
}

export const MEMBERSHIP_DEFAULTS: Omit<MembershipConfig, 'clusterName'> = Object.freeze({
  heartbeatIntervalMs: 200,
  suspectAfterMs: 1_000,
  deadAfterMs: 1_600,
  deadAfterAnsweringMs: 2_600,
  forgetDeadAfterMs: 3_600_000,
  membersMax: 1_024,
  joinReplyDelayMaxMs: 30,
});

export interface Member extends Endpoint {
  readonly incarnation: number;
  readonly state: MemberState;
  readonly oldestPendingMs: number;
  /** From the member's latest first-hand beacon; 0: not known. */
  readonly cacheDigest: bigint;
  readonly lastHeardMs: number;
  readonly stateSinceMs: number;
  /** True once heard over multicast; until then we also beacon to it by unicast. */
  readonly heardDirectly: boolean;
  readonly self: boolean;
}

export type IgnoreReason = 'foreign_cluster' | 'own_beacon' | 'id_conflict' | 'stale' | 'table_full' | 'invalid';

export type MembershipEvent =
  | { readonly type: 'joined'; readonly member: Member }
  | { readonly type: 'restarted'; readonly member: Member; readonly previousIncarnation: number }
  | { readonly type: 'recovered'; readonly member: Member; readonly from: 'suspect' | 'dead' }
  | { readonly type: 'suspect'; readonly member: Member }
  | { readonly type: 'dead'; readonly member: Member; readonly reason: 'timeout' | 'left' }
  | { readonly type: 'forgotten'; readonly id: string }
  | { readonly type: 'ignored'; readonly reason: IgnoreReason; readonly id: string; readonly host: string; readonly port: number }
  | { readonly type: 'stall'; readonly stalledMs: number }
  /** Open a TCP connection to the suspect's port and report the outcome with probeResult. */
  | { readonly type: 'probe'; readonly member: Member };

export interface SelfInfo extends Endpoint {
  readonly incarnation: number;
}

interface MutableMember {
  id: string;
  host: string;
  port: number;
  incarnation: number;
  state: MemberState;
  oldestPendingMs: number;
  cacheDigest: bigint;
  lastHeardMs: number;
  stateSinceMs: number;
  heardDirectly: boolean;
  /** Incarnation that announced it was leaving; its later beacons are stale. */
  leftIncarnation: number;
  /** When we last asked the runtime to probe this suspect. */
  probedMs: number;
  /** When its host last answered a probe (process exists), and last refused one. */
  answeredMs: number;
  refusedMs: number;
}

/**
 * A suspect is probed again every heartbeat interval: a probe is lost as
 * often as a beacon (a SYN or its answer; TCP retries only after 1 s), so
 * several tries must fit between suspectAfterMs and deadAfterMs.
 */
const PROBE_EVERY_BEATS = 1;
/**
 * A probe answer older than this many heartbeat intervals is no evidence of
 * life (a killed process is caught sooner: its port refuses the next probe).
 */
const PROBE_FRESH_BEATS = 5;

export class Membership {
  private readonly table = new Map<string, MutableMember>();
  private nextBeaconAtMs: number;
  private lastBeaconSentMs = Number.NEGATIVE_INFINITY;
  private lastTickMs: number | undefined;
  private oldestPendingMs = 0;
  private cacheDigest = 0n;

  constructor(
    readonly self: SelfInfo,
    readonly config: MembershipConfig,
    private readonly random: () => number,
    nowMs: number,
  ) {
    if (!(config.deadAfterMs > config.suspectAfterMs)) throw new RangeError('deadAfterMs must exceed suspectAfterMs');
    if (!(config.heartbeatIntervalMs > 0)) throw new RangeError('heartbeatIntervalMs must be positive');
    // Announce ourselves at once: the first beacon is what makes joining fast.
    this.nextBeaconAtMs = nowMs;
  }

  /** Records the oldest unreplicated change time carried in our beacons. */
  setOldestPendingMs(ms: number): void {
    this.oldestPendingMs = ms;
  }

  /** Records the cache fingerprint carried in our beacons (0: none). */
  setCacheDigest(digest: bigint): void {
    this.cacheDigest = digest;
  }

  /**
   * Takes a beacon heard first-hand over multicast ('direct') or unicast
   * ('unicast': a --seed peer beyond multicast reach), or second-hand from a
   * seed's member list ('indirect').
   */
  receiveBeacon(beacon: BeaconInfo, nowMs: number, source: BeaconSource = 'direct'): MembershipEvent[] {
    const ignored = (reason: IgnoreReason): MembershipEvent[] => [
      { type: 'ignored', reason, id: beacon.id, host: beacon.host, port: beacon.port },
    ];
    if (beacon.cluster !== this.config.clusterName) return ignored('foreign_cluster');
    if (!(beacon.port > 0 && beacon.port < 65_536) || beacon.id.length === 0 || !Number.isFinite(beacon.incarnation)) {
      return ignored('invalid');
    }
    if (beacon.id === this.self.id) {
      const mine = beacon.incarnation === this.self.incarnation && beacon.host === this.self.host && beacon.port === this.self.port;
      return ignored(mine ? 'own_beacon' : 'id_conflict');
    }

    const known = this.table.get(beacon.id);
    if (!known) {
      if (!this.makeRoom()) return ignored('table_full');
      const m: MutableMember = {
        id: beacon.id,
        host: beacon.host,
        port: beacon.port,
        incarnation: beacon.incarnation,
        state: beacon.leaving ? 'dead' : 'alive',
        oldestPendingMs: beacon.oldestPendingMs,
        // Second-hand (a seed's member list) says nothing of the member's cache now.
        cacheDigest: source === 'indirect' ? 0n : (beacon.cacheDigest ?? 0n),
        lastHeardMs: nowMs,
        stateSinceMs: nowMs,
        heardDirectly: source === 'direct',
        leftIncarnation: beacon.leaving ? beacon.incarnation : -1,
        ...NO_PROBES,
      };
      this.table.set(m.id, m);
      if (beacon.leaving) return [{ type: 'dead', member: view(m), reason: 'left' }];
      this.answerNewcomer(nowMs);
      return [{ type: 'joined', member: view(m) }];
    }

    if (beacon.incarnation < known.incarnation) return ignored('stale');
    if (beacon.incarnation > known.incarnation) {
      const previousIncarnation = known.incarnation;
      known.incarnation = beacon.incarnation;
      known.host = beacon.host;
      known.port = beacon.port;
      known.oldestPendingMs = beacon.oldestPendingMs;
      known.cacheDigest = source === 'indirect' ? 0n : (beacon.cacheDigest ?? 0n);
      known.lastHeardMs = nowMs;
      known.heardDirectly = known.heardDirectly || source === 'direct';
      known.stateSinceMs = nowMs;
      if (beacon.leaving) {
        known.state = 'dead';
        known.leftIncarnation = beacon.incarnation;
        return [{ type: 'dead', member: view(known), reason: 'left' }];
      }
      known.state = 'alive';
      Object.assign(known, NO_PROBES);
      this.answerNewcomer(nowMs);
      return [{ type: 'restarted', member: view(known), previousIncarnation }];
    }

    // Same incarnation from here on.
    if (source === 'indirect') return ignored('stale');
    if (beacon.host !== known.host || beacon.port !== known.port) return ignored('id_conflict');
    if (known.leftIncarnation === beacon.incarnation) return ignored('stale');
    known.lastHeardMs = nowMs;
    if (source === 'direct') known.heardDirectly = true;
    known.oldestPendingMs = beacon.oldestPendingMs;
    known.cacheDigest = beacon.cacheDigest ?? 0n;
    if (beacon.leaving) {
      known.state = 'dead';
      known.stateSinceMs = nowMs;
      known.leftIncarnation = beacon.incarnation;
      return [{ type: 'dead', member: view(known), reason: 'left' }];
    }
    if (known.state !== 'alive') {
      const from = known.state;
      known.state = 'alive';
      Object.assign(known, NO_PROBES);
      known.stateSinceMs = nowMs;
      if (from === 'dead') this.answerNewcomer(nowMs);
      return [{ type: 'recovered', member: view(known), from }];
    }
    return [];
  }

  /** Applies the timeouts; call at `nextWakeMs()` or whenever convenient. */
  tick(nowMs: number): MembershipEvent[] {
    const events: MembershipEvent[] = [];
    const stalledMs = this.detectStall(nowMs);
    if (stalledMs > 0) {
      // Our own event loop was frozen: the silence we saw is ours, not theirs.
      // The whole gap since our last tick is discounted, not just the part
      // beyond a heartbeat: the runtime's timers run before the datagrams
      // that queued meanwhile are read, and the stall may have begun right
      // after that tick (counting the heartbeat's worth as silence made a
      // 1.3 s freeze declare members dead whose beacons sat in the buffer).
      // Never into the future: a beacon drained from the socket buffer before
      // this tick already set lastHeardMs to now, and pushing it past now would
      // delay that member's failure detection by the length of the stall.
      const gapMs = nowMs - this.lastTickMs!;
      for (const m of this.table.values()) if (m.state !== 'dead') m.lastHeardMs = Math.min(m.lastHeardMs + gapMs, nowMs);
      events.push({ type: 'stall', stalledMs });
    }
    this.lastTickMs = nowMs;
    for (const m of [...this.table.values()]) {
      const silentMs = nowMs - m.lastHeardMs;
      if (m.state === 'dead') {
        if (nowMs - m.stateSinceMs >= this.config.forgetDeadAfterMs) {
          this.table.delete(m.id);
          events.push({ type: 'forgotten', id: m.id });
        }
        continue;
      }
      if (silentMs >= this.config.deadAfterMs && !(silentMs < this.config.deadAfterAnsweringMs && this.answering(m, nowMs))) {
        m.state = 'dead';
        m.stateSinceMs = nowMs;
        events.push({ type: 'dead', member: view(m), reason: 'timeout' });
        continue;
      }
      if (silentMs >= this.config.suspectAfterMs && m.state === 'alive') {
        m.state = 'suspect';
        m.stateSinceMs = nowMs;
        events.push({ type: 'suspect', member: view(m) });
      }
      if (m.state === 'suspect' && this.probing() && nowMs >= m.probedMs + PROBE_EVERY_BEATS * this.config.heartbeatIntervalMs) {
        m.probedMs = nowMs;
        events.push({ type: 'probe', member: view(m) });
      }
    }
    return events;
  }

  /**
   * The outcome of a probe of member `id` (incarnation `incarnation`, as in
   * the probe event). A fresh answer keeps a silent suspect from being
   * declared dead until deadAfterAnsweringMs: its process exists, so the
   * silence is a busy or frozen process (or lost beacons), not a crash. A
   * refusal cancels earlier answers.
   */
  probeResult(id: string, incarnation: number, outcome: ProbeOutcome, nowMs: number): void {
    const m = this.table.get(id);
    if (!m || m.incarnation !== incarnation || m.state !== 'suspect') return;
    if (outcome === 'answered') m.answeredMs = nowMs;
    else m.refusedMs = nowMs;
  }

  private probing(): boolean {
    return this.config.deadAfterAnsweringMs > this.config.deadAfterMs;
  }

  /** A probe of this suspect was answered lately, and none refused since. */
  private answering(m: MutableMember, nowMs: number): boolean {
    return m.answeredMs > m.refusedMs && nowMs - m.answeredMs < PROBE_FRESH_BEATS * this.config.heartbeatIntervalMs;
  }

  /** Our beacon when one is due at `nowMs`, else undefined. */
  pollBeacon(nowMs: number): BeaconInfo | undefined {
    if (nowMs < this.nextBeaconAtMs) return undefined;
    this.lastBeaconSentMs = nowMs;
    // +-10% jitter keeps nodes started together from beaconing in lockstep.
    const jitter = 0.9 + 0.2 * this.random();
    this.nextBeaconAtMs = nowMs + this.config.heartbeatIntervalMs * jitter;
    return this.selfBeacon(false);
  }

  /** The beacon to send when stopping on purpose, so peers drop us at once. */
  leaveBeacon(): BeaconInfo {
    return this.selfBeacon(true);
  }

  /** Earliest time at which `tick` or `pollBeacon` has something to do. */
  nextWakeMs(): number {
    let wake = this.nextBeaconAtMs;
    for (const m of this.table.values()) {
      if (m.state === 'alive') wake = Math.min(wake, m.lastHeardMs + this.config.suspectAfterMs);
      else if (m.state === 'suspect') wake = Math.min(wake, this.suspectWakeMs(m));
      else wake = Math.min(wake, m.stateSinceMs + this.config.forgetDeadAfterMs);
    }
    return wake;
  }

  /** The next moment a suspect's fate may change: its dead deadline, its next probe, its last answer going stale. */
  private suspectWakeMs(m: MutableMember): number {
    const deadMs = m.lastHeardMs + this.config.deadAfterMs;
    if (!this.probing()) return deadMs;
    const beatMs = this.config.heartbeatIntervalMs;
    let wake = Math.min(m.probedMs + PROBE_EVERY_BEATS * beatMs, m.lastHeardMs + this.config.deadAfterAnsweringMs);
    // Past the dead deadline only a fresh answer keeps it: look again when that answer goes stale.
    wake = Math.min(wake, Math.max(deadMs, m.answeredMs + PROBE_FRESH_BEATS * beatMs));
    return wake;
  }

  get(id: string): Member | undefined {
    if (id === this.self.id) return this.selfView();
    const m = this.table.get(id);
    return m && view(m);
  }

  /** Every member we know, ourselves included, in ring order. */
  members(): Member[] {
    return [this.selfView(), ...[...this.table.values()].map(view)].sort(compareEndpoints);
  }

  /** Other members that count for the ring: alive or suspect (a suspect may just be slow). */
  liveOthers(): Member[] {
    return [...this.table.values()].filter((m) => m.state !== 'dead').map(view).sort(compareEndpoints);
  }

  /** Members we should also beacon by unicast: live, but never heard over multicast. */
  notHeardDirectly(): Member[] {
    return [...this.table.values()].filter((m) => m.state !== 'dead' && !m.heardDirectly).map(view);
  }

  private selfBeacon(leaving: boolean): BeaconInfo {
    return {
      cluster: this.config.clusterName,
      id: this.self.id,
      host: this.self.host,
      port: this.self.port,
      incarnation: this.self.incarnation,
      oldestPendingMs: this.oldestPendingMs,
      leaving,
      cacheDigest: this.cacheDigest,
    };
  }

  private selfView(): Member {
    return {
      id: this.self.id,
      host: this.self.host,
      port: this.self.port,
      incarnation: this.self.incarnation,
      state: 'alive',
      oldestPendingMs: this.oldestPendingMs,
      cacheDigest: this.cacheDigest,
      lastHeardMs: this.lastTickMs ?? 0,
      stateSinceMs: 0,
      heardDirectly: true,
      self: true,
    };
  }

  /** Schedules an early beacon so a newcomer learns us without waiting a full interval. */
  private answerNewcomer(nowMs: number): void {
    const earliest = this.lastBeaconSentMs + this.config.heartbeatIntervalMs / 4;
    const at = Math.max(earliest, nowMs + this.random() * this.config.joinReplyDelayMaxMs);
    if (at < this.nextBeaconAtMs) this.nextBeaconAtMs = at;
  }

  private detectStall(nowMs: number): number {
    if (this.lastTickMs === undefined) return 0;
    // The runtime ticks at least every heartbeat; a gap well beyond that means we were frozen.
    const expectedGapMs = this.config.heartbeatIntervalMs;
    const gapMs = nowMs - this.lastTickMs;
    return gapMs > 2 * expectedGapMs ? gapMs - expectedGapMs : 0;
  }

  private makeRoom(): boolean {
    if (this.table.size < this.config.membersMax) return true;
    let oldest: MutableMember | undefined;
    for (const m of this.table.values()) {
      if (m.state === 'dead' && (!oldest || m.stateSinceMs < oldest.stateSinceMs)) oldest = m;
    }
    if (!oldest) return false;
    this.table.delete(oldest.id);
    return true;
  }
}

const NO_PROBES = Object.freeze({
  probedMs: Number.NEGATIVE_INFINITY,
  answeredMs: Number.NEGATIVE_INFINITY,
  refusedMs: Number.NEGATIVE_INFINITY,
});

function view(m: MutableMember): Member {
  return {
    id: m.id,
    host: m.host,
    port: m.port,
    incarnation: m.incarnation,
    state: m.state,
    oldestPendingMs: m.oldestPendingMs,
    cacheDigest: m.cacheDigest,
    lastHeardMs: m.lastHeardMs,
    stateSinceMs: m.stateSinceMs,
    heardDirectly: m.heardDirectly,
    self: false,
  };
}
