import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';

/** Fault knobs of the simulated network (TigerBeetle's packet_simulator has the same kind). */
export interface NetworkKnobs {
  /** Probability that one copy of a datagram to one receiver is lost. */
  readonly lossProbability: number;
  /** Every delivery takes a whole number of ms in [delayMsMin, delayMsMax]. */
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  /** Probability that a receiver gets a second copy (with its own delay). */
  readonly duplicateProbability: number;
  /** Probability that a copy is held back by up to reorderDelayMsMax extra, so later ones overtake it. */
  readonly reorderProbability: number;
  readonly reorderDelayMsMax: number;
  /** Multicast also reaches the sender (IP_MULTICAST_LOOP is on by default in Node). */
  readonly loopback: boolean;
}

export const NETWORK_DEFAULTS: NetworkKnobs = Object.freeze({
  lossProbability: 0,
  delayMsMin: 1,
  delayMsMax: 5,
  duplicateProbability: 0,
  reorderProbability: 0,
  reorderDelayMsMax: 0,
  loopback: true,
});

export type DropReason = 'loss' | 'partition' | 'link_cut';

export interface NetworkStats {
  sent: number;
  delivered: number;
  duplicated: number;
  dropped: Record<DropReason, number>;
}

/** Told of every copy that does not arrive, so checkers know which silences were earned. */
export type DropListener = (from: string, to: string, reason: DropReason, nowMs: number) => void;

type Deliver<T> = (from: string, message: T) => void;

/**
 * A seeded datagram network between named nodes. Partitions and link cuts
 * are checked when a copy is sent and again when it would arrive (a link can
 * go down while a datagram is in flight). All randomness comes from `random`,
 * drawn in a fixed order (receivers in attach order), so a seed replays exactly.
 */
export class SimNetwork<T> {
  private knobsNow: NetworkKnobs;
  private readonly receivers = new Map<string, Deliver<T>>();
  /** Side of each node while partitioned; nodes not listed share one side. */
  private sides = new Map<string, number>();
  private readonly cut = new Set<string>();
  readonly stats: NetworkStats = { sent: 0, delivered: 0, duplicated: 0, dropped: { loss: 0, partition: 0, link_cut: 0 } };

  constructor(
    private readonly scheduler: Scheduler,
    private readonly random: SimRandom,
    knobs: Partial<NetworkKnobs> = {},
    private readonly onDrop: DropListener = () => {},
  ) {
    this.knobsNow = validKnobs({ ...NETWORK_DEFAULTS, ...knobs });
  }

  get knobs(): NetworkKnobs {
    return this.knobsNow;
  }

  setKnobs(change: Partial<NetworkKnobs>): void {
    this.knobsNow = validKnobs({ ...this.knobsNow, ...change });
  }

  /** Registers the node `id`; what it receives goes to `deliver`. */
  attach(id: string, deliver: Deliver<T>): void {
    if (this.receivers.has(id)) throw new Error(`node ${id} is already attached`);
    this.receivers.set(id, deliver);
  }

  /** Sends to every attached node (the sender too when loopback is on). */
  multicast(from: string, message: T): void {
    for (const to of this.receivers.keys()) {
      if (to !== from || this.knobsNow.loopback) this.sendCopy(from, to, message);
    }
  }

  unicast(from: string, to: string, message: T): void {
    if (!this.receivers.has(to)) throw new Error(`unknown node ${to}`);
    this.sendCopy(from, to, message);
  }

  /** Splits the network: nodes on different sides cannot hear each other. Replaces any partition. */
  partition(sides: readonly (readonly string[])[]): void {
    const next = new Map<string, number>();
    sides.forEach((side, i) => side.forEach((id) => next.set(id, i)));
    this.sides = next;
  }

  heal(): void {
    this.sides = new Map();
  }

  /** Takes a node's link down: nothing in or out until restoreLink. */
  cutLink(id: string): void {
    this.cut.add(id);
  }

  restoreLink(id: string): void {
    this.cut.delete(id);
  }

  /** Why a copy from `from` to `to` could not pass right now, or undefined if it can. */
  blocked(from: string, to: string): Exclude<DropReason, 'loss'> | undefined {
    if (from === to) return undefined;
    if (this.cut.has(from) || this.cut.has(to)) return 'link_cut';
    return this.sides.get(from) === this.sides.get(to) ? undefined : 'partition';
  }

  private sendCopy(from: string, to: string, message: T): void {
    this.stats.sent += 1;
    const k = this.knobsNow;
    const copies = this.random.chance(k.duplicateProbability) ? 2 : 1;
    if (copies === 2) this.stats.duplicated += 1;
    for (let c = 0; c < copies; c++) {
      const lost = this.random.chance(k.lossProbability);
      let delayMs = this.random.int(k.delayMsMin, k.delayMsMax);
      if (this.random.chance(k.reorderProbability)) delayMs += this.random.int(0, k.reorderDelayMsMax);
      const blockedNow = this.blocked(from, to);
      if (blockedNow) this.drop(from, to, blockedNow);
      else if (lost) this.drop(from, to, 'loss');
      else this.scheduler.after(delayMs, () => this.arrive(from, to, message));
    }
  }

  private arrive(from: string, to: string, message: T): void {
    const blockedNow = this.blocked(from, to);
    if (blockedNow) return this.drop(from, to, blockedNow);
    this.stats.delivered += 1;
    this.receivers.get(to)!(from, message);
  }

  private drop(from: string, to: string, reason: DropReason): void {
    this.stats.dropped[reason] += 1;
    this.onDrop(from, to, reason, this.scheduler.nowMs);
  }
}

function validKnobs(k: NetworkKnobs): NetworkKnobs {
  const probability = (name: keyof NetworkKnobs, v: number): void => {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${v}`);
  };
  probability('lossProbability', k.lossProbability);
  probability('duplicateProbability', k.duplicateProbability);
  probability('reorderProbability', k.reorderProbability);
  const wholeMs = (name: keyof NetworkKnobs, v: number): void => {
    if (!(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`${name} must be a whole number of ms >= 0, got ${v}`);
  };
  wholeMs('delayMsMin', k.delayMsMin);
  wholeMs('delayMsMax', k.delayMsMax);
  wholeMs('reorderDelayMsMax', k.reorderDelayMsMax);
  if (k.delayMsMax < k.delayMsMin) throw new RangeError(`delayMsMax (${k.delayMsMax}) is below delayMsMin (${k.delayMsMin})`);
  return Object.freeze({ ...k });
}
