// Distributed locks under simulated faults (DESIGN.md section 2 "Locks").
//   node --import tsx --test test/sim/locks.sim.test.ts             seeds 1..300 + scenarios
//   SEEDS=2000 node --import tsx --test test/sim/locks.sim.test.ts  seeds 1..2000
//   SEED=1234 node --import tsx --test test/sim/locks.sim.test.ts   only seed 1234 (replay)
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LockSimCluster } from '../../src/sim/lock-cluster.js';
import { LockHistory } from '../../src/sim/lock-history.js';
import type { LockOp } from '../../src/sim/lock-history.js';
import { runLockScenario } from '../../src/sim/lock-scenario.js';
import type { LockScenarioResult } from '../../src/sim/lock-scenario.js';
import { selectSeeds } from './seeds.js';

const SEEDS_DEFAULT = 300;
const REPLAY = 'node --import tsx --test test/sim/locks.sim.test.ts';

const seeds = selectSeeds(SEEDS_DEFAULT);
const only = process.env.SEED;

function report(r: LockScenarioResult): string {
  return [
    `seed ${r.seed} (${r.nodeCount} nodes${r.calm ? ', calm' : ''}): ${r.violations.length} violation(s)`,
    ...r.violations.slice(0, 20).map((v) => `  [${v.key}] ${v.check}: ${v.detail}`),
    `replay: SEED=${r.seed} ${REPLAY}`,
    `stats: ${JSON.stringify(r.stats)}`,
    `counts: ${JSON.stringify(r.counts)}`,
    'what happened:',
    ...r.trace.map((line) => `  ${line}`),
  ].join('\n');
}

const results: LockScenarioResult[] = [];
const startedMs = performance.now();

describe(`locks under random faults (${seeds.length} seed${seeds.length === 1 ? '' : 's'})`, () => {
  for (const seed of seeds) {
    test(`seed ${seed}`, () => {
      const r = runLockScenario(seed);
      results.push(r);
      if (r.violations.length > 0) assert.fail(report(r));
    });
  }

  test('the same seed replays the same run', () => {
    const seed = seeds[0] ?? 1;
    assert.equal(runLockScenario(seed).fingerprint, runLockScenario(seed).fingerprint);
  });

  if (only === undefined && seeds.length >= 100) {
    test('the seeds cover what the design asks for: sizes, calm runs, every fault, split votes, contention', () => {
      const sum = (f: (r: LockScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
      assert.equal(results.length, seeds.length, 'every seed ran');
      const sizes = results.map((r) => r.nodeCount);
      assert.ok(Math.min(...sizes) === 3 && Math.max(...sizes) >= 24, `node counts ${Math.min(...sizes)}-${Math.max(...sizes)}`);
      assert.ok(results.filter((r) => r.nodeCount >= 16).length >= seeds.length / 20, 'clusters of 16-32 nodes');
      assert.ok(results.filter((r) => r.calm).length >= seeds.length / 5, 'calm runs (strict fairness)');
      for (const k of ['partitions', 'crashes', 'holderCrashes', 'restarts', 'leftDown', 'wallSteps', 'splitRounds', 'yields', 'restoredLeases', 'strayGrants', 'releasesElsewhere'] as const) {
        assert.ok(sum((r) => r.counts[k]) >= seeds.length / 10, `${k}: ${sum((r) => r.counts[k])}`);
      }
      for (const k of ['acquired', 'timedOut', 'busy', 'released', 'expired', 'holderCrashes', 'crashedWhileWaiting'] as const) {
        assert.ok(sum((r) => r.stats[k]) >= seeds.length / 10, `${k}: ${sum((r) => r.stats[k])}`);
      }
      assert.ok(sum((r) => r.stats.fairnessPairs) >= seeds.length * 5, 'contenders waiting behind each other');
      assert.ok(sum((r) => r.network.dropped.loss) > 0 && sum((r) => r.network.duplicated) > 0, 'loss and duplication');
    });
  }
});

/**
 * Split votes, made on purpose: a partition into `sides` lets each contender
 * (one per side, on its first node) win its side's grantors only; then the
 * network heals. With a lease of a minute, waiting for leases to run out
 * would time everyone out: the split must be resolved by the protocol
 * (split rounds: the worse contenders' grants yield to the best one), and
 * then the rest must be served one after another, best first.
 */
function splitVote(nodeCount: number, sides: readonly (readonly string[])[], seed: number): { history: LockHistory; ops: LockOp[]; cluster: LockSimCluster } {
  const history = new LockHistory(2_000);
  const cluster = new LockSimCluster({ seed, nodeCount, network: { delayMsMin: 1, delayMsMax: 5 }, rateErrorMax: 0.01, wallOffsetMsMax: 0, recorder: history });
  const ops: LockOp[] = [];
  history.onAnswer = (op) => {
    if (op.outcome === 'acquired') cluster.scheduler.after(100, () => { if (cluster.node(op.node).release(op.key, op.token!)) history.released(op, cluster.nowMs); });
  };
  cluster.network.partition(sides);
  sides.forEach((side, i) => {
    cluster.scheduler.at(i, () => {
      const node = cluster.node(side[0]!);
      const started = node.acquire('k', 60_000, 10_000)!;
      ops.push(history.addOp({ node: node.id, key: 'k', ttlMs: 60_000, waitMs: 10_000, attempt: started.attempt, priority: started.priority, startMs: cluster.nowMs, probe: false }));
    });
  });
  cluster.scheduler.at(200, () => cluster.network.heal());
  cluster.scheduler.runUntil(15_000);
  return { history, ops, cluster };
}

describe('split votes do not livelock', () => {
  const cases: { name: string; nodeCount: number; sides: string[][] }[] = [
    { name: '4 nodes, 2 contenders with 2 grants each', nodeCount: 4, sides: [['n1', 'n2'], ['n3', 'n4']] },
    { name: '6 nodes, 3 contenders with 2 grants each', nodeCount: 6, sides: [['n1', 'n2'], ['n3', 'n4'], ['n5', 'n6']] },
    { name: '5 nodes, 3 contenders with 2, 2 and 1 grants', nodeCount: 5, sides: [['n5', 'n1'], ['n2', 'n3'], ['n4']] },
    { name: '8 nodes, 4 contenders with 2 grants each', nodeCount: 8, sides: [['n1', 'n2'], ['n3', 'n4'], ['n5', 'n6'], ['n7', 'n8']] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { history, ops, cluster } = splitVote(c.nodeCount, c.sides, 7);
      const { violations } = history.check({ rateErrorMax: 0.01, fairSlackMs: 6, strictFairness: false, majority: Math.floor(c.nodeCount / 2) + 1 });
      const context = `\n${history.log.join('\n')}`;
      assert.deepEqual(violations, [], context);
      assert.ok(ops.every((o) => o.outcome === 'acquired'), `every contender got the lock in turn${context}`);
      // Served best first, each within a second or so of the previous release (not after a 60 s lease).
      const byPriority = [...ops].sort((a, b) => (a.priority < b.priority ? -1 : a.priority > b.priority ? 1 : a.node < b.node ? -1 : 1));
      const served = [...ops].sort((a, b) => a.acquiredMs! - b.acquiredMs!);
      assert.deepEqual(served.map((o) => o.id), byPriority.map((o) => o.id), `served in priority order${context}`);
      assert.ok(served[0]!.acquiredMs! < 1_500, `the split was resolved at ${served[0]!.acquiredMs} ms${context}`);
      for (let i = 1; i < served.length; i++) assert.ok(served[i]!.acquiredMs! - served[i - 1]!.endMs! < 1_000, `next served ${served[i]!.acquiredMs! - served[i - 1]!.endMs!} ms after a release${context}`);
      const splitRounds = cluster.nodes.reduce((n, node) => n + (node.acquirer?.stats.splitRounds ?? 0), 0);
      const yields = cluster.nodes.reduce((n, node) => n + (node.grantor?.stats.yields ?? 0), 0);
      assert.ok(splitRounds > 0 && yields > 0, `resolved by split rounds (${splitRounds}) and yields (${yields})`);
    });
  }
});

after(() => {
  if (results.length === 0) return;
  const sum = (f: (r: LockScenarioResult) => number): number => results.reduce((n, r) => n + f(r), 0);
  console.log(
    `locks sim: ${results.length} seeds in ${((performance.now() - startedMs) / 1000).toFixed(1)} s; ` +
    `${sum((r) => r.stats.acquires)} acquires: ${sum((r) => r.stats.acquired)} acquired, ${sum((r) => r.stats.timedOut)} timed out, ${sum((r) => r.stats.busy)} busy, ` +
    `${sum((r) => r.stats.crashedWhileWaiting)} lost to crashes; ${sum((r) => r.stats.released)} released, ${sum((r) => r.stats.expired)} expired, ${sum((r) => r.stats.holderCrashes)} holders died; ` +
    `fairness: ${sum((r) => r.stats.fairnessPairs)} pairs judged, ${sum((r) => r.stats.overtakes)} overtakes (${sum((r) => (r.calm ? r.stats.overtakes : 0))} in calm runs); ` +
    `${sum((r) => r.counts.partitions)} partitions, ${sum((r) => r.counts.crashes)} crashes, ${sum((r) => r.counts.splitRounds)} split rounds, ${sum((r) => r.counts.yields)} yields, ` +
    `${sum((r) => r.eventsRun)} events`,
  );
  const overtakes = results.flatMap((r) => r.overtakes.map((o) => `seed ${r.seed}: ${o}`));
  if (overtakes.length > 0) console.log(`overtakes under faults (a better contender cut off by loss, a partition or a crash), first ${Math.min(5, overtakes.length)}:\n  ${overtakes.slice(0, 5).join('\n  ')}`);
});
