/**
 * Seeded pseudo-random numbers for the simulator.
 *
 * sfc32 (Chris Doty-Humphrey's "small fast counting" generator, as in
 * PractRand) seeded through splitmix32: 128 bits of state, passes PractRand,
 * and is plain 32-bit integer arithmetic, so a seed gives the same stream on
 * every platform and Node version. Not for cryptography.
 */
export class SimRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** `seed` is reduced to 32 bits; any safe integer is accepted. */
  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    let state = seed >>> 0;
    const splitmix32 = (): number => {
      state = (state + 0x9e3779b9) | 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = splitmix32();
    this.b = splitmix32();
    this.c = splitmix32();
    this.d = splitmix32();
    // Discard the first outputs: sfc32's own recommendation to mix the state.
    for (let i = 0; i < 12; i++) this.uint32();
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  uint32(): number {
    const t0 = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    const t = (t0 + this.d) | 0;
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1), the same contract as Math.random, so it can be injected into core. */
  float(): number {
    return this.uint32() / 0x1_0000_0000;
  }

  /** A float in [minIncl, maxExcl). */
  range(minIncl: number, maxExcl: number): number {
    return minIncl + (maxExcl - minIncl) * this.float();
  }

  /** An integer in [minIncl, maxIncl]. */
  int(minIncl: number, maxIncl: number): number {
    if (!Number.isSafeInteger(minIncl) || !Number.isSafeInteger(maxIncl) || maxIncl < minIncl) {
      throw new RangeError(`bad integer range [${minIncl}, ${maxIncl}]`);
    }
    return minIncl + Math.floor(this.float() * (maxIncl - minIncl + 1));
  }

  /** True with probability `p` (0 never, 1 always). */
  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(0, items.length - 1)]!;
  }

  /** A shuffled copy (Fisher-Yates); the input is left alone. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** The generator of one named stream of `seed` (see deriveSeed). */
  static derived(seed: number, label: string): SimRandom {
    return new SimRandom(deriveSeed(seed, label));
  }
}

/**
 * A 32-bit seed for one named stream of a run (the network, the fault
 * schedule, node "n3"). Streams are independent of each other's consumption,
 * so adding a draw in one component does not reshuffle every other one.
 */
export function deriveSeed(seed: number, label: string): number {
  // FNV-1a over the label, folded into the seed, then a murmur3 finaliser.
  let h = (seed >>> 0) ^ 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
