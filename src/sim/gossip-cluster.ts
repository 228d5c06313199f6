import type { Endpoint } from '../core/address.js';
import { GOSSIP_DEFAULTS, GossipCore } from '../core/gossip/gossip.js';
import type { GossipConfig, SubmitResult } from '../core/gossip/gossip.js';
import type { GossipMessage } from '../core/gossip/message.js';
import { dynamicOverlay, staticNeighbours } from '../core/overlay.js';
import type { WriteOutcome } from './gossip-disk.js';
import { GOSSIP_SIM_DEFAULTS, GossipSimNode } from './gossip-node.js';
import type { GossipListener, GossipNodeView, GossipPacket, GossipSimKnobs } from './gossip-node.js';
import { corruptCopy } from './gossip-faults.js';
import { SimNetwork } from './network.js';
import type { NetworkKnobs } from './network.js';
import { SimRandom } from './random.js';
import { Scheduler } from './scheduler.js';
import { sha256 } from './sha256.js';
import type { Link } from './static-graph.js';

export { GOSSIP_SIM_DEFAULTS } from './gossip-node.js';
export type { GossipLifecycle, GossipListener, GossipNodeStatus, GossipNodeView, GossipPacket, GossipSimKnobs } from './gossip-node.js';

export type OverlaySpec = { readonly kind: 'static'; readonly links: readonly Link[] } | { readonly kind: 'dynamic' };

export interface GossipClusterOptions {
  readonly seed: number;
  readonly nodes: readonly Endpoint[];
  readonly overlay: OverlaySpec;
  readonly network?: Partial<NetworkKnobs>;
  readonly gossip?: Partial<Pick<GossipConfig, 'messageBytesMax' | 'digestAboveMax' | 'streamsMax'>>;
  readonly knobs?: Partial<GossipSimKnobs>;
}

/**
 * N gossip cores (src/core/gossip) on one simulated clock and network, each
 * with a simulated durable store, driven like the runtime drives them:
 *
 * - submit: the core numbers the text; the write commits after the in-flight
 *   window; then the submit is acknowledged and flooded. Commit before
 *   forward: a message that crashed in flight at its origin was never
 *   acknowledged and never left the node, so it appears nowhere.
 * - a new message from a peer is written (in flight until it commits) and
 *   flooded to the neighbours not on its path, before or after the commit
 *   (knob). A failed write makes the core forget it (unreceive).
 * - anti-entropy: every node sends its digest to each neighbour
 *   periodically; the peer answers with up to batchMax durable messages the
 *   digest lacks; a full answer makes the asker ask again (once per answer,
 *   correlated by ask id, so duplicated answers do not multiply the asks).
 *   Messages learned this way are flooded like any new message.
 * - crash loses the core and every write in flight; a restart takes the next
 *   incarnation and rebuilds the core from the durable store only.
 */
export class GossipCluster {
  readonly scheduler = new Scheduler();
  readonly network: SimNetwork<GossipPacket>;
  readonly stats = { flooded: 0, digests: 0, batches: 0, batchMessages: 0, corrupted: 0, staleDrops: 0 };
  private knobsNow: GossipSimKnobs;
  private readonly nodes = new Map<string, GossipSimNode>();
  private readonly listeners: GossipListener[] = [];
  private readonly random: SimRandom;
  private readonly corrupted = new WeakSet<GossipMessage>();
  private readonly overlays = new Map<string, Map<string, Set<string>>>();
  private readonly staticGraph = new Map<string, Set<string>>();
  private readonly gossipConfig: Pick<GossipConfig, 'messageBytesMax' | 'digestAboveMax' | 'streamsMax'>;

  constructor(private readonly options: GossipClusterOptions) {
    this.random = SimRandom.derived(options.seed, 'gossip-cluster');
    this.knobsNow = Object.freeze({ ...GOSSIP_SIM_DEFAULTS, ...options.knobs });
    this.gossipConfig = { ...GOSSIP_DEFAULTS, ...options.gossip };
    this.network = new SimNetwork<GossipPacket>(this.scheduler, SimRandom.derived(options.seed, 'network'), options.network);
    for (const spec of options.nodes) {
      if (this.nodes.has(spec.id)) throw new Error(`duplicate node id ${spec.id}`);
      const node = new GossipSimNode(Object.freeze({ ...spec }));
      if (options.overlay.kind === 'static') node.neighbourIds = staticNeighbours(spec.id, options.overlay.links);
      this.nodes.set(spec.id, node);
      if (options.overlay.kind === 'static') this.staticGraph.set(spec.id, new Set(node.neighbourIds));
      this.network.attach(spec.id, (from, packet) => this.deliver(node, from, packet));
    }
  }

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  get knobs(): GossipSimKnobs {
    return this.knobsNow;
  }

  setKnobs(change: Partial<GossipSimKnobs>): void {
    this.knobsNow = Object.freeze({ ...this.knobsNow, ...change });
  }

  addListener(listener: GossipListener): void {
    this.listeners.push(listener);
  }

  node(id: string): GossipNodeView {
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

  /** First start, or a restart after a crash with the next incarnation, rebuilt from the durable store. */
  start(id: string): void {
    const n = this.mustGet(id);
    if (n.status === 'running') throw new Error(`node ${id} is already running`);
    n.status = 'running';
    n.epoch += 1;
    const incarnation = ++n.disk.lastIncarnation;
    n.core = new GossipCore({ ...this.gossipConfig, selfId: id, incarnation, sha256 });
    n.core.restore(n.disk.all(), []);
    n.openAsk.clear();
    this.notify((l) => l.onLifecycle?.(id, { kind: 'start', incarnation }, this.nowMs));
    const epoch = n.epoch;
    if (this.options.overlay.kind === 'dynamic') this.refreshView(n, epoch);
    // A node that (re)starts asks its neighbours for what it missed right away.
    this.scheduler.after(this.random.int(1, 50), () => this.antiEntropy(n, epoch));
  }

  /** Stops a node at once: its core and every write still in flight are lost; the durable store stays. */
  crash(id: string): void {
    const n = this.mustGet(id);
    if (n.status !== 'running') throw new Error(`node ${id} is ${n.status}, not running`);
    const lost = [...n.pending.values()].map((p) => p.message);
    n.status = 'crashed';
    n.core = undefined;
    n.pending.clear();
    this.notify((l) => l.onLifecycle?.(id, { kind: 'crash', incarnation: n.disk.lastIncarnation }, this.nowMs));
    if (lost.length > 0) this.notify((l) => l.onLostInFlight?.(id, lost, this.nowMs));
  }

  /** A client submits `text` at node `id`; the result is the core's (acknowledgement comes at commit). */
  submit(id: string, text: string): SubmitResult {
    const n = this.mustGet(id);
    if (n.status !== 'running') throw new Error(`node ${id} is ${n.status}, not running`);
    const result = n.core!.submit(text, this.nowMs);
    this.notify((l) => l.onSubmit?.(id, text, result, this.nowMs));
    if (result.ok) this.writeLater(n, result.message, true);
    return result;
  }

  private writeLater(n: GossipSimNode, message: GossipMessage, own: boolean): void {
    n.pending.set(message.id, { message, own });
    const epoch = n.epoch;
    // One writer per store (as SQLite has): writes commit in the order they were made.
    const atMs = Math.max(n.lastCommitAtMs, this.nowMs + this.random.int(0, this.knobsNow.commitDelayMsMax));
    n.lastCommitAtMs = atMs;
    this.scheduler.at(atMs, () => this.commit(n, epoch, message, own));
  }

  private commit(n: GossipSimNode, epoch: number, message: GossipMessage, own: boolean): void {
    if (n.epoch !== epoch || n.status !== 'running') return; // lost in flight (reported at the crash)
    n.pending.delete(message.id);
    if (this.random.chance(this.knobsNow.writeFailureProbability)) {
      n.core!.unreceive(message);
      this.notify((l) => l.onWriteFailed?.(n.spec.id, message, own, this.nowMs));
      return;
    }
    this.notify((l) => l.onWrite?.(n.spec.id, message, n.disk, this.nowMs));
    const outcome: WriteOutcome = n.disk.write(message, this.nowMs);
    if (outcome !== 'stored') return; // the checker has flagged it
    if (own) this.notify((l) => l.onAck?.(n.spec.id, message, this.nowMs));
    if (own || !this.knobsNow.forwardBeforeCommit) this.flood(n, message);
  }

  private flood(n: GossipSimNode, message: GossipMessage): void {
    // The runtime's rule: skip neighbours of nodes on the path. The simulated
    // node always trusts its (possibly stale) view, which is harsher than the
    // runtime (it waits for a stable overlay): anti-entropy must repair.
    const graph = this.options.overlay.kind === 'static' ? this.staticGraph : n.overlayGraph;
    const { to, message: out } = n.core!.forward(message, n.neighbourIds, graph && ((id) => graph.get(id)));
    for (const peer of to) {
      this.stats.flooded += 1;
      this.send(n, peer, (toEpoch) => ({ kind: 'gossip', toEpoch, message: this.maybeCorrupt(out) }));
    }
  }

  private send(from: GossipSimNode, to: string, make: (toEpoch: number) => GossipPacket): void {
    this.network.unicast(from.spec.id, to, make(this.mustGet(to).epoch));
  }

  private deliver(n: GossipSimNode, from: string, packet: GossipPacket): void {
    if (n.status !== 'running' || packet.toEpoch !== n.epoch) {
      this.stats.staleDrops += 1; // nobody listens, or the connection it came on died with a crash
      return;
    }
    if (packet.kind === 'gossip') this.take(n, packet.message);
    else if (packet.kind === 'digest') this.serve(n, from, packet);
    else {
      for (const m of packet.messages) if (n.status === 'running') this.take(n, m);
      if (packet.more && n.openAsk.get(from) === packet.askId) this.ask(n, from);
    }
  }

  private take(n: GossipSimNode, message: GossipMessage): void {
    const verdict = n.core!.receive(message);
    this.notify((l) => l.onVerdict?.(n.spec.id, message, verdict, this.corrupted.has(message), this.nowMs));
    if (verdict.kind !== 'new') return;
    this.writeLater(n, verdict.message, false);
    if (this.knobsNow.forwardBeforeCommit) this.flood(n, verdict.message);
  }

  /** Answers a digest with durable messages the asker lacks (in-flight ones wait for the next ask). */
  private serve(n: GossipSimNode, from: string, packet: Extract<GossipPacket, { kind: 'digest' }>): void {
    const core = n.core!;
    const { batchMax } = this.knobsNow;
    const plans = core.plan(packet.streams, batchMax);
    let planned = 0;
    const messages: GossipMessage[] = [];
    for (const p of plans) {
      planned += p.seqs.length;
      for (const seq of p.seqs) {
        const stored = n.disk.find(p.origin, p.incarnation, seq);
        if (!stored) continue;
        const { receivedMs: _receivedMs, ...message } = stored;
        messages.push(this.maybeCorrupt(core.forward(message, []).message));
      }
    }
    const more = planned >= batchMax;
    if (messages.length === 0 && !more) return;
    this.stats.batches += 1;
    this.stats.batchMessages += messages.length;
    this.network.unicast(n.spec.id, from, { kind: 'batch', toEpoch: packet.fromEpoch, askId: packet.askId, messages, more });
  }

  private ask(n: GossipSimNode, peer: string): void {
    const askId = ++n.askSeq;
    n.openAsk.set(peer, askId);
    this.stats.digests += 1;
    const streams = n.core!.digest();
    this.send(n, peer, (toEpoch) => ({ kind: 'digest', toEpoch, fromEpoch: n.epoch, askId, streams }));
  }

  private antiEntropy(n: GossipSimNode, epoch: number): void {
    if (n.epoch !== epoch || n.status !== 'running') return;
    for (const peer of n.neighbourIds) this.ask(n, peer);
    const { antiEntropyMsMin, antiEntropyMsMax } = this.knobsNow;
    this.scheduler.after(this.random.int(antiEntropyMsMin, antiEntropyMsMax), () => this.antiEntropy(n, epoch));
  }

  /** Dynamic overlay: neighbours from the running nodes this one can reach now (membership, with the refresh lag). */
  private refreshView(n: GossipSimNode, epoch: number): void {
    if (n.epoch !== epoch || n.status !== 'running') return;
    const view = [...this.nodes.values()].filter((o) => o === n || (o.status === 'running' && this.network.blocked(n.spec.id, o.spec.id) === undefined));
    n.overlayGraph = this.overlayOf(view);
    n.neighbourIds = [...n.overlayGraph.get(n.spec.id)!];
    const { viewRefreshMsMin, viewRefreshMsMax } = this.knobsNow;
    this.scheduler.after(this.random.int(viewRefreshMsMin, viewRefreshMsMax), () => this.refreshView(n, epoch));
  }

  /** dynamicOverlay of a set of nodes, cached: most nodes share a view, and the overlay is the same for all of them. */
  private overlayOf(view: readonly GossipSimNode[]): Map<string, Set<string>> {
    const key = view.map((v) => v.spec.id).join(',');
    let adj = this.overlays.get(key);
    if (!adj) {
      if (this.overlays.size >= 256) this.overlays.clear();
      adj = dynamicOverlay(view.map((v) => v.spec));
      this.overlays.set(key, adj);
    }
    return adj;
  }

  private maybeCorrupt(message: GossipMessage): GossipMessage {
    if (!this.random.chance(this.knobsNow.corruptProbability)) return message;
    const bad = corruptCopy(this.random, message);
    this.corrupted.add(bad);
    this.stats.corrupted += 1;
    return bad;
  }

  private mustGet(id: string): GossipSimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`unknown node ${id}`);
    return n;
  }

  private notify(call: (l: GossipListener) => void): void {
    for (const l of this.listeners) call(l);
  }
}
