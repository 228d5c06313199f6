import type { Endpoint } from '../core/address.js';
import type { GossipCore, ReceiveVerdict, SubmitResult } from '../core/gossip/gossip.js';
import type { GossipMessage } from '../core/gossip/message.js';
import type { StreamDigest } from '../core/gossip/streams.js';
import { SimGossipDisk } from './gossip-disk.js';

// The knobs, packets, listener and per-node state of the gossip simulator (gossip-cluster.ts).

export interface GossipSimKnobs {
  /**
   * A write commits a whole number of ms in [0, commitDelayMsMax] after the
   * core accepted the message (the in-flight window), but never before an
   * earlier write of the same node.
   */
  readonly commitDelayMsMax: number;
  /** Receivers forward a new message at once, before it is durable. The origin always commits first. */
  readonly forwardBeforeCommit: boolean;
  /** Each node sends its digest to every neighbour every [min, max] ms (and soon after it starts). */
  readonly antiEntropyMsMin: number;
  readonly antiEntropyMsMax: number;
  /** Messages per anti-entropy answer; a full answer makes the asker ask again at once. */
  readonly batchMax: number;
  /** Dynamic overlay: each node refreshes its membership view (running nodes it can reach) every [min, max] ms. */
  readonly viewRefreshMsMin: number;
  readonly viewRefreshMsMax: number;
  /** Probability that one store write fails: the core forgets the message (or the submit is not acknowledged). */
  readonly writeFailureProbability: number;
  /** Probability that one message copy is corrupted in transit (same id, other content). */
  readonly corruptProbability: number;
}

export const GOSSIP_SIM_DEFAULTS: GossipSimKnobs = Object.freeze({
  commitDelayMsMax: 5,
  forwardBeforeCommit: false,
  antiEntropyMsMin: 1_000,
  antiEntropyMsMax: 2_000,
  batchMax: 500,
  viewRefreshMsMin: 200,
  viewRefreshMsMax: 1_000,
  writeFailureProbability: 0,
  corruptProbability: 0,
});

export type GossipPacket =
  | { readonly kind: 'gossip'; readonly toEpoch: number; readonly message: GossipMessage }
  | { readonly kind: 'digest'; readonly toEpoch: number; readonly fromEpoch: number; readonly askId: number; readonly streams: readonly StreamDigest[] }
  | { readonly kind: 'batch'; readonly toEpoch: number; readonly askId: number; readonly messages: readonly GossipMessage[]; readonly more: boolean };

export type GossipLifecycle = { readonly kind: 'start' | 'crash'; readonly incarnation: number };

/** What checkers hear about a run. */
export interface GossipListener {
  onLifecycle?(nodeId: string, change: GossipLifecycle, nowMs: number): void;
  onSubmit?(nodeId: string, text: string, result: SubmitResult, nowMs: number): void;
  /** A submit became durable at its origin: acknowledged to the client. */
  onAck?(nodeId: string, message: GossipMessage, nowMs: number): void;
  onVerdict?(nodeId: string, message: GossipMessage, verdict: ReceiveVerdict, corrupted: boolean, nowMs: number): void;
  /** Called before the write, with the store as it was. */
  onWrite?(nodeId: string, message: GossipMessage, disk: SimGossipDisk, nowMs: number): void;
  onWriteFailed?(nodeId: string, message: GossipMessage, own: boolean, nowMs: number): void;
  /** Writes that were still in flight when the node crashed: what a crash lost. */
  onLostInFlight?(nodeId: string, messages: readonly GossipMessage[], nowMs: number): void;
}

export type GossipNodeStatus = 'idle' | 'running' | 'crashed';

export interface GossipNodeView {
  readonly spec: Endpoint;
  readonly status: GossipNodeStatus;
  /** Starts so far; in-flight packets addressed to an earlier start are dropped (their connection died). */
  readonly epoch: number;
  readonly core: GossipCore | undefined;
  readonly disk: SimGossipDisk;
  /** Accepted by the core, not yet durable. */
  readonly pendingCount: number;
  readonly neighbourIds: readonly string[];
}

export class GossipSimNode implements GossipNodeView {
  status: GossipNodeStatus = 'idle';
  epoch = 0;
  core: GossipCore | undefined;
  readonly disk = new SimGossipDisk();
  readonly pending = new Map<string, { readonly message: GossipMessage; readonly own: boolean }>();
  neighbourIds: string[] = [];
  /** Dynamic overlay: the whole overlay as this node's view computes it (flooding skips what a path node covers). */
  overlayGraph: ReadonlyMap<string, ReadonlySet<string>> | undefined;
  askSeq = 0;
  lastCommitAtMs = 0;
  /** Peer -> the ask whose full answer may trigger the next ask. */
  readonly openAsk = new Map<string, number>();

  constructor(readonly spec: Endpoint) {}

  get pendingCount(): number {
    return this.pending.size;
  }
}
