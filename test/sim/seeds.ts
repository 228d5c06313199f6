// The seeds a simulation test runs: 1..SEEDS (default per test), or only SEED
// (replaying a failure). Shared by every *.sim.test.ts.
export function selectSeeds(defaultCount: number, env: NodeJS.ProcessEnv = process.env): number[] {
  if (env.SEED !== undefined) return [parseCount('SEED', env.SEED)];
  return Array.from({ length: parseCount('SEEDS', env.SEEDS ?? String(defaultCount)) }, (_, i) => i + 1);
}

function parseCount(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a whole number >= 0, got "${text}"`);
  return n;
}
