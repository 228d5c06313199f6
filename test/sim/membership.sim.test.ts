// Membership under simulated faults (DESIGN.md section 4, tier 2).
//   node --import tsx --test test/sim/membership.sim.test.ts            seeds 1..250 + scenarios
//   SEEDS=2000 node --import tsx --test test/sim/membership.sim.test.ts seeds 1..2000
//   SEED=1234 node --import tsx --test test/sim/membership.sim.test.ts  only seed 1234 (replay)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runRandomScenario } from '../../src/sim/scenario.js';
import type { ScenarioResult } from '../../src/sim/scenario.js';
import { membershipScenarios } from './membership-scenarios.js';
import { selectSeeds } from './seeds.js';

const SEEDS_DEFAULT = 250;
const REPLAY = 'node --import tsx --test test/sim/membership.sim.test.ts';

const seeds = selectSeeds(SEEDS_DEFAULT);
// Replaying one seed skips the hand-written scenarios and the coverage checks.
const only = process.env.SEED;

function report(r: ScenarioResult): string {
  return [
    `seed ${r.seed} (${r.nodeCount} nodes): ${r.violations.length} invariant violation(s)`,
    ...r.violations.slice(0, 20).map((v) => `  t=${v.atMs} [${v.invariant}] ${v.detail}`),
    `replay: SEED=${r.seed} ${REPLAY}`,
    'what happened:',
    ...r.trace.map((line) => `  ${line}`),
  ].join('\n');
}

describe(`membership under random faults (${seeds.length} seed${seeds.length === 1 ? '' : 's'})`, () => {
  for (const seed of seeds) {
    test(`seed ${seed}`, () => {
      const r = runRandomScenario(seed);
      if (r.violations.length > 0) assert.fail(report(r));
    });
  }
});

if (only === undefined) membershipScenarios();
