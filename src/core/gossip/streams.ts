/**
 * Which sequence numbers of one stream a node holds, as a contiguous
 * high-water mark plus the numbers held above it. Purged numbers count as
 * held (the floor), so a node never asks for what it threw away on purpose.
 */
export interface StreamDigest {
  readonly origin: string;
  readonly incarnation: number;
  /** Every seq <= hwm is held (or was purged). */
  readonly hwm: number;
  /** Seqs held above hwm (bounded when sent). */
  readonly above: readonly number[];
}

export class StreamState {
  /** Every seq <= hwm is held or purged. */
  hwm = 0;
  /** Seqs <= floor were purged by retention: counted as held, no longer sendable. */
  floor = 0;
  private readonly above = new Set<number>();

  constructor(
    readonly origin: string,
    readonly incarnation: number,
  ) {}

  /** Held now or purged before: a message with this seq is not wanted. */
  has(seq: number): boolean {
    return seq <= this.hwm || this.above.has(seq);
  }

  /** Held now (so it can be sent to a peer). */
  holds(seq: number): boolean {
    return seq > this.floor && this.has(seq);
  }

  get aboveCount(): number {
    return this.above.size;
  }

  add(seq: number): void {
    if (this.has(seq)) return;
    if (seq !== this.hwm + 1) {
      this.above.add(seq);
      return;
    }
    this.hwm = seq;
    while (this.above.delete(this.hwm + 1)) this.hwm += 1;
  }

  /** Everything up to `seq` counts as held from now on (purged by retention). */
  raiseFloor(seq: number): void {
    if (seq <= this.floor) return;
    this.floor = seq;
    if (seq <= this.hwm) return;
    this.hwm = seq;
    for (const s of this.above) if (s <= seq) this.above.delete(s);
    while (this.above.delete(this.hwm + 1)) this.hwm += 1;
  }

  /** Highest seq held. */
  top(): number {
    let top = this.hwm;
    for (const s of this.above) if (s > top) top = s;
    return top;
  }

  digest(aboveMax: number): StreamDigest {
    const above = [...this.above].sort((a, b) => a - b).slice(0, aboveMax);
    return { origin: this.origin, incarnation: this.incarnation, hwm: this.hwm, above };
  }

  /**
   * Seqs we hold that a peer with digest `theirs` lacks, ascending, at most
   * `limit`. Only held seqs above their floor are listed; we cannot know
   * whether seqs we purged were ever theirs, and they are gone anyway.
   */
  missingFrom(theirs: StreamDigest | undefined, limit: number): number[] {
    const theirAbove = new Set(theirs?.above ?? []);
    const out: number[] = [];
    const top = this.top();
    for (let seq = Math.max(theirs?.hwm ?? 0, this.floor) + 1; seq <= top && out.length < limit; seq++) {
      if (!theirAbove.has(seq) && this.has(seq)) out.push(seq);
    }
    return out;
  }
}
