import type { Endpoint } from '../core/address.js';
import { MEMBERSHIP_DEFAULTS, Membership } from '../core/membership.js';
import type { BeaconInfo, MembershipConfig, MembershipEvent } from '../core/membership.js';
import { SimNetwork } from './network.js';
import type { DropReason, NetworkKnobs } from './network.js';
import { SimRandom } from './random.js';
import { Scheduler } from './scheduler.js';

/** Datagrams libuv reads from one UDP socket per poll-phase turn. */
const READ_BATCH_DATAGRAMS = 32;

export type NodeStatus = 'idle' | 'running' | 'crashed' | 'left';

export type LifecycleChange =
  | { readonly kind: 'start'; readonly incarnation: number }
  | { readonly kind: 'crash'; readonly incarnation: number }
  | { readonly kind: 'leave'; readonly incarnation: number }
  /** The node's event loop is frozen over [sinceMs, untilMs) (one continuous stall). */
  | { readonly kind: 'stall'; readonly sinceMs: number; readonly untilMs: number };

/** What invariant checkers hear about a run. */
export interface ClusterListener {
  onEvents?(nodeId: string, events: readonly MembershipEvent[], nowMs: number): void;
  onLifecycle?(nodeId: string, change: LifecycleChange, nowMs: number): void;
  onDrop?(from: string, to: string, reason: DropReason | 'receive_buffer', nowMs: number): void;
  /** A beacon reached a running node's socket (it may sit in the buffer while the node is stalled). */
  onArrival?(to: string, from: string, beacon: BeaconInfo, nowMs: number): void;
}

export interface ClusterOptions {
  readonly seed: number;
  readonly nodes: readonly Endpoint[];
  readonly clusterName?: string;
  readonly membership?: Partial<Omit<MembershipConfig, 'clusterName'>>;
  readonly network?: Partial<NetworkKnobs>;
  /** Incarnation of a node's first start; each restart takes the last one + 1 (it is persisted). */
  readonly firstIncarnation?: number;
  /** Datagrams a stalled node's socket buffers; beyond that they are dropped, as by a full UDP buffer. */
  readonly inboxDatagramsMax?: number;
}

export interface SimNodeView {
  readonly spec: Endpoint;
  readonly status: NodeStatus;
  /** Current incarnation while running, else the last one used (0 before the first start). */
  readonly incarnation: number;
  readonly membership: Membership | undefined;
  readonly stalled: boolean;
  /** Incarnations that announced a graceful leave. */
  readonly leftIncarnations: ReadonlySet<number>;
}

class SimNode implements SimNodeView {
  status: NodeStatus = 'idle';
  incarnation = 0;
  membership: Membership | undefined;
  stalledSinceMs = 0;
  stalledUntilMs = Number.NEGATIVE_INFINITY;
  stallGeneration = 0;
  inbox: { from: string; beacon: BeaconInfo }[] = [];
  wakeAtMs = Number.POSITIVE_INFINITY;
  wakeGeneration = 0;
  readonly leftIncarnations = new Set<number>();

  constructor(
    readonly spec: Endpoint,
    readonly random: SimRandom,
    private readonly clock: Scheduler,
  ) {}

  get stalled(): boolean {
    return this.status === 'running' && this.stalledUntilMs > this.clock.nowMs;
  }
}

/**
 * N membership cores on one simulated network and clock. Each node ticks
 * at its core's nextWakeMs() and multicasts the beacons pollBeacon returns;
 * faults (crash, restart, leave, stall, and the network's partitions, link
 * cuts and loss) are methods the test or a scenario calls at chosen times.
 * Time is whole milliseconds, as Node's timers and Date.now give the runtime.
 */
export class MembershipCluster {
  readonly scheduler: Scheduler;
  readonly network: SimNetwork<BeaconInfo>;
  readonly config: MembershipConfig;
  /** Contract breaches seen while driving the cores (e.g. a wake-up time in the past). */
  readonly anomalies: string[] = [];
  private readonly nodes = new Map<string, SimNode>();
  private readonly listeners: ClusterListener[] = [];
  private readonly random: SimRandom;
  private readonly firstIncarnation: number;
  private readonly inboxDatagramsMax: number;

  constructor(options: ClusterOptions) {
    this.scheduler = new Scheduler();
    this.random = SimRandom.derived(options.seed, 'cluster');
    this.config = Object.freeze({ ...MEMBERSHIP_DEFAULTS, clusterName: options.clusterName ?? 'sim', ...options.membership });
    this.firstIncarnation = options.firstIncarnation ?? 1;
    this.inboxDatagramsMax = options.inboxDatagramsMax ?? 4_096;
    this.network = new SimNetwork<BeaconInfo>(this.scheduler, SimRandom.derived(options.seed, 'network'), options.network, (from, to, reason, nowMs) => {
      for (const l of this.listeners) l.onDrop?.(from, to, reason, nowMs);
    });
    for (const spec of options.nodes) {
      if (this.nodes.has(spec.id)) throw new Error(`duplicate node id ${spec.id}`);
      const frozen = Object.freeze({ id: spec.id, host: spec.host, port: spec.port });
      const node = new SimNode(frozen, SimRandom.derived(options.seed, `node:${spec.id}`), this.scheduler);
      this.nodes.set(spec.id, node);
      this.network.attach(spec.id, (from, beacon) => this.deliver(node, from, beacon));
    }
  }

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  addListener(listener: ClusterListener): void {
    this.listeners.push(listener);
  }

  node(id: string): SimNodeView {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`unknown node ${id}`);
    return n;
  }

  nodeIds(): string[] {
    return [...this.nodes.keys()];
  }

  /** Endpoints of the nodes running now (stalled ones included: they are alive, just slow). */
  running(): Endpoint[] {
    return [...this.nodes.values()].filter((n) => n.status === 'running').map((n) => n.spec);
  }

  /** Starts a node that is not running: its first start, or a restart with a higher incarnation. */
  start(id: string): void {
    const n = this.mustBe(id, ['idle', 'crashed', 'left']);
    n.incarnation = n.status === 'idle' ? this.firstIncarnation : n.incarnation + 1;
    n.status = 'running';
    n.membership = new Membership({ ...n.spec, incarnation: n.incarnation }, this.config, () => n.random.float(), this.nowMs);
    this.notify((l) => l.onLifecycle?.(id, { kind: 'start', incarnation: n.incarnation }, this.nowMs));
    this.armWake(n);
  }

  /** Stops a node at once; everything it held in memory is lost. */
  crash(id: string): void {
    const n = this.mustBe(id, ['running']);
    this.stop(n, 'crashed');
    this.notify((l) => l.onLifecycle?.(id, { kind: 'crash', incarnation: n.incarnation }, this.nowMs));
  }

  /** Graceful stop: one leave beacon (subject to the network like any other), then stop. */
  leave(id: string): void {
    const n = this.mustBe(id, ['running']);
    if (n.stalled) throw new Error(`node ${id} is stalled and cannot send its leave beacon`);
    this.network.multicast(id, n.membership!.leaveBeacon());
    n.leftIncarnations.add(n.incarnation);
    this.stop(n, 'left');
    this.notify((l) => l.onLifecycle?.(id, { kind: 'leave', incarnation: n.incarnation }, this.nowMs));
  }

  /**
   * Freezes a node's event loop for `durationMs` (a long GC or a blocking
   * call): datagrams queue in its socket buffer and its timer waits; then
   * both run. A stall on a stalled node extends it.
   */
  stall(id: string, durationMs: number): void {
    const n = this.mustBe(id, ['running']);
    const untilMs = this.nowMs + Math.ceil(durationMs);
    if (untilMs <= n.stalledUntilMs) return;
    if (!n.stalled) n.stalledSinceMs = this.nowMs;
    n.stalledUntilMs = untilMs;
    const generation = ++n.stallGeneration;
    this.scheduler.at(untilMs, () => this.endStall(n, generation));
    this.notify((l) => l.onLifecycle?.(id, { kind: 'stall', sinceMs: n.stalledSinceMs, untilMs }, this.nowMs));
  }

  runFor(durationMs: number): void {
    this.scheduler.runFor(durationMs);
  }

  runUntil(untilMs: number): void {
    this.scheduler.runUntil(untilMs);
  }

  private mustBe(id: string, allowed: readonly NodeStatus[]): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`unknown node ${id}`);
    if (!allowed.includes(n.status)) throw new Error(`node ${id} is ${n.status}, expected ${allowed.join(' or ')}`);
    return n;
  }

  private stop(n: SimNode, status: 'crashed' | 'left'): void {
    n.status = status;
    n.membership = undefined;
    n.inbox = [];
    n.stalledUntilMs = Number.NEGATIVE_INFINITY;
    n.stallGeneration += 1;
    n.wakeAtMs = Number.POSITIVE_INFINITY;
    n.wakeGeneration += 1;
  }

  private deliver(n: SimNode, from: string, beacon: BeaconInfo): void {
    if (n.status !== 'running') return; // nobody listens on a stopped host
    if (n.stalled && n.inbox.length >= this.inboxDatagramsMax) {
      this.notify((l) => l.onDrop?.(from, n.spec.id, 'receive_buffer', this.nowMs));
      return;
    }
    this.notify((l) => l.onArrival?.(n.spec.id, from, beacon, this.nowMs));
    if (n.stalled) n.inbox.push({ from, beacon });
    else this.receive(n, beacon);
  }

  private receive(n: SimNode, beacon: BeaconInfo): void {
    const events = n.membership!.receiveBeacon(beacon, this.nowMs, 'direct');
    if (events.length > 0) this.notify((l) => l.onEvents?.(n.spec.id, events, this.nowMs));
    this.armWake(n);
  }

  private endStall(n: SimNode, generation: number): void {
    if (generation !== n.stallGeneration || n.status !== 'running') return;
    // The runtime judges timeouts from setImmediate after its timer, i.e.
    // after Node's poll phase has read what queued in the socket: up to one
    // libuv batch per socket before the tick, the rest after it.
    const queued = n.inbox;
    n.inbox = [];
    for (const q of queued.slice(0, READ_BATCH_DATAGRAMS)) if (n.status === 'running') this.receive(n, q.beacon);
    this.wake(n);
    for (const q of queued.slice(READ_BATCH_DATAGRAMS)) if (n.status === 'running') this.receive(n, q.beacon);
  }

  private wake(n: SimNode): void {
    n.wakeAtMs = Number.POSITIVE_INFINITY;
    if (n.status !== 'running' || n.stalled) return; // endStall re-arms
    const m = n.membership!;
    const events = m.tick(this.nowMs);
    if (events.length > 0) this.notify((l) => l.onEvents?.(n.spec.id, events, this.nowMs));
    for (const e of events) if (e.type === 'probe') this.probe(n, e.member.id, e.member.incarnation);
    const beacon = m.pollBeacon(this.nowMs);
    if (beacon) this.network.multicast(n.spec.id, beacon);
    const nextMs = m.nextWakeMs();
    if (nextMs <= this.nowMs) {
      // tick and pollBeacon just ran: a wake-up still due now would spin forever.
      this.anomalies.push(`t=${this.nowMs} ${n.spec.id}: nextWakeMs ${nextMs} is not after the tick that just ran`);
    }
    this.armWake(n, this.nowMs + 1);
  }

  /**
   * A TCP probe as the runtime makes it (src/runtime/port-probe.ts): the
   * target's kernel answers while that incarnation runs, stalled or not, and
   * refuses once it is down; nothing comes back across a partition or a cut
   * link, or when the SYN or its answer is lost (TCP would retry after 1 s,
   * too late to count). The answer takes a round trip.
   */
  private probe(n: SimNode, targetId: string, incarnation: number): void {
    const target = this.nodes.get(targetId);
    const from = n.spec.id;
    if (!target || this.network.blocked(from, targetId) || this.network.blocked(targetId, from)) return;
    const k = this.network.knobs;
    if (this.random.chance(k.lossProbability) || this.random.chance(k.lossProbability)) return;
    const outcome = target.status === 'running' && target.incarnation === incarnation ? 'answered' : 'refused';
    const generation = n.stallGeneration;
    const membership = n.membership;
    this.scheduler.at(this.nowMs + 2 * this.random.int(k.delayMsMin, k.delayMsMax), () => {
      // A stalled observer reads the answer late: dropping it is the conservative model.
      if (n.membership !== membership || n.stalled || n.stallGeneration !== generation) return;
      membership!.probeResult(targetId, incarnation, outcome, this.nowMs);
      this.armWake(n);
    });
  }

  /** Makes sure a timer is pending at the core's next wake-up (never before `notBeforeMs`). */
  private armWake(n: SimNode, notBeforeMs = this.nowMs): void {
    if (n.status !== 'running' || n.stalled) return;
    // Whole ms, like setTimeout: rounding up never runs a timer early.
    const atMs = Math.max(notBeforeMs, Math.ceil(n.membership!.nextWakeMs()));
    if (atMs >= n.wakeAtMs) return;
    n.wakeAtMs = atMs;
    const generation = ++n.wakeGeneration;
    this.scheduler.at(atMs, () => {
      if (generation === n.wakeGeneration) this.wake(n);
    });
  }

  private notify(call: (l: ClusterListener) => void): void {
    for (const l of this.listeners) call(l);
  }
}
