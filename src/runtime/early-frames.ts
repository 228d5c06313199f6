/**
 * Frames that reach a node before the services they are for are running.
 * A node starts its beacons, links and membership first and opens its
 * SQLite stores (gossip, cache, locks) afterwards, so that it is found
 * without waiting for the disk; a peer that hears it may then send gossip
 * or cache frames, and a client a request, while the stores are still
 * opening. Those wait here, bounded in count and bytes, and are handled in
 * arrival order once the stores are open (each connection's frames stay in
 * order). A frame that does not fit is refused by its caller: a request is
 * answered with an error the asker retries on, a flood is dropped and the
 * anti-entropy round every store runs when it opens fetches it again.
 */
export interface EarlyFrame {
  /** Frame bytes, counted against `bytesMax`. */
  readonly bytes: number;
  /** Handles the frame as if it had just arrived. */
  readonly handle: () => void;
}

export interface EarlyFramesLimits {
  readonly framesMax: number;
  readonly bytesMax: number;
}

export const EARLY_FRAMES_DEFAULTS: EarlyFramesLimits = Object.freeze({
  framesMax: 10_000,
  // A quarter of the node's default inbound budget (64 MiB): the stores open
  // in well under a second, so this is many times what a busy cluster sends.
  bytesMax: 16 * 1024 * 1024,
});

export class EarlyFrames {
  private queue: EarlyFrame[] = [];
  private queuedBytes = 0;
  /** Frames refused because the queue was full. */
  refused = 0;

  constructor(private readonly limits: EarlyFramesLimits = EARLY_FRAMES_DEFAULTS) {}

  get size(): number {
    return this.queue.length;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  /** Queues `frame`; false (nothing kept) when the queue is full. */
  offer(frame: EarlyFrame): boolean {
    if (this.queue.length >= this.limits.framesMax || this.queuedBytes + frame.bytes > this.limits.bytesMax) {
      this.refused += 1;
      return false;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.bytes;
    return true;
  }

  /** Handles every queued frame in arrival order and empties the queue. */
  drain(): void {
    const queue = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    for (const f of queue) f.handle();
  }

  /** Forgets every queued frame (the node stops before its stores opened). */
  clear(): void {
    this.queue = [];
    this.queuedBytes = 0;
  }
}
