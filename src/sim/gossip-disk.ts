import { streamKey } from '../core/gossip/message.js';
import type { GossipMessage } from '../core/gossip/message.js';

export interface StoredGossip extends GossipMessage {
  readonly receivedMs: number;
}

/** `stored`, or which uniqueness rule a second write of the same message hit (SQLite's INSERT OR IGNORE). */
export type WriteOutcome = 'stored' | 'duplicate_id' | 'duplicate_seq';

/**
 * The simulated durable message store of one node: what survives a crash.
 * Like the SQLite store, a message is unique by id and by (origin,
 * incarnation, seq), and a second write of either is ignored — the outcome
 * says so, and the checker counts any such write as a violation (the core
 * must never ask to store a message twice). Writes that were still in
 * flight at a crash are not here: the node keeps those in memory until they
 * commit.
 */
export class SimGossipDisk {
  private readonly byId = new Map<string, StoredGossip>();
  private readonly bySeq = new Map<string, string>();
  /** The incarnation of the node's last start (persisted, so a restart takes a higher one). */
  lastIncarnation = 0;

  get size(): number {
    return this.byId.size;
  }

  write(message: GossipMessage, receivedMs: number): WriteOutcome {
    if (this.byId.has(message.id)) return 'duplicate_id';
    const seqKey = `${streamKey(message.origin, message.incarnation)}#${message.seq}`;
    if (this.bySeq.has(seqKey)) return 'duplicate_seq';
    this.byId.set(message.id, { ...message, receivedMs });
    this.bySeq.set(seqKey, message.id);
    return 'stored';
  }

  get(id: string): StoredGossip | undefined {
    return this.byId.get(id);
  }

  find(origin: string, incarnation: number, seq: number): StoredGossip | undefined {
    const id = this.bySeq.get(`${streamKey(origin, incarnation)}#${seq}`);
    return id === undefined ? undefined : this.byId.get(id);
  }

  /** Every stored message, in the order this node stored them. */
  all(): StoredGossip[] {
    return [...this.byId.values()];
  }
}
