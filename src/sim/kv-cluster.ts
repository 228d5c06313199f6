import type { Endpoint } from '../core/address.js';
import type { KvEntry } from '../core/kv/entry.js';
import { dynamicOverlay } from '../core/overlay.js';
import { shouldDial } from '../core/ring.js';
import { SimKvDisk } from './kv-disk.js';
import type { KvFrame } from './kv-links.js';
import { KV_SIM_DEFAULTS, KvService } from './kv-node.js';
import type { KvListener, KvSimKnobs } from './kv-node.js';
import type { NetworkKnobs } from './network.js';
import { SimRandom } from './random.js';
import { Scheduler } from './scheduler.js';
import { StreamNet } from './streams.js';

export { KV_SIM_DEFAULTS } from './kv-node.js';
export type { KvListener, KvSimKnobs } from './kv-node.js';

/** Sim time starts at a realistic epoch so HLC timestamps have their real magnitude (41 bits of ms). */
export const KV_SIM_EPOCH_MS = 1_700_000_000_000;

export interface KvClockSpec {
  /** The node's wall clock minus true time. */
  readonly offsetMs: number;
  /** Parts per million the node's clock runs fast (negative: slow). */
  readonly driftPpm: number;
}

export interface KvClusterOptions {
  readonly seed: number;
  readonly nodes: readonly Endpoint[];
  readonly bucketCount: number;
  readonly network?: Partial<NetworkKnobs>;
  readonly knobs?: Partial<KvSimKnobs>;
  /** Wall clocks per node id; absent: true time. */
  readonly clocks?: ReadonlyMap<string, KvClockSpec>;
  /** A broken stream is noticed by each end within this many ms. */
  readonly noticeMsMax?: number;
}

export type KvNodeStatus = 'idle' | 'running' | 'crashed';

class KvSimNode {
  status: KvNodeStatus = 'idle';
  service: KvService | undefined;
  epoch = 0;
  neighbourIds: string[] = [];
  view = new Set<string>();
  /** The overlay of its current view, and when that last changed (sim ms). */
  overlay = new Map<string, Set<string>>();
  overlayKey = '';
  overlayChangedAtMs = 0;
  readonly disk = new SimKvDisk();

  constructor(
    readonly spec: Endpoint,
    public clock: KvClockSpec,
  ) {}
}

/** A node as tests and checkers see it. */
export interface KvNodeView {
  readonly spec: Endpoint;
  readonly status: KvNodeStatus;
  readonly service: KvService | undefined;
  readonly disk: SimKvDisk;
  readonly neighbourIds: readonly string[];
  readonly clock: KvClockSpec;
}

/**
 * N cache nodes (KvReplica driven by KvService, kv-node.ts) on one simulated
 * clock, talking over TCP-like streams (streams.ts) on the faulty simulated
 * network: loss breaks the connections between two nodes, both ends notice,
 * the dialer redials, and the link coming up starts anti-entropy, as on real
 * sockets. Each node has its own wall clock (offset, drift) for its HLC and
 * TTLs, a durable disk that survives crashes, and a membership view (the
 * running nodes it can reach, refreshed every so often) from which its
 * overlay neighbours come, as dynamicNeighbours gives them in the runtime.
 */
export class KvCluster {
  readonly scheduler = new Scheduler({ startMs: KV_SIM_EPOCH_MS });
  readonly net: StreamNet<KvFrame>;
  private knobsNow: KvSimKnobs;
  private readonly nodes = new Map<string, KvSimNode>();
  private readonly listeners: KvListener[] = [];
  private readonly random: SimRandom;
  private readonly overlays = new Map<string, Map<string, Set<string>>>();
  private nextWriteId = 1;

  constructor(private readonly options: KvClusterOptions) {
    this.random = SimRandom.derived(options.seed, 'kv-cluster');
    this.knobsNow = Object.freeze({ ...KV_SIM_DEFAULTS, ...options.knobs });
    this.net = new StreamNet<KvFrame>(this.scheduler, SimRandom.derived(options.seed, 'kv-notice'), SimRandom.derived(options.seed, 'network'), options.network, options.noticeMsMax);
    for (const spec of options.nodes) {
      if (this.nodes.has(spec.id)) throw new Error(`duplicate node id ${spec.id}`);
      this.nodes.set(spec.id, new KvSimNode(Object.freeze({ ...spec }), options.clocks?.get(spec.id) ?? { offsetMs: 0, driftPpm: 0 }));
      this.net.attach(spec.id);
    }
  }

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  get knobs(): KvSimKnobs {
    return this.knobsNow;
  }

  setKnobs(change: Partial<KvSimKnobs>): void {
    this.knobsNow = Object.freeze({ ...this.knobsNow, ...change });
  }

  addListener(listener: KvListener): void {
    this.listeners.push(listener);
  }

  node(id: string): KvNodeView {
    return this.mustGet(id);
  }

  nodeIds(): string[] {
    return [...this.nodes.keys()];
  }

  runningIds(): string[] {
    return [...this.nodes.values()].filter((n) => n.status === 'running').map((n) => n.spec.id);
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

  /** Sets a node's clock (a step when it is running: NTP after a restart, say). */
  setClock(id: string, clock: KvClockSpec): void {
    this.mustGet(id).clock = clock;
  }

  /** First start, or a restart after a crash: the replica is rebuilt from the disk only. */
  start(id: string): void {
    const n = this.mustGet(id);
    if (n.status === 'running') throw new Error(`node ${id} is already running`);
    n.status = 'running';
    n.epoch += 1;
    n.view = new Set();
    n.overlayKey = '';
    n.neighbourIds = [];
    n.service = new KvService({
      selfId: id,
      bucketCount: this.options.bucketCount,
      scheduler: this.scheduler,
      net: this.net,
      random: SimRandom.derived(this.options.seed, `kv-${id}-${n.epoch}`),
      knobs: () => this.knobsNow,
      wallMs: () => this.wallMs(id),
      dials: (peer) => shouldDial(n.spec, this.mustGet(peer).spec),
      neighbours: () => n.neighbourIds,
      overlayOf: (peer) => n.overlay.get(peer),
      overlayChangedAtMs: () => n.overlayChangedAtMs,
      notify: (call) => this.notify(call),
    }, n.disk);
    this.notify((l) => l.onLifecycle?.(id, 'start', this.nowMs));
    this.refreshView(n, n.epoch);
  }

  /** Kills a node at once: its replica and the turn's uncommitted writes are gone; the disk stays. */
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
  }

  /** A client's put at node `id`; the entry the replica stamped, or undefined when refused. */
  put(id: string, key: string, value: Uint8Array, ttlMs = 0): KvEntry | undefined {
    return this.running(id).put(this.nextWriteId++, key, value, ttlMs);
  }

  /** A client's delete at node `id`; undefined when nothing was written (absent key, or refused). */
  del(id: string, key: string): KvEntry | undefined {
    return this.running(id).del(this.nextWriteId++, key);
  }

  /** Membership: the running nodes this one can reach; peers that left the view are dropped like dead members. */
  private refreshView(n: KvSimNode, epoch: number): void {
    if (n.epoch !== epoch || n.status !== 'running') return;
    const self = n.spec.id;
    const view = [...this.nodes.values()].filter((o) => o === n || (o.status === 'running' && this.net.network.blocked(self, o.spec.id) === undefined));
    const ids = new Set(view.map((o) => o.spec.id));
    for (const gone of n.view) if (!ids.has(gone)) n.service!.links.drop(gone);
    n.view = ids;
    n.overlay = this.overlayOf(view);
    const key = view.map((v) => v.spec.id).join(',');
    if (key !== n.overlayKey) {
      n.overlayKey = key;
      n.overlayChangedAtMs = this.nowMs;
    }
    n.neighbourIds = [...n.overlay.get(self)!];
    n.service!.links.setDesired(n.neighbourIds);
    const { viewRefreshMsMin, viewRefreshMsMax } = this.knobsNow;
    this.scheduler.after(this.random.int(viewRefreshMsMin, viewRefreshMsMax), () => this.refreshView(n, epoch));
  }

  /** dynamicOverlay of a set of nodes, cached: most nodes share a view. */
  private overlayOf(view: readonly KvSimNode[]): Map<string, Set<string>> {
    const key = view.map((v) => v.spec.id).join(',');
    let adj = this.overlays.get(key);
    if (!adj) {
      if (this.overlays.size >= 256) this.overlays.clear();
      adj = dynamicOverlay(view.map((v) => v.spec));
      this.overlays.set(key, adj);
    }
    return adj;
  }

  private running(id: string): KvService {
    const n = this.mustGet(id);
    if (!n.service) throw new Error(`node ${id} is ${n.status}, not running`);
    return n.service;
  }

  private mustGet(id: string): KvSimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`unknown node ${id}`);
    return n;
  }

  private notify(call: (l: KvListener) => void): void {
    for (const l of this.listeners) call(l);
  }
}

/** A node's wall clock at sim time `nowMs`: true time plus its offset and its drift since the epoch. */
export function skewedWallMs(nowMs: number, clock: KvClockSpec): number {
  const sinceEpochMs = nowMs - KV_SIM_EPOCH_MS;
  return Math.floor(nowMs + clock.offsetMs + (sinceEpochMs * clock.driftPpm) / 1e6);
}
