// The replicated cache's core under simulated faults (DESIGN.md section 4, tier 2).
//   node --import tsx --test test/sim/kv.sim.test.ts             seeds 1..300 + scenarios
//   SEEDS=2000 node --import tsx --test test/sim/kv.sim.test.ts  seeds 1..2000
//   SEED=1234 node --import tsx --test test/sim/kv.sim.test.ts   only seed 1234 (replay)
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runKvScenario } from '../../src/sim/kv-scenario.js';
import type { KvScenarioResult } from '../../src/sim/kv-scenario.js';
import { kvScenarios } from './kv-scenarios.js';
import { selectSeeds } from './seeds.js';

const SEEDS_DEFAULT = 300;
const REPLAY = 'node --import tsx --test test/sim/kv.sim.test.ts';

const seeds = selectSeeds(SEEDS_DEFAULT);
// Replaying one seed skips the hand-written scenarios and the coverage checks.
const only = process.env.SEED;

function report(r: KvScenarioResult): string {
  return [
    `SEED=${r.seed}: ${r.nodeCount} nodes, ${r.keyCount} keys, ${r.bucketCount} buckets, clock skew ${r.skewMs} ms, faults ${JSON.stringify(r.counts.faults)}: ${r.violations.length} invariant violation(s)`,
    ...r.violations.slice(0, 20).map((v) => `  t=${v.atMs} [${v.invariant}] ${v.detail}`),
    `replay: SEED=${r.seed} ${REPLAY}`,
    `counts: ${JSON.stringify(r.counts)}`,
    'what happened:',
    ...r.trace.map((line) => `  ${line}`),
  ].join('\n');
}

const results: KvScenarioResult[] = [];
const startedMs = performance.now();

describe(`cache under random faults (${seeds.length} seed${seeds.length === 1 ? '' : 's'})`, () => {
  for (const seed of seeds) {
    test(`seed ${seed}`, () => {
      const r = runKvScenario(seed);
      results.push(r);
      if (r.violations.length > 0) assert.fail(report(r));
    });
  }

  if (only === undefined && seeds.length >= 100) {
    test('the seeds cover what the issue asks for: 3-32 nodes, conflicts, every kind of fault, skew up to 500 ms', () => {
      const sum = (f: (r: KvScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
      const sizes = results.map((r) => r.nodeCount);
      assert.equal(results.length, seeds.length, 'every seed ran');
      assert.ok(Math.min(...sizes) <= 4 && Math.max(...sizes) >= 28, `node counts ${Math.min(...sizes)}-${Math.max(...sizes)}`);
      assert.ok(results.filter((r) => r.keyCount <= 2).length >= seeds.length / 10, 'many runs on one or two keys');
      assert.ok(Math.max(...results.map((r) => r.skewMs)) >= 450, 'clocks up to 500 ms apart');
      const traced = (what: string): number => results.filter((r) => r.trace.some((l) => l.includes(what))).length;
      for (const fault of ['partition', 'heal', 'cut ', 'restore ', 'crash ', 'restart ', 'in its own turn', 'shortly after writes', 'clock of', 'conflict on', 'loss ']) {
        assert.ok(traced(fault) >= 5, `fewer than 5 seeds with "${fault}"`);
      }
      assert.ok(sum((r) => r.counts.lostOwn) > 50, 'crashes inside a group commit lost unacknowledged writes');
      assert.ok(sum((r) => r.counts.lostApplied) > 5, 'crashes lost applied but uncommitted changes');
      assert.ok(sum((r) => r.counts.writes - r.counts.acked) > 50, 'writes never acknowledged');
      assert.ok(sum((r) => r.counts.deletes) > 1_000 && sum((r) => r.counts.ttlPuts) > 1_000, 'deletes and TTL puts');
      assert.ok(sum((r) => r.counts.refused) > 0, 'writes refused while the commit queue was full');
      assert.ok(sum((r) => r.network.duplicated) > 0 && sum((r) => r.network.dropped.loss) > 0, 'duplication and loss');
      assert.ok(sum((r) => r.streams.broken) > 1_000, 'connections broken by loss and partitions');
      assert.ok(sum((r) => r.counts.keysChecked) > 1_000, 'keys compared on every node');
    });
  }
});

if (only === undefined) kvScenarios();

after(() => {
  if (results.length === 0) return;
  const settle = results.map((r) => r.settledMs).sort((a, b) => a - b);
  const at = (q: number): number => settle[Math.min(settle.length - 1, Math.floor(q * settle.length))]!;
  const sum = (f: (r: KvScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
  console.log(
    `kv sim: ${results.length} seeds in ${((performance.now() - startedMs) / 1000).toFixed(1)} s; ` +
    `${sum((r) => r.counts.writes)} writes (${sum((r) => r.counts.acked)} acknowledged) on ${sum((r) => r.nodeCount)} nodes; ` +
    `converged after the faults in p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${settle[settle.length - 1]} ms (simulated); ` +
    `${sum((r) => r.counts.crashes)} crashes, ${sum((r) => r.counts.lostOwn)} writes lost in a group commit, ` +
    `${sum((r) => r.streams.broken)} connections broken`,
  );
});
