/** Small statistics helpers for benchmark figures. */

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function max(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : Math.max(...xs);
}

export function min(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : Math.min(...xs);
}

/** The numbers of xs, dropping the nulls (a measurement that did not happen). */
export function present(xs: readonly (number | null | undefined)[]): number[] {
  return xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
}

export function round(x: number | null, digits = 3): number | null {
  if (x === null) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** ours/serf, or null when either side is missing or serf's is zero. */
export function ratio(ours: number | null, theirs: number | null): number | null {
  if (ours === null || theirs === null || theirs === 0) return null;
  return ours / theirs;
}

/**
 * The p-th percentile (0 < p <= 100) by nearest rank: the smallest value with at
 * least p % of the sample at or below it. Infinity counts (a message that never
 * arrived is slower than every one that did).
 */
export function percentile(xs: readonly number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

export function mean(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
}
