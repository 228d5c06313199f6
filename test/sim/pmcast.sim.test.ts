// Seed 004's persistent asynchronous multicast under simulated faults (issue 4 "Simulation").
//   node --import tsx --test test/sim/pmcast.sim.test.ts             seeds 1..300 + scenarios
//   SEEDS=2000 node --import tsx --test test/sim/pmcast.sim.test.ts  seeds 1..2000
//   SEED=1234 node --import tsx --test test/sim/pmcast.sim.test.ts   only seed 1234 (replay)
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runPmcastScenario } from '../../src/sim/pmcast-scenario.js';
import type { PmScenarioResult } from '../../src/sim/pmcast-scenario.js';
import { pmcastScenarios } from './pmcast-scenarios.js';
import { selectSeeds } from './seeds.js';

const SEEDS_DEFAULT = 300;
const REPLAY = 'node --import tsx --test test/sim/pmcast.sim.test.ts';

const seeds = selectSeeds(SEEDS_DEFAULT);
// Replaying one seed skips the hand-written scenarios and the coverage checks.
const only = process.env.SEED;

function report(r: PmScenarioResult): string {
  return [
    `seed ${r.seed} (${r.participantCount} participants, td ${r.tdMs} ms): ${r.violations.length} guarantee violation(s), ${r.problems.length} other problem(s)`,
    ...r.violations.slice(0, 20).map((v) => `  [${v.participant || '*'}] guarantee ${v.guarantee}: ${v.detail}`),
    ...r.problems.slice(0, 10).map((p) => `  problem: ${p}`),
    `replay: SEED=${r.seed} ${REPLAY}`,
    `counts: ${JSON.stringify(r.counts)}`,
    'what happened:',
    ...r.trace.map((line) => `  ${line}`),
  ].join('\n');
}

const results: PmScenarioResult[] = [];
const startedMs = performance.now();

describe(`pmcast under random faults (${seeds.length} seed${seeds.length === 1 ? '' : 's'})`, () => {
  for (const seed of seeds) {
    test(`seed ${seed}`, () => {
      const r = runPmcastScenario(seed);
      results.push(r);
      if (r.violations.length > 0 || r.problems.length > 0) assert.fail(report(r));
    });
  }

  test('the same seed replays the same run', () => {
    const seed = seeds[0] ?? 1;
    assert.equal(runPmcastScenario(seed).fingerprint, runPmcastScenario(seed).fingerprint);
  });

  if (only === undefined && seeds.length >= 100) {
    test('the seeds cover what the issue asks for: crashes of both sides, broken streams, new ports, td edges', () => {
      const sum = (f: (r: PmScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
      assert.equal(results.length, seeds.length, 'every seed ran');
      const tds = results.map((r) => r.tdMs);
      assert.ok(Math.min(...tds) < 500 && Math.max(...tds) > 4_000, `td ${Math.min(...tds)}-${Math.max(...tds)} ms`);
      const c = (k: keyof PmScenarioResult['counts']): number => sum((r) => r.counts[k]);
      for (const k of ['coordinatorCrashes', 'participantCrashes', 'crashesBetweenWrites', 'linesCut', 'ackSavesLost', 'duplicatesDropped', 'streamsBroken', 'redials', 'newPorts', 'commandsFailed', 'retries'] as const) {
        assert.ok(c(k) >= 20, `${k}: ${c(k)}`);
      }
      assert.ok(sum((r) => r.stats.messages) > c('msendsAccepted'), 'some messages were accepted but their msend never answered');
      assert.ok(sum((r) => r.stats.disconnects.short) >= 100, 'disconnects shorter than td');
      assert.ok(sum((r) => r.stats.disconnects.exact) >= 20, 'disconnects of exactly td');
      assert.ok(sum((r) => r.stats.disconnects.long) >= 100, 'disconnects longer than td');
      assert.ok(sum((r) => r.stats.cutEdgeHits) >= 20, 'reconnects with a message at exactly R - td');
      assert.ok(sum((r) => r.stats.cutOff) > 1_000, 'messages cut off by td');
      assert.ok(sum((r) => r.stats.required) > 10_000, 'messages that had to arrive');
    });
  }
});

if (only === undefined) pmcastScenarios();

after(() => {
  if (results.length === 0) return;
  const sum = (f: (r: PmScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
  console.log(
    `pmcast sim: ${results.length} seeds in ${((performance.now() - startedMs) / 1000).toFixed(1)} s; ` +
    `${sum((r) => r.stats.messages)} messages, ${sum((r) => r.stats.logged)} log lines checked ` +
    `(${sum((r) => r.stats.required)} required, ${sum((r) => r.stats.forbidden)} forbidden, of which ${sum((r) => r.stats.cutOff)} cut by td); ` +
    `disconnects ${sum((r) => r.stats.disconnects.short)} < td, ${sum((r) => r.stats.disconnects.exact)} = td, ${sum((r) => r.stats.disconnects.long)} > td; ` +
    `${sum((r) => r.counts.coordinatorCrashes)} coordinator and ${sum((r) => r.counts.participantCrashes)} participant crashes ` +
    `(${sum((r) => r.counts.crashesBetweenWrites)} between a log line and its state), ${sum((r) => r.counts.streamsBroken)} broken streams`,
  );
});
