import type { KvEntry } from '../core/kv/entry.js';
import { Placement } from '../core/kv/placement.js';
import { KV_SIM_EPOCH_MS, skewedWallMs } from './kv-cluster.js';
import type { KvClockSpec } from './kv-cluster.js';
import { KV_PARTITION_SIM_DEFAULTS, KvPartitionNode, PartitionDisk } from './kv-partition-node.js';
import type { KvPartitionKnobs, KvPartitionListener, WriteOutcome } from './kv-partition-node.js';
import type { PartFrame } from './kv-partition-rpc.js';
import type { NetworkKnobs } from './network.js';
import { SimRandom } from './random.js';
import { Scheduler } from './scheduler.js';
import { StreamNet } from './streams.js';

export { KV_PARTITION_FIXES, KV_PARTITION_SIM_DEFAULTS } from './kv-partition-node.js';
export type { KvPartitionKnobs, KvPartitionListener, WriteOutcome } from './kv-partition-node.js';

/**
 * How long membership takes to follow a change (src/core/membership.ts run
 * by node.ts): a crashed member leaves each other node's view after its own
 * delay (the dead timeout, heard at different moments), a (re)started member
 * enters each view after a heartbeat or so, and it learns the others as
 * their beacons arrive (it starts alone in its view).
 */
export interface MembershipDelays {
  readonly deadMsMin: number;
  readonly deadMsMax: number;
  readonly joinMsMin: number;
  readonly joinMsMax: number;
}

export const MEMBERSHIP_DELAYS_DEFAULT: MembershipDelays = Object.freeze({ deadMsMin: 1_500, deadMsMax: 3_000, joinMsMin: 5, joinMsMax: 1_000 });

export interface KvPartitionClusterOptions {
  readonly seed: number;
  readonly ids: readonly string[];
  readonly bucketCount: number;
  readonly replicas: number;
  readonly network?: Partial<NetworkKnobs>;
  readonly knobs?: Partial<KvPartitionKnobs>;
  readonly membership?: Partial<MembershipDelays>;
  /** Wall clocks per node id; absent: true time. */
  readonly clocks?: ReadonlyMap<string, KvClockSpec>;
  /** A broken stream is noticed by each end within this many ms. */
  readonly noticeMsMax?: number;
}

export type PartitionNodeStatus = 'idle' | 'running' | 'crashed';

class PartitionSimNode {
  status: PartitionNodeStatus = 'idle';
  service: KvPartitionNode | undefined;
  epoch = 0;
  /** The other members this node's membership counts as live. */
  view = new Set<string>();
  readonly disk = new PartitionDisk();

  constructor(
    readonly id: string,
    public clock: KvClockSpec,
  ) {}
}

/** A node as tests and checkers see it. */
export interface PartitionNodeView {
  readonly id: string;
  readonly status: PartitionNodeStatus;
  readonly service: KvPartitionNode | undefined;
  readonly disk: PartitionDisk;
  /** Other members in its view. */
  readonly view: ReadonlySet<string>;
  readonly clock: KvClockSpec;
}

/**
 * N partitioned cache nodes (KvPartitionNode) on one simulated clock, their
 * request connections over TCP-like streams on the faulty simulated network
 * (loss breaks the connections between two nodes, which fails the requests
 * on them), each with its own wall clock, a durable disk that survives
 * crashes, and its own membership view, which follows crashes and restarts
 * after delays (MembershipDelays) and can be made wrong for a while (flap).
 */
export class KvPartitionCluster {
  readonly scheduler = new Scheduler({ startMs: KV_SIM_EPOCH_MS });
  readonly net: StreamNet<PartFrame>;
  private knobsNow: KvPartitionKnobs;
  private readonly delays: MembershipDelays;
  private readonly nodes = new Map<string, PartitionSimNode>();
  private readonly listeners: KvPartitionListener[] = [];
  private readonly random: SimRandom;
  private readonly placements = new Map<string, Placement>();
  private nextWriteId = 1;

  constructor(private readonly options: KvPartitionClusterOptions) {
    this.random = SimRandom.derived(options.seed, 'kv-partition-cluster');
    this.knobsNow = Object.freeze({ ...KV_PARTITION_SIM_DEFAULTS, ...options.knobs });
    this.delays = Object.freeze({ ...MEMBERSHIP_DELAYS_DEFAULT, ...options.membership });
    this.net = new StreamNet<PartFrame>(this.scheduler, SimRandom.derived(options.seed, 'kv-partition-notice'), SimRandom.derived(options.seed, 'network'), options.network, options.noticeMsMax);
    for (const id of options.ids) {
      if (this.nodes.has(id)) throw new Error(`duplicate node id ${id}`);
      this.nodes.set(id, new PartitionSimNode(id, options.clocks?.get(id) ?? { offsetMs: 0, driftPpm: 0 }));
      this.net.attach(id);
    }
  }

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  get knobs(): KvPartitionKnobs {
    return this.knobsNow;
  }

  get replicas(): number {
    return this.options.replicas;
  }

  get bucketCount(): number {
    return this.options.bucketCount;
  }

  setKnobs(change: Partial<KvPartitionKnobs>): void {
    this.knobsNow = Object.freeze({ ...this.knobsNow, ...change });
  }

  addListener(listener: KvPartitionListener): void {
    this.listeners.push(listener);
  }

  node(id: string): PartitionNodeView {
    return this.mustGet(id);
  }

  nodeIds(): string[] {
    return [...this.nodes.keys()];
  }

  runningIds(): string[] {
    return [...this.nodes.values()].filter((n) => n.status === 'running').map((n) => n.id);
  }

  runUntil(untilMs: number): void {
    this.scheduler.runUntil(untilMs);
  }

  runFor(durationMs: number): void {
    this.scheduler.runFor(durationMs);
  }

  /** The node's wall clock now (what Date.now() returns there). */
  wallMs(id: string): number {
    return skewedWallMs(this.nowMs, this.mustGet(id).clock);
  }

  setClock(id: string, clock: KvClockSpec): void {
    this.mustGet(id).clock = clock;
  }

  /** The placement every node computes from these members (shared: it is a pure function of them). */
  placementOf(members: readonly string[]): Placement {
    const sorted = [...new Set(members)].sort();
    const key = sorted.join('\n');
    let p = this.placements.get(key);
    if (!p) {
      if (this.placements.size >= 256) this.placements.clear();
      p = new Placement(sorted, this.options.replicas, this.options.bucketCount);
      this.placements.set(key, p);
    }
    return p;
  }

  /** First start, or a restart after a crash: the replica is rebuilt from the disk only; the node starts alone in its view. */
  start(id: string): void {
    const n = this.mustGet(id);
    if (n.status === 'running') throw new Error(`node ${id} is already running`);
    n.status = 'running';
    n.epoch += 1;
    n.view = new Set();
    n.service = new KvPartitionNode({
      selfId: id,
      bucketCount: this.options.bucketCount,
      replicas: this.options.replicas,
      scheduler: this.scheduler,
      net: this.net,
      random: SimRandom.derived(this.options.seed, `kv-partition-${id}-${n.epoch}`),
      knobs: () => this.knobsNow,
      wallMs: () => this.wallMs(id),
      members: () => [id, ...n.view],
      placementOf: (members) => this.placementOf(members),
      notify: (call) => this.notify(call),
    }, n.disk);
    this.notify((l) => l.onLifecycle?.(id, 'start', this.nowMs));
    const epoch = n.epoch;
    for (const o of this.nodes.values()) {
      if (o === n || o.status !== 'running') continue;
      const otherEpoch = o.epoch;
      // It hears their beacons; they hear its.
      this.scheduler.after(this.joinDelay(), () => {
        if (n.epoch === epoch && n.status === 'running' && o.status === 'running') this.addToView(n, o.id);
      });
      this.scheduler.after(this.joinDelay(), () => {
        if (n.epoch === epoch && n.status === 'running' && o.epoch === otherEpoch && o.status === 'running') this.addToView(o, id);
      });
    }
  }

  /** Kills a node at once: its replica and the turn's uncommitted writes are gone; the disk stays. Others declare it dead later. */
  crash(id: string): void {
    const n = this.mustGet(id);
    if (n.status !== 'running') throw new Error(`node ${id} is ${n.status}, not running`);
    const lost = n.service!.halt();
    n.status = 'crashed';
    n.service = undefined;
    this.net.crash(id);
    this.notify((l) => l.onLifecycle?.(id, 'crash', this.nowMs));
    if (lost.length > 0) {
      const own = lost.flatMap((w) => (w.writeId === undefined ? [] : [w.writeId]));
      this.notify((l) => l.onLost?.(id, lost.map((w) => w.entry), own, this.nowMs));
    }
    for (const o of this.nodes.values()) {
      if (o === n || o.status !== 'running') continue;
      const otherEpoch = o.epoch;
      const { deadMsMin, deadMsMax } = this.delays;
      this.scheduler.after(this.random.int(deadMsMin, deadMsMax), () => {
        // Back already: its new incarnation's beacons kept it alive ('restarted').
        if (n.status !== 'running' && o.epoch === otherEpoch && o.status === 'running') this.removeFromView(o, id);
      });
    }
  }

  /**
   * Membership wrong for a while: `observers` count `id` as dead (and, when
   * symmetric, it counts them dead) for `durationMs`, though it runs.
   */
  flap(id: string, observers: readonly string[], durationMs: number, symmetric: boolean): void {
    const n = this.mustGet(id);
    for (const oid of observers) {
      const o = this.mustGet(oid);
      if (o === n || o.status !== 'running') continue;
      const otherEpoch = o.epoch;
      const epoch = n.epoch;
      this.removeFromView(o, id);
      if (symmetric && n.status === 'running') this.removeFromView(n, oid);
      this.scheduler.after(durationMs, () => {
        if (o.status === 'running' && o.epoch === otherEpoch && n.status === 'running') this.addToView(o, id);
        if (symmetric && n.status === 'running' && n.epoch === epoch && o.status === 'running') this.addToView(n, oid);
      });
    }
  }

  /** `observer`'s membership hears `id` (a beacon): it enters the view. For hand-written scenarios. */
  learn(observer: string, id: string): void {
    const o = this.mustGet(observer);
    if (o.status === 'running' && this.mustGet(id).status === 'running') this.addToView(o, id);
  }

  /** `observer`'s membership declares `id` dead: it leaves the view. For hand-written scenarios. */
  forget(observer: string, id: string): void {
    const o = this.mustGet(observer);
    if (o.status === 'running') this.removeFromView(o, id);
  }

  /** A client's put at node `id`. */
  put(id: string, key: string, value: Uint8Array, ttlMs = 0, done?: (outcome: WriteOutcome) => void): KvEntry | undefined {
    return this.running(id).put(this.nextWriteId++, key, value, ttlMs, done);
  }

  /** A client's delete at node `id` (it reads the key first). */
  del(id: string, key: string, done?: (outcome: WriteOutcome, entry?: KvEntry) => void): void {
    this.running(id).del(this.nextWriteId++, key, done);
  }

  /** A client's get of `keys` at node `id`; `done` is not called if the node crashes first. */
  read(id: string, keys: readonly string[], done: (values: (Uint8Array | undefined)[]) => void): void {
    this.running(id).getMany(keys, done);
  }

  private joinDelay(): number {
    return this.random.int(this.delays.joinMsMin, this.delays.joinMsMax);
  }

  private addToView(n: PartitionSimNode, peer: string): void {
    if (n.view.has(peer)) return;
    n.view.add(peer);
    n.service?.membersChanged();
  }

  private removeFromView(n: PartitionSimNode, peer: string): void {
    if (!n.view.delete(peer)) return;
    n.service?.peerDead(peer);
    n.service?.membersChanged();
  }

  private running(id: string): KvPartitionNode {
    const n = this.mustGet(id);
    if (!n.service) throw new Error(`node ${id} is ${n.status}, not running`);
    return n.service;
  }

  private mustGet(id: string): PartitionSimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`unknown node ${id}`);
    return n;
  }

  private notify(call: (l: KvPartitionListener) => void): void {
    for (const l of this.listeners) call(l);
  }
}
