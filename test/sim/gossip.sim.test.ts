// Gossip under simulated faults (DESIGN.md section 4, tier 2; issue 3 "Simulation").
//   node --import tsx --test test/sim/gossip.sim.test.ts             seeds 1..300 + scenarios
//   SEEDS=2000 node --import tsx --test test/sim/gossip.sim.test.ts  seeds 1..2000
//   SEED=1234 node --import tsx --test test/sim/gossip.sim.test.ts   only seed 1234 (replay)
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runGossipScenario } from '../../src/sim/gossip-scenario.js';
import type { GossipScenarioResult } from '../../src/sim/gossip-scenario.js';
import { gossipScenarios } from './gossip-scenarios.js';
import { selectSeeds } from './seeds.js';

const SEEDS_DEFAULT = 300;
const REPLAY = 'node --import tsx --test test/sim/gossip.sim.test.ts';

const seeds = selectSeeds(SEEDS_DEFAULT);
// Replaying one seed skips the hand-written scenarios and the coverage checks.
const only = process.env.SEED;

function report(r: GossipScenarioResult): string {
  return [
    `seed ${r.seed} (${r.nodeCount} nodes, ${r.overlay} overlay): ${r.violations.length} invariant violation(s)`,
    ...r.violations.slice(0, 20).map((v) => `  t=${v.atMs} [${v.invariant}] ${v.detail}`),
    `replay: SEED=${r.seed} ${REPLAY}`,
    `counts: ${JSON.stringify(r.counts)}`,
    'what happened:',
    ...r.trace.map((line) => `  ${line}`),
  ].join('\n');
}

const results: GossipScenarioResult[] = [];
const startedMs = performance.now();

describe(`gossip under random faults (${seeds.length} seed${seeds.length === 1 ? '' : 's'})`, () => {
  for (const seed of seeds) {
    test(`seed ${seed}`, () => {
      const r = runGossipScenario(seed);
      results.push(r);
      if (r.violations.length > 0) assert.fail(report(r));
    });
  }

  if (only === undefined && seeds.length >= 100) {
    test('the seeds cover what the issue asks for: 8-64 nodes, both overlays, every kind of fault', () => {
      const sum = (f: (r: GossipScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
      const sizes = results.map((r) => r.nodeCount);
      assert.equal(results.length, seeds.length, 'every seed ran');
      assert.ok(Math.min(...sizes) <= 10 && Math.max(...sizes) >= 50, `node counts ${Math.min(...sizes)}-${Math.max(...sizes)}`);
      assert.ok(results.filter((r) => r.overlay === 'static').length >= seeds.length / 4, 'static overlays');
      assert.ok(results.filter((r) => r.overlay === 'dynamic').length >= seeds.length / 4, 'dynamic overlays');
      const traced = (what: string): number => results.filter((r) => r.trace.some((l) => l.includes(what))).length;
      for (const fault of ['partition', 'heal', 'cut ', 'crash ', 'restart ', 'crash for good', 'in flight', 'refused']) {
        assert.ok(traced(fault) >= 5, `fewer than 5 seeds with "${fault}"`);
      }
      assert.ok(sum((r) => r.counts.lostInFlight) > 0, 'some crash lost writes in flight');
      assert.ok(sum((r) => r.counts.submits - r.counts.acked) > 0, 'some submits were never acknowledged');
      assert.ok(sum((r) => r.counts.corruptRefused) > 0, 'corrupted copies were sent (and refused)');
      assert.ok(sum((r) => r.counts.writeFailures) > 0, 'some store writes failed');
      assert.ok(sum((r) => r.network.duplicated) > 0 && sum((r) => r.network.dropped.loss) > 0, 'duplication and loss');
      assert.ok(sum((r) => r.counts.required) > 5_000, 'thousands of acknowledged messages had to reach every live node');
    });
  }
});

if (only === undefined) gossipScenarios();

after(() => {
  if (results.length === 0) return;
  const settle = results.map((r) => r.settledMs).sort((a, b) => a - b);
  const at = (q: number): number => settle[Math.min(settle.length - 1, Math.floor(q * settle.length))]!;
  const sum = (f: (r: GossipScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
  console.log(
    `gossip sim: ${results.length} seeds in ${((performance.now() - startedMs) / 1000).toFixed(1)} s; ` +
    `${sum((r) => r.counts.required)} acknowledged messages checked on ${sum((r) => r.nodeCount)} nodes; ` +
    `converged after the faults in p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${settle[settle.length - 1]} ms (simulated); ` +
    `${sum((r) => r.counts.crashes)} crashes, ${sum((r) => r.counts.lostInFlight)} writes lost in flight, ` +
    `${sum((r) => r.counts.corruptRefused)} corrupted copies refused, ${sum((r) => r.counts.writeFailures)} failed writes`,
  );
});
