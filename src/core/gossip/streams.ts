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
  /**
   * Seqs held above hwm as ascending runs, flattened: [first, last, first,
   * last, ...], so a stream with a hole that never fills (a message lost
   * with its only copies) costs two numbers, not one per seq after it.
   * When the runs do not fit the bound, the list ends with one odd number
   * C: the runs listed are exact up to C; above C the holder did not say.
   */
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

  /** Whether a peer with digest `theirs` of this stream holds a seq we neither hold nor purged. */
  lacksAnyOf(theirs: StreamDigest): boolean {
    // Seqs just above our hwm are lacking by definition (a held one would have raised it).
    if (theirs.hwm > this.hwm) return true;
    const { runs } = parseRuns(theirs.above);
    for (const [first, last] of runs) {
      // Bounded: every seq we test but hold is in `above`, and the first one we lack ends the loop.
      for (let s = Math.max(first, this.hwm + 1); s <= last; s++) if (!this.above.has(s)) return true;
    }
    return false;
  }

  /** Highest seq held. */
  top(): number {
    let top = this.hwm;
    for (const s of this.above) if (s > top) top = s;
    return top;
  }

  /** At most `aboveMax` numbers of runs (see StreamDigest.above); at least the cut-off fits. */
  digest(aboveMax: number): StreamDigest {
    const runs: number[] = [];
    for (const s of [...this.above].sort((a, b) => a - b)) {
      if (runs.length > 0 && runs[runs.length - 1] === s - 1) runs[runs.length - 1] = s;
      else runs.push(s, s);
    }
    let above = runs;
    if (runs.length > aboveMax) {
      // Keep whole runs and say where knowledge ends: just before the first run left out.
      const keep = 2 * Math.floor((Math.max(1, aboveMax) - 1) / 2);
      above = [...runs.slice(0, keep), runs[keep]! - 1];
    }
    return { origin: this.origin, incarnation: this.incarnation, hwm: this.hwm, above };
  }

  /**
   * Seqs we hold that a peer with digest `theirs` lacks, ascending, at most
   * `limit`. Only held seqs above their floor are listed; we cannot know
   * whether seqs we purged were ever theirs, and they are gone anyway.
   * Above a digest's cut-off nothing is listed: we cannot tell what they
   * hold there, and guessing would send them the same messages every round.
   * Their runs are skipped whole, so the cost follows the difference.
   */
  missingFrom(theirs: StreamDigest | undefined, limit: number): number[] {
    const { runs, knownUpTo } = parseRuns(theirs?.above ?? []);
    const out: number[] = [];
    if (limit <= 0) return out;
    const start = Math.max(theirs?.hwm ?? 0, this.floor) + 1;
    let r = 0;
    /** Where their run covering `seq` ends, or undefined when they lack `seq` (seqs come ascending). */
    const theirRunEnd = (seq: number): number | undefined => {
      while (r < runs.length && runs[r]![1] < seq) r += 1;
      return r < runs.length && runs[r]![0] <= seq ? runs[r]![1] : undefined;
    };
    const contiguousTop = Math.min(this.hwm, knownUpTo);
    for (let seq = start; seq <= contiguousTop && out.length < limit; seq++) {
      const end = theirRunEnd(seq);
      if (end === undefined) out.push(seq);
      else seq = end;
    }
    if (this.above.size === 0) return out;
    for (const seq of [...this.above].sort((a, b) => a - b)) {
      if (out.length >= limit || seq > knownUpTo) break;
      if (seq >= start && theirRunEnd(seq) === undefined) out.push(seq);
    }
    return out;
  }
}

/** A peer's runs, sorted (malformed pairs ignored), and the cut-off up to which they are exact. */
function parseRuns(above: readonly number[]): { runs: [number, number][]; knownUpTo: number } {
  const runs: [number, number][] = [];
  for (let i = 0; i + 1 < above.length; i += 2) {
    const [first, last] = [above[i]!, above[i + 1]!];
    if (first <= last) runs.push([first, last]);
  }
  runs.sort((a, b) => a[0] - b[0]);
  const knownUpTo = above.length % 2 === 1 ? above[above.length - 1]! : Number.POSITIVE_INFINITY;
  return { runs, knownUpTo };
}
