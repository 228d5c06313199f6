import { SimClock } from './clock.js';

/** A pending event; `cancel()` makes it a no-op when its time comes. */
export interface EventHandle {
  readonly atMs: number;
  cancel(): void;
}

interface Entry {
  readonly atMs: number;
  /** Insertion order: events at the same time run in the order they were scheduled. */
  readonly seq: number;
  run: (() => void) | undefined;
}

export interface SchedulerOptions {
  readonly startMs?: number;
  /** Bound on events one scheduler runs, so a livelock fails loudly instead of hanging the suite. */
  readonly eventsMax?: number;
}

/**
 * The simulator's event queue: a binary min-heap keyed by (atMs, seq).
 * Virtual time jumps straight to the next event; there are no real timers.
 */
export class Scheduler {
  readonly clock: SimClock;
  private readonly heap: Entry[] = [];
  private seq = 0;
  private readonly eventsMax: number;
  /** Events run so far (cancelled ones excluded). */
  executedCount = 0;

  constructor(options: SchedulerOptions = {}) {
    this.clock = new SimClock(options.startMs ?? 0);
    this.eventsMax = options.eventsMax ?? 100_000_000;
  }

  get nowMs(): number {
    return this.clock.nowMs;
  }

  /** Pending entries, cancelled ones included until they surface. */
  get pendingCount(): number {
    return this.heap.length;
  }

  /** Runs `run` at `atMs` (>= now). */
  at(atMs: number, run: () => void): EventHandle {
    if (!Number.isFinite(atMs)) throw new RangeError(`event time must be finite, got ${atMs}`);
    if (atMs < this.nowMs) throw new RangeError(`event time ${atMs} is in the past (now ${this.nowMs})`);
    const entry: Entry = { atMs, seq: this.seq++, run };
    this.push(entry);
    return { atMs, cancel: () => { entry.run = undefined; } };
  }

  after(delayMs: number, run: () => void): EventHandle {
    if (!(delayMs >= 0)) throw new RangeError(`delay must be >= 0, got ${delayMs}`);
    return this.at(this.nowMs + delayMs, run);
  }

  /** Time of the next pending entry, or undefined when the queue is empty. */
  peekMs(): number | undefined {
    return this.heap[0]?.atMs;
  }

  /** Runs the next event; false when there is none. */
  step(): boolean {
    const entry = this.pop();
    if (!entry) return false;
    this.clock.advanceTo(entry.atMs);
    const run = entry.run;
    if (run) {
      entry.run = undefined;
      this.executedCount += 1;
      if (this.executedCount > this.eventsMax) throw new Error(`simulation exceeded eventsMax (${this.eventsMax}): livelock?`);
      run();
    }
    return true;
  }

  /** Runs every event due at or before `untilMs`, then sets the clock to `untilMs`. */
  runUntil(untilMs: number): void {
    for (let next = this.peekMs(); next !== undefined && next <= untilMs; next = this.peekMs()) this.step();
    if (untilMs > this.nowMs) this.clock.advanceTo(untilMs);
  }

  runFor(durationMs: number): void {
    this.runUntil(this.nowMs + durationMs);
  }

  private push(entry: Entry): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(entry, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = entry;
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= h.length) break;
      const right = left + 1;
      const child = right < h.length && before(h[right]!, h[left]!) ? right : left;
      if (!before(h[child]!, last)) break;
      h[i] = h[child]!;
      i = child;
    }
    h[i] = last;
    return top;
  }
}

function before(x: Entry, y: Entry): boolean {
  return x.atMs < y.atMs || (x.atMs === y.atMs && x.seq < y.seq);
}
