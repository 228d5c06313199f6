import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';

/**
 * The two network faults every scenario injects the same way: a partition
 * of all nodes into 2–3 random sides, healed after a while, and one node's
 * link cut and restored. A later fault of the same kind supersedes an
 * earlier one's timer (generations), and nothing is healed once the fault
 * phase is over (the scenario heals everything itself then). The draws from
 * `rng` are made in a fixed order, so a seed replays exactly.
 */
export interface PartitionableNet {
  partition(sides: readonly (readonly string[])[]): void;
  heal(): void;
  cutLink(id: string): void;
  restoreLink(id: string): void;
}

export class NetFaults {
  private partitionGeneration = 0;
  private readonly cutGeneration = new Map<string, number>();

  constructor(
    private readonly net: PartitionableNet,
    private readonly scheduler: Scheduler,
    private readonly rng: SimRandom,
    private readonly log: (line: string) => void,
    private readonly over: () => boolean,
  ) {}

  /** Splits `ids` into 2–3 sides for a duration in [minMs, maxMs]. */
  partition(ids: readonly string[], minMs: number, maxMs: number): void {
    const sideCount = this.rng.int(2, 3);
    const sides: string[][] = Array.from({ length: sideCount }, () => []);
    for (const id of ids) sides[this.rng.int(0, sideCount - 1)]!.push(id);
    const durationMs = this.rng.int(minMs, maxMs);
    const generation = ++this.partitionGeneration;
    this.net.partition(sides);
    this.log(`partition ${sides.map((s) => `[${s.join(',')}]`).join(' ')} for ${durationMs} ms`);
    this.scheduler.after(durationMs, () => {
      if (this.over() || generation !== this.partitionGeneration) return;
      this.net.heal();
      this.log('heal');
    });
  }

  /** Cuts the link of one of `ids` for a duration in [minMs, maxMs]. */
  cut(ids: readonly string[], minMs: number, maxMs: number): void {
    const id = this.rng.pick(ids);
    const durationMs = this.rng.int(minMs, maxMs);
    const generation = (this.cutGeneration.get(id) ?? 0) + 1;
    this.cutGeneration.set(id, generation);
    this.net.cutLink(id);
    this.log(`cut ${id} for ${durationMs} ms`);
    this.scheduler.after(durationMs, () => {
      if (this.over() || this.cutGeneration.get(id) !== generation) return;
      this.net.restoreLink(id);
      this.log(`restore ${id}`);
    });
  }
}
