import { COORDINATOR_DEFAULTS } from '../core/pmcast/coordinator.js';
import type { NetworkKnobs } from './network.js';
import { SimCoordinator } from './pmcast-coordinator.js';
import type { PmCoordinatorKnobs, PmDelivered, PmFrame, PmRecorder } from './pmcast-coordinator.js';
import type { PmAccepted, PmEvent, PmHistory } from './pmcast-history.js';
import { SimParticipant } from './pmcast-participant.js';
import type { PmParticipantKnobs } from './pmcast-participant.js';
import { SimRandom } from './random.js';
import { Scheduler } from './scheduler.js';
import { StreamNet } from './streams.js';

export type { PmCoordinatorKnobs, PmDelivered, PmFrame } from './pmcast-coordinator.js';
export type { CommandOutcome, PmParticipantKnobs } from './pmcast-participant.js';

export const PM_COORDINATOR_SIM_DEFAULTS: PmCoordinatorKnobs = Object.freeze({
  batchMax: 64,
  windowSeqs: 256,
  ackFlushMs: 0,
  purgeEveryMs: 250,
  redialMsMin: 20,
  redialMsMax: 200,
});

export const PM_PARTICIPANT_SIM_DEFAULTS: PmParticipantKnobs = Object.freeze({
  diskMsMax: 1,
  commandTimeoutMs: 3_000,
});

export interface PmClusterOptions {
  readonly seed: number;
  readonly tdMs: number;
  readonly participantIds: readonly string[];
  readonly network?: Partial<NetworkKnobs>;
  readonly coordinator?: Partial<PmCoordinatorKnobs>;
  readonly participant?: Partial<PmParticipantKnobs>;
  /** The core's retainedMax (msend is refused beyond it). */
  readonly retainedMax?: number;
  /** A broken stream is noticed by each end within this many ms. */
  readonly noticeMsMax?: number;
}

/**
 * One simulated coordinator (CoordinatorCore + durable store) and many
 * participants (participant core + log and state files), on one clock,
 * talking over TCP-like streams on the faulty simulated network. It records
 * the history the checker needs: every message the coordinator accepted and,
 * per participant, every membership change the coordinator accepted plus
 * every crash of the participant, in the order they happened.
 */
export class PmCluster {
  readonly scheduler = new Scheduler();
  readonly net: StreamNet<PmFrame>;
  readonly coordinator: SimCoordinator;
  readonly accepted: PmAccepted[] = [];
  readonly problems: { readonly atMs: number; readonly detail: string }[] = [];
  private readonly participants = new Map<string, SimParticipant>();
  private readonly events = new Map<string, PmEvent[]>();

  constructor(readonly options: PmClusterOptions) {
    const { seed } = options;
    this.net = new StreamNet<PmFrame>(this.scheduler, SimRandom.derived(seed, 'pm-notice'), SimRandom.derived(seed, 'network'), options.network, options.noticeMsMax);
    const recorder: PmRecorder = {
      accepted: (m: PmDelivered) => this.accepted.push(m),
      event: (id, kind, atMs, afterSeq) => this.eventsOf(id).push({ kind, atMs, afterSeq }),
      problem: (detail) => this.problems.push({ atMs: this.scheduler.nowMs, detail }),
    };
    this.coordinator = new SimCoordinator(
      this.scheduler, this.net, SimRandom.derived(seed, 'pm-coordinator'),
      { tdMs: options.tdMs, messageBytesMax: COORDINATOR_DEFAULTS.messageBytesMax, membersMax: COORDINATOR_DEFAULTS.membersMax, retainedMax: options.retainedMax ?? COORDINATOR_DEFAULTS.retainedMax },
      7_000, { ...PM_COORDINATOR_SIM_DEFAULTS, ...options.coordinator }, recorder,
    );
    const participantKnobs = { ...PM_PARTICIPANT_SIM_DEFAULTS, ...options.participant };
    for (const id of options.participantIds) {
      if (this.participants.has(id) || id === this.coordinator.node) throw new Error(`participant id ${id} is taken`);
      const p = new SimParticipant(id, this.scheduler, this.net, SimRandom.derived(seed, `pm-${id}`), this.coordinator, participantKnobs);
      p.onCrash = () => this.eventsOf(id).push({ kind: 'crash', atMs: this.scheduler.nowMs });
      this.participants.set(id, p);
    }
  }

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  participant(id: string): SimParticipant {
    const p = this.participants.get(id);
    if (!p) throw new Error(`no participant ${id}`);
    return p;
  }

  allParticipants(): SimParticipant[] {
    return [...this.participants.values()];
  }

  /** Everything a participant that restarted needs to be judged: the accepted messages and, per participant, its log and events. */
  history(): PmHistory {
    return {
      tdMs: this.options.tdMs,
      accepted: [...this.accepted],
      participants: this.allParticipants().map((p) => ({ id: p.id, log: [...p.log], events: [...(this.events.get(p.id) ?? [])] })),
    };
  }

  eventsOf(id: string): PmEvent[] {
    let list = this.events.get(id);
    if (!list) this.events.set(id, (list = []));
    return list;
  }

  runUntil(ms: number): void {
    this.scheduler.runUntil(ms);
  }

  runFor(ms: number): void {
    this.scheduler.runFor(ms);
  }
}
