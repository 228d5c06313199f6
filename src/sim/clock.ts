/**
 * Simulated time in milliseconds. It only moves when the scheduler jumps it
 * to the next event, so a run of minutes takes as long as its events do.
 */
export class SimClock {
  private current: number;

  constructor(startMs = 0) {
    if (!Number.isFinite(startMs)) throw new RangeError(`startMs must be finite, got ${startMs}`);
    this.current = startMs;
  }

  get nowMs(): number {
    return this.current;
  }

  /** Moves time forward; time never goes back (a bug in the caller if it tries). */
  advanceTo(ms: number): void {
    if (!(ms >= this.current)) throw new RangeError(`time may not go back: ${ms} < ${this.current}`);
    this.current = ms;
  }
}
