import { CoordinatorCore } from '../core/pmcast/coordinator.js';
import type { CoordinatorConfig, CoordinatorState, PmCommand, PmEffect, PmMember, PmResult } from '../core/pmcast/coordinator.js';
import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';
import type { StreamEnd, StreamNet } from './streams.js';

/** A delivered message as the wire carries it (PmMessage). */
export interface PmDelivered {
  readonly seq: number;
  readonly sender: string;
  readonly text: string;
  readonly acceptedMs: number;
}

/** What travels on a pmcast stream: one command and its answer per command stream; deliveries and acks on a delivery stream. */
export type PmFrame =
  | { readonly kind: 'command'; readonly command: PmCommand }
  | { readonly kind: 'answer'; readonly result: PmResult }
  | { readonly kind: 'deliver'; readonly messages: readonly PmDelivered[] }
  | { readonly kind: 'ack'; readonly seq: number };

export interface PmCoordinatorKnobs {
  /** Messages per delivery frame at most. */
  readonly batchMax: number;
  /** Seqs sent beyond the member's acked seq at most (flow control). */
  readonly windowSeqs: number;
  /** Acks are saved this often (a crash loses the unsaved ones: redelivery); 0 = with each ack. */
  readonly ackFlushMs: number;
  readonly purgeEveryMs: number;
  /** A broken delivery stream to an online member is reopened after a delay in this range. */
  readonly redialMsMin: number;
  readonly redialMsMax: number;
}

/** Told what the coordinator accepted (the truth the history checker gets) and of anything that must not happen. */
export interface PmRecorder {
  accepted(message: PmDelivered): void;
  event(id: string, kind: 'register' | 'deregister' | 'disconnect' | 'reconnect', atMs: number, afterSeq: number): void;
  problem(detail: string): void;
}

/** The coordinator's durable store: what survives a crash. Writes are synchronous (done before the answer). */
export class PmSimStore {
  readonly members = new Map<string, PmMember>();
  /** Ascending seq (inserted in order). */
  readonly messages = new Map<number, PmDelivered>();
  lastSeq = 0;

  apply(effect: PmEffect): void {
    if (effect.kind === 'save-member') this.members.set(effect.member.id, effect.member);
    else if (effect.kind === 'delete-member') this.members.delete(effect.id);
    else if (effect.kind === 'save-message') {
      const { seq, sender, text, acceptedMs } = effect;
      this.messages.set(seq, { seq, sender, text, acceptedMs });
      this.lastSeq = Math.max(this.lastSeq, seq);
    }
  }

  /** An ack moves only the saved acked seq, never back (UPDATE ... SET acked_seq = max(acked_seq, ?)); a deleted member stays deleted. */
  saveAck(id: string, ackedSeq: number): void {
    const m = this.members.get(id);
    if (m && ackedSeq > m.ackedSeq) this.members.set(id, { ...m, ackedSeq });
  }

  deleteUpTo(seq: number): number {
    let n = 0;
    for (const s of this.messages.keys()) {
      if (s > seq) break;
      this.messages.delete(s);
      n += 1;
    }
    return n;
  }

  restore(): CoordinatorState {
    return {
      members: [...this.members.values()],
      lastSeq: this.lastSeq,
      messages: [...this.messages.values()].map((m) => ({ seq: m.seq, acceptedMs: m.acceptedMs })),
    };
  }
}

interface Delivery {
  readonly end: StreamEnd<PmFrame>;
  /** Highest seq sent on this stream. */
  sentUpTo: number;
}

/**
 * The coordinator process around CoordinatorCore, as the runtime drives it:
 * a command is applied, its durable effects written, then answered, then
 * its delivery effects run; each online member has one delivery stream
 * (reopened after a delay when it breaks, to the member's current port);
 * acks move the member's acked seq and are saved in batches; a purge timer
 * deletes what purgeableUpTo allows. crash() loses everything but the store;
 * start() rebuilds the core from the store and dials every online member.
 */
export class SimCoordinator {
  readonly node = 'coordinator';
  readonly store = new PmSimStore();
  readonly stats = { commands: 0, refused: 0, deliveries: 0, delivered: 0, acks: 0, ackSavesLost: 0, purged: 0, redials: 0, crashes: 0 };
  core: CoordinatorCore | undefined;
  private instance = 0;
  private readonly deliveries = new Map<string, Delivery>();
  /** Member id -> acked seq not saved yet. */
  private readonly unsavedAcks = new Map<string, number>();

  constructor(
    private readonly scheduler: Scheduler,
    private readonly net: StreamNet<PmFrame>,
    private readonly random: SimRandom,
    readonly config: CoordinatorConfig,
    readonly port: number,
    private readonly knobs: PmCoordinatorKnobs,
    private readonly recorder: PmRecorder,
  ) {
    net.attach(this.node);
  }

  get running(): boolean {
    return this.core !== undefined;
  }

  start(): void {
    if (this.core) throw new Error('the coordinator is running');
    const instance = ++this.instance;
    this.core = new CoordinatorCore(this.config, this.store.restore());
    this.net.listen(this.node, this.port, (end) => ({
      data: (_e, frame) => {
        if (frame.kind === 'command') this.command(end, frame.command);
      },
      closed: () => {},
    }));
    for (const m of this.core.allMembers()) if (m.status === 'online') this.dial(m.id);
    const every = (ms: number, run: () => void): void => {
      const tick = (): void => {
        if (this.instance !== instance) return;
        run();
        this.scheduler.after(ms, tick);
      };
      this.scheduler.after(ms, tick);
    };
    every(this.knobs.purgeEveryMs, () => this.purge());
    if (this.knobs.ackFlushMs > 0) every(this.knobs.ackFlushMs, () => this.flushAcks());
  }

  crash(): void {
    if (!this.core) return;
    this.stats.crashes += 1;
    this.stats.ackSavesLost += this.unsavedAcks.size;
    this.instance += 1;
    this.core = undefined;
    this.deliveries.clear();
    this.unsavedAcks.clear();
    this.net.crash(this.node);
  }

  /** Purges what the core allows now; returns how many messages went. */
  purge(): number {
    const core = this.core;
    if (!core) return 0;
    const upTo = core.purgeableUpTo(this.scheduler.nowMs);
    if (upTo <= 0) return 0;
    const n = this.store.deleteUpTo(upTo);
    core.purged(upTo);
    this.stats.purged += n;
    return n;
  }

  /** True when no online member is owed anything (every delivery acknowledged). */
  caughtUp(): boolean {
    const core = this.core;
    if (!core) return false;
    return core.allMembers().every((m) => m.status !== 'online' || core.owed(m.id, 0, 1).length === 0);
  }

  private command(end: StreamEnd<PmFrame>, command: PmCommand): void {
    const core = this.core!;
    this.stats.commands += 1;
    const { result, effects } = core.apply(command, this.scheduler.nowMs);
    for (const e of effects) {
      if (e.kind === 'save-member' || e.kind === 'delete-member' || e.kind === 'save-message') this.store.apply(e);
      if (e.kind === 'save-message') this.recorder.accepted({ seq: e.seq, sender: e.sender, text: e.text, acceptedMs: e.acceptedMs });
    }
    if (result.ok && command.kind !== 'msend') this.recorder.event(command.id, command.kind, result.acceptedMs, core.lastSequence);
    if (!result.ok) this.stats.refused += 1;
    end.send({ kind: 'answer', result });
    end.close();
    for (const e of effects) {
      if (e.kind === 'connect') this.dial(e.id);
      else if (e.kind === 'disconnect') this.hangUp(e.id);
      else if (e.kind === 'fanout') for (const id of this.deliveries.keys()) this.pump(id);
    }
  }

  /** (Re)opens the delivery stream to member `id` at its current address. */
  private dial(id: string): void {
    const m = this.core?.member(id);
    if (!m || m.status !== 'online') return;
    this.hangUp(id);
    const end = this.net.connect(this.node, m.host, m.port, {
      data: (_e, frame) => {
        if (frame.kind === 'ack') this.ack(id, frame.seq);
      },
      closed: (e) => this.lost(id, e),
    });
    this.deliveries.set(id, { end, sentUpTo: 0 });
    this.pump(id);
  }

  private hangUp(id: string): void {
    const d = this.deliveries.get(id);
    if (!d) return;
    this.deliveries.delete(id);
    d.end.close();
  }

  private lost(id: string, end: StreamEnd<PmFrame>): void {
    if (this.deliveries.get(id)?.end !== end) return;
    this.deliveries.delete(id);
    const instance = this.instance;
    this.scheduler.after(this.random.int(this.knobs.redialMsMin, this.knobs.redialMsMax), () => {
      if (this.instance !== instance || this.deliveries.has(id)) return;
      this.stats.redials += 1;
      this.dial(id);
    });
  }

  private ack(id: string, seq: number): void {
    const core = this.core!;
    this.stats.acks += 1;
    const moved = core.ack(id, seq);
    if (moved) {
      if (this.knobs.ackFlushMs === 0) this.store.saveAck(id, moved.ackedSeq);
      else this.unsavedAcks.set(id, moved.ackedSeq);
    }
    this.pump(id);
  }

  private flushAcks(): void {
    for (const [id, ackedSeq] of this.unsavedAcks) this.store.saveAck(id, ackedSeq);
    this.unsavedAcks.clear();
  }

  private pump(id: string): void {
    const core = this.core!;
    const d = this.deliveries.get(id);
    if (!d) return;
    for (;;) {
      const m = core.member(id);
      if (!m || m.status !== 'online' || d.sentUpTo - m.ackedSeq >= this.knobs.windowSeqs) return;
      const seqs = core.owed(id, d.sentUpTo, this.knobs.batchMax);
      if (seqs.length === 0) return;
      const messages: PmDelivered[] = [];
      for (const seq of seqs) {
        const message = this.store.messages.get(seq);
        if (!message) {
          this.recorder.problem(`seq ${seq} is owed to ${id} (acked ${m.ackedSeq}) but is not in the store (purged?)`);
          return;
        }
        messages.push(message);
      }
      if (!d.end.send({ kind: 'deliver', messages })) return;
      this.stats.deliveries += 1;
      this.stats.delivered += messages.length;
      d.sentUpTo = seqs[seqs.length - 1]!;
    }
  }
}
