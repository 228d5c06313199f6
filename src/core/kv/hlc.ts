/**
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014):
 * a timestamp is wall milliseconds times 2^10 plus a logical counter, so it
 * stays close to real time, never runs backwards on one node, and is greater
 * than every timestamp the node has seen from others. One timestamp fits a
 * JavaScript number exactly (41 bits of ms + 10 bits = 51 < 53).
 */
export const HLC_LOGICAL_BITS = 10;
const LOGICAL_SPAN = 2 ** HLC_LOGICAL_BITS;

export type Hlc = number;

export function hlcOf(wallMs: number, logical = 0): Hlc {
  return wallMs * LOGICAL_SPAN + logical;
}

export function hlcWallMs(hlc: Hlc): number {
  return Math.floor(hlc / LOGICAL_SPAN);
}

export function isHlc(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

export class HybridClock {
  private last: Hlc = 0;
  /** Remote timestamps further ahead of our wall clock than this were seen (skewed peers). */
  aheadObserved = 0;

  constructor(private readonly maxAheadMs = 60_000) {}

  /** A timestamp for a local event: above every timestamp issued or observed. */
  now(wallMs: number): Hlc {
    const physical = hlcOf(Math.floor(wallMs));
    // When 1,024 events share a millisecond the counter carries into the
    // millisecond: the clock runs a little ahead rather than repeat itself.
    this.last = physical > this.last ? physical : this.last + 1;
    return this.last;
  }

  /** Whether a timestamp is further ahead of `wallMs` than a peer's clock may be. */
  tooFarAhead(remote: Hlc, wallMs: number): boolean {
    return hlcWallMs(remote) > wallMs + this.maxAheadMs;
  }

  /**
   * Takes in a timestamp from another node so later local events order after
   * it. One from further ahead than `maxAheadMs` is not adopted (and false is
   * returned): a peer with a wild clock, or a forged stamp near 2^53, must not
   * drag this clock where no peer accepts its stamps.
   */
  observe(remote: Hlc, wallMs: number): boolean {
    if (this.tooFarAhead(remote, wallMs)) {
      this.aheadObserved += 1;
      return false;
    }
    if (remote > this.last) this.last = remote;
    return true;
  }

  /** Moves the clock to at least `hlc`, unconditionally (this node's own persisted ceiling). */
  advanceTo(hlc: Hlc): void {
    if (hlc > this.last) this.last = hlc;
  }

  get current(): Hlc {
    return this.last;
  }
}
