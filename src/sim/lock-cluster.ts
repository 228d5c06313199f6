import { LockAcquirer, ACQUIRER_DEFAULTS } from '../core/locks/acquirer.js';
import type { AcquirerConfig, AcquirerOutput } from '../core/locks/acquirer.js';
import { LockGrantor, GRANTOR_DEFAULTS } from '../core/locks/grantor.js';
import type { GrantorConfig, GrantorOutput, ProposeOutput } from '../core/locks/grantor.js';
import type { LockProposal, LockRecord, LockReleaseMsg, LockVote } from '../core/locks/types.js';
import { SimNetwork } from './network.js';
import type { NetworkKnobs } from './network.js';
import { SimRandom } from './random.js';
import { Scheduler } from './scheduler.js';
import type { EventHandle } from './scheduler.js';

/** What travels between simulated nodes (the runtime sends the same as protobuf envelopes). */
export type LockSimMessage =
  | { readonly kind: 'propose'; readonly proposal: LockProposal }
  | { readonly kind: 'vote'; readonly vote: LockVote }
  | { readonly kind: 'release'; readonly release: LockReleaseMsg };

/** Wall clocks start here (a real-looking epoch ms): priorities are wall ms. */
const WALL_EPOCH_MS = 1_700_000_000_000;

/**
 * One node's clocks. Monotonic and wall time both run at (1 + rateError)
 * times true time; the wall clock is also off by wallOffsetMs. The
 * monotonic clock starts anywhere at each boot; the wall clock goes on
 * across restarts (it may step at a restart: `stepWall`).
 */
export class NodeClock {
  private bootAtMs = 0;
  private monoBaseMs = 0;

  constructor(
    readonly rateError: number,
    private wallOffsetMs: number,
  ) {}

  boot(trueMs: number, monoBaseMs: number): void {
    this.bootAtMs = trueMs;
    this.monoBaseMs = monoBaseMs;
  }

  stepWall(deltaMs: number): void {
    this.wallOffsetMs += deltaMs;
  }

  mono(trueMs: number): number {
    return this.monoBaseMs + (trueMs - this.bootAtMs) * (1 + this.rateError);
  }

  wall(trueMs: number): number {
    return WALL_EPOCH_MS + trueMs * (1 + this.rateError) + this.wallOffsetMs;
  }

  /** The true time at which this boot's monotonic clock reads monoMs. */
  trueAtMono(monoMs: number): number {
    return this.bootAtMs + (monoMs - this.monoBaseMs) / (1 + this.rateError);
  }
}

/** Everything the checker needs, told as it happens (true sim time). */
export interface LockRecorder {
  /** A grantor granted (persisted a new lease). */
  grant(grantor: string, key: string, holder: string, attempt: bigint, token: bigint, atMs: number): void;
  acquired(node: string, attempt: bigint, key: string, token: bigint, atMs: number, validUntilTrueMs: number): void;
  failed(node: string, attempt: bigint, reason: string, atMs: number): void;
  expired(node: string, attempt: bigint, atMs: number): void;
  crashed(node: string, atMs: number): void;
}

export interface LockSimConfig {
  readonly acquirer: Omit<AcquirerConfig, 'selfId' | 'attemptBase'>;
  readonly grantor: GrantorConfig;
}

export const LOCK_SIM_CONFIG: LockSimConfig = Object.freeze({
  acquirer: { ...ACQUIRER_DEFAULTS, retryMs: 100, splitTimeoutMs: 30, splitTimeoutMaxMs: 400, roundMinMs: 20, tryMs: 300 },
  grantor: { ...GRANTOR_DEFAULTS, queueHoldMs: 400, restoreSkewMs: 200 },
});

/** A node's disk: what survives a crash. Writes are synchronous (the runtime's SQLite commit before answering). */
interface Disk {
  readonly records: Map<string, LockRecord>;
  epoch: number;
}

export class SimLockNode {
  up = false;
  grantor: LockGrantor<string> | undefined;
  acquirer: LockAcquirer | undefined;
  readonly disk: Disk = { records: new Map(), epoch: 0 };
  private timer: EventHandle | undefined;
  boots = 0;
  /** Leases this grantor persisted last, per key (to tell a new grant from a rewrite). */
  private readonly lastLease = new Map<string, string>();

  constructor(
    readonly id: string,
    readonly clock: NodeClock,
    private readonly cluster: LockSimCluster,
  ) {}

  get monoMs(): number {
    return this.clock.mono(this.cluster.nowMs);
  }

  get wallMs(): number {
    return this.clock.wall(this.cluster.nowMs);
  }

  start(monoBaseMs: number): void {
    if (this.up) return;
    this.clock.boot(this.cluster.nowMs, monoBaseMs);
    this.disk.epoch += 1;
    this.boots += 1;
    const cfg = this.cluster.config;
    this.grantor = new LockGrantor<string>(cfg.grantor, (key) => this.disk.records.get(key));
    this.acquirer = new LockAcquirer({ ...cfg.acquirer, selfId: this.id, attemptBase: BigInt(this.disk.epoch) << 32n });
    this.up = true;
    this.rearm();
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.timer?.cancel();
    this.timer = undefined;
    this.grantor = undefined;
    this.acquirer = undefined;
    this.cluster.recorder.crashed(this.id, this.cluster.nowMs);
  }

  receive(from: string, m: LockSimMessage): void {
    if (!this.up) return;
    const now = this.monoMs;
    switch (m.kind) {
      case 'propose':
        this.applyGrantor(this.grantor!.propose(m.proposal, from, now, this.wallMs), from, m.proposal.key);
        break;
      case 'release':
        this.applyGrantor(this.grantor!.release(m.release, now, this.wallMs));
        break;
      case 'vote':
        this.applyAcquirer(this.acquirer!.vote(from, m.vote, now));
        break;
    }
    this.rearm();
  }

  /** A client asks this node for the lock; undefined if refused at once (bad input, busy). */
  acquire(key: string, ttlMs: number, waitMs: number): { attempt: bigint; priority: bigint } | undefined {
    if (!this.up) return undefined;
    const { attempt, output } = this.acquirer!.acquire({ key, ttlMs, waitMs, quorum: this.cluster.quorum }, this.monoMs, this.wallMs);
    const priority = this.acquirer!.view(attempt)!.priority;
    this.applyAcquirer(output);
    this.rearm();
    return { attempt, priority };
  }

  release(key: string, token: bigint): boolean {
    if (!this.up) return false;
    const { released, output } = this.acquirer!.release(key, token, this.monoMs);
    this.applyAcquirer(output);
    this.rearm();
    return released;
  }

  /** A client releases through this node a lock it got through another: by token, at every grantor. */
  releaseByToken(key: string, token: bigint): void {
    if (!this.up) return;
    for (const to of this.cluster.quorum) this.cluster.send(this.id, to, { kind: 'release', release: { key, holder: '', attempt: 0n, token } });
  }

  private tick(): void {
    this.timer = undefined;
    if (!this.up) return;
    const now = this.monoMs;
    this.applyGrantor(this.grantor!.tick(now, this.wallMs));
    this.applyAcquirer(this.acquirer!.tick(now));
    this.rearm();
  }

  private rearm(): void {
    if (!this.up) return;
    const g = this.grantor!.nextWakeMs();
    const a = this.acquirer!.nextWakeMs();
    const nextMono = Math.min(g ?? Infinity, a ?? Infinity);
    if (nextMono === Infinity) {
      this.timer?.cancel();
      this.timer = undefined;
      return;
    }
    // A hair later than the exact instant, so float rounding cannot leave the core a tick early.
    const at = Math.max(this.cluster.nowMs, this.clock.trueAtMono(nextMono) + 1e-6);
    if (this.timer && this.timer.atMs === at) return;
    this.timer?.cancel();
    this.timer = this.cluster.scheduler.at(at, () => this.tick());
  }

  private applyGrantor(out: GrantorOutput<string> | ProposeOutput<string>, replyTo?: string, key?: string): void {
    for (const r of out.persist) {
      this.disk.records.set(r.key, r);
      const l = r.lease;
      const sig = l ? `${l.holder}/${l.attempt}/${l.token}` : '';
      if (l && this.lastLease.get(r.key) !== sig) this.cluster.recorder.grant(this.id, r.key, l.holder, l.attempt, l.token, this.cluster.nowMs);
      this.lastLease.set(r.key, sig);
    }
    if ('reply' in out && replyTo !== undefined && key !== undefined) this.cluster.send(this.id, replyTo, { kind: 'vote', vote: out.reply });
    for (const l of out.later) this.cluster.send(this.id, l.replyTo, { kind: 'vote', vote: l.vote });
  }

  private applyAcquirer(out: AcquirerOutput): void {
    for (const s of out.sends) this.cluster.send(this.id, s.to, s.message.kind === 'propose' ? { kind: 'propose', proposal: s.message.proposal } : { kind: 'release', release: s.message.release });
    const now = this.cluster.nowMs;
    for (const e of out.events) {
      if (e.kind === 'acquired') this.cluster.recorder.acquired(this.id, e.attempt, e.key, e.token, now, this.clock.trueAtMono(e.validUntilMs));
      else if (e.kind === 'failed') this.cluster.recorder.failed(this.id, e.attempt, e.reason, now);
      else this.cluster.recorder.expired(this.id, e.attempt, now);
    }
  }
}

export interface LockClusterOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly network?: Partial<NetworkKnobs>;
  readonly config?: LockSimConfig;
  /** Clock rate error bound (0.01 = ±1 %) and wall offset bound (ms). */
  readonly rateErrorMax: number;
  readonly wallOffsetMsMax: number;
  readonly recorder: LockRecorder;
}

/**
 * Simulated lock nodes (each a grantor and an acquirer, with a disk that
 * survives crashes and drifting clocks) on the seeded faulty network. The
 * quorum set is every node (as a cluster file would give it).
 */
export class LockSimCluster {
  readonly scheduler = new Scheduler({ eventsMax: 20_000_000 });
  readonly network: SimNetwork<LockSimMessage>;
  readonly nodes: SimLockNode[] = [];
  readonly quorum: readonly string[];
  readonly config: LockSimConfig;
  readonly recorder: LockRecorder;
  private readonly byId = new Map<string, SimLockNode>();
  private readonly bootRandom: SimRandom;

  constructor(options: LockClusterOptions) {
    this.config = options.config ?? LOCK_SIM_CONFIG;
    this.recorder = options.recorder;
    this.network = new SimNetwork<LockSimMessage>(this.scheduler, SimRandom.derived(options.seed, 'lock-network'), options.network);
    this.bootRandom = SimRandom.derived(options.seed, 'lock-boot');
    const clocks = SimRandom.derived(options.seed, 'lock-clocks');
    for (let i = 1; i <= options.nodeCount; i++) {
      const id = `n${i}`;
      const clock = new NodeClock(clocks.range(-options.rateErrorMax, options.rateErrorMax), clocks.range(-options.wallOffsetMsMax, options.wallOffsetMsMax));
      const node = new SimLockNode(id, clock, this);
      this.nodes.push(node);
      this.byId.set(id, node);
      this.network.attach(id, (from, m) => node.receive(from, m));
    }
    this.quorum = this.nodes.map((n) => n.id);
    for (const n of this.nodes) n.start(this.bootRandom.range(0, 1e6));
  }

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  node(id: string): SimLockNode {
    const n = this.byId.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  restart(id: string, wallStepMs = 0): void {
    const n = this.node(id);
    n.clock.stepWall(wallStepMs);
    n.start(this.bootRandom.range(0, 1e6));
  }

  /** A node's message to itself skips the network (the runtime hands it over in-process). */
  send(from: string, to: string, m: LockSimMessage): void {
    if (from === to) {
      const n = this.node(to);
      const boots = n.boots;
      this.scheduler.after(0, () => {
        if (n.boots === boots) n.receive(from, m);
      });
    } else this.network.unicast(from, to, m);
  }
}
