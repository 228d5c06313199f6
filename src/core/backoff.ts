/**
 * Capped exponential backoff with jitter ("equal jitter": half fixed, half
 * random), so many nodes retrying the same peer do not retry in lockstep.
 * `random` returns a number in [0, 1); it is injected (core has no Math.random).
 */
export interface BackoffConfig {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

export const BACKOFF_DEFAULTS: BackoffConfig = Object.freeze({ initialMs: 100, maxMs: 5_000, factor: 2 });

export function backoffDelayMs(attempt: number, random: () => number, config: BackoffConfig = BACKOFF_DEFAULTS): number {
  const ceiling = Math.min(config.maxMs, config.initialMs * config.factor ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
