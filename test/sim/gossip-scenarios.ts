// Targeted, hand-written gossip scenarios on the simulator; registered by
// gossip.sim.test.ts (this file is not a test file of its own).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GossipCluster } from '../../src/sim/gossip-cluster.js';
import type { GossipSimKnobs } from '../../src/sim/gossip-cluster.js';
import { checkGossipConverged, GossipMonitor } from '../../src/sim/gossip-invariants.js';
import { runGossipScenario } from '../../src/sim/gossip-scenario.js';
import type { NetworkKnobs } from '../../src/sim/network.js';
import { SimRandom } from '../../src/sim/random.js';
import { randomCubicLinks } from '../../src/sim/static-graph.js';

const BYTES_MAX = 1_024;

interface Options {
  readonly overlay?: 'static' | 'dynamic';
  readonly seed?: number;
  readonly knobs?: Partial<GossipSimKnobs>;
  readonly network?: Partial<NetworkKnobs>;
  readonly digestAboveMax?: number;
}

function makeCluster(size: number, o: Options = {}) {
  const seed = o.seed ?? 1;
  const nodes = Array.from({ length: size }, (_, i) => ({ id: `g${i}`, host: `10.0.0.${i + 1}`, port: 7_000 }));
  const ids = nodes.map((n) => n.id);
  const overlay = o.overlay === 'dynamic' ? { kind: 'dynamic' as const } : { kind: 'static' as const, links: randomCubicLinks(new SimRandom(seed), ids) };
  const c = new GossipCluster({
    seed, nodes, overlay,
    network: { delayMsMin: 1, delayMsMax: 5, ...o.network },
    knobs: o.knobs,
    gossip: { messageBytesMax: BYTES_MAX, digestAboveMax: o.digestAboveMax ?? 1_024 },
  });
  const monitor = new GossipMonitor(c, BYTES_MAX);
  for (const id of ids) c.start(id);
  c.runFor(100);
  return { c, monitor, ids };
}

/** Runs in 50 ms steps until every live node holds every acknowledged message; returns how long that took. */
function settle(c: GossipCluster, monitor: GossipMonitor, limitMs: number): number {
  const startMs = c.nowMs;
  for (;;) {
    const left = checkGossipConverged(c, monitor).violations;
    if (left.length === 0) return c.nowMs - startMs;
    if (c.nowMs - startMs >= limitMs) assert.fail(`not converged within ${limitMs} ms:\n${left.map((v) => `  [${v.invariant}] ${v.detail}`).join('\n')}`);
    c.runFor(50);
  }
}

function submitMany(c: GossipCluster, at: readonly string[], count: number, tag: string): void {
  for (let i = 0; i < count; i++) assert.ok(c.submit(at[i % at.length]!, `${tag} ${i}`).ok);
}

export function gossipScenarios(): void {
  describe('gossip scenarios', () => {
    test('a seed replays exactly: the same fingerprint twice', () => {
      for (const seed of [7, 4242]) assert.equal(runGossipScenario(seed).fingerprint, runGossipScenario(seed).fingerprint);
      assert.notEqual(runGossipScenario(7).fingerprint, runGossipScenario(8).fingerprint);
    });

    for (const overlay of ['static', 'dynamic'] as const) {
      test(`16 nodes, ${overlay} overlay: flooding alone reaches all; kill two, submit more, restart them with their stores: all hold every message once`, () => {
        // Anti-entropy far away, so the first phase shows flooding by itself.
        const { c, monitor, ids } = makeCluster(16, { overlay, knobs: { antiEntropyMsMin: 60_000, antiEntropyMsMax: 60_000 } });
        c.runFor(1_500); // dynamic: every view holds every node
        submitMany(c, ['g0', 'g5', 'g11'], 12, 'before');
        c.runFor(200);
        assert.deepEqual(checkGossipConverged(c, monitor).violations, [], 'flooding delivered everything within 200 ms');
        for (const id of ids) assert.equal(c.node(id).disk.size, 12);
        c.setKnobs({ antiEntropyMsMin: 1_000, antiEntropyMsMax: 2_000 });
        c.crash('g3');
        c.crash('g9');
        submitMany(c, ['g0', 'g7', 'g14'], 30, 'while two are down');
        c.runFor(2_000);
        c.start('g3');
        c.start('g9');
        assert.equal(c.node('g3').core!.config.incarnation, 2);
        assert.ok(settle(c, monitor, 10_000) <= 10_000);
        for (const id of ids) assert.equal(c.node(id).disk.size, 42);
        assert.deepEqual(monitor.violations, []);
      });
    }

    test('a partition: each side keeps gossiping; after the heal everyone holds both sides\' messages', () => {
      const { c, monitor, ids } = makeCluster(12, { overlay: 'dynamic', seed: 3 });
      c.network.partition([ids.slice(0, 6), ids.slice(6)]);
      c.runFor(1_500);
      submitMany(c, ['g1', 'g2'], 10, 'left');
      submitMany(c, ['g8', 'g10'], 10, 'right');
      c.runFor(1_000);
      for (const id of ids) assert.equal(c.node(id).disk.size, 10, `${id} holds its side's messages`);
      c.network.heal();
      const ms = settle(c, monitor, 10_000);
      assert.ok(ms <= 6_000, `converged ${ms} ms after the heal`);
      assert.deepEqual(monitor.violations, []);
    });

    test('a submit whose origin crashes before the commit was never acknowledged and appears nowhere; the restart starts a new stream', () => {
      const { c, monitor, ids } = makeCluster(8, { knobs: { commitDelayMsMax: 5 } });
      const before = c.submit('g2', 'durable');
      c.runFor(10);
      assert.ok(before.ok && monitor.acknowledged.has(before.message.id));
      let lost: string | undefined;
      for (let attempt = 0; attempt < 100 && !lost; attempt++) {
        const r = c.submit('g2', `maybe ${attempt}`);
        assert.ok(r.ok);
        if (c.node('g2').pendingCount > 0) {
          c.crash('g2');
          lost = r.message.id;
        } else c.runFor(10);
      }
      assert.ok(lost, 'a crash caught a write in flight');
      assert.ok(!monitor.acknowledged.has(lost));
      c.start('g2');
      const next = c.submit('g2', 'after the restart');
      assert.ok(next.ok && next.message.incarnation === 2 && next.message.seq === 1);
      settle(c, monitor, 5_000);
      for (const id of ids) assert.equal(c.node(id).disk.get(lost), undefined);
      assert.deepEqual(monitor.violations, []);
    });

    test('re-sync follows the difference: a node that missed 2,000 messages fetches each once, in bounded batches', () => {
      const { c, monitor } = makeCluster(8, { knobs: { batchMax: 500 } });
      submitMany(c, ['g0', 'g4'], 200, 'early');
      c.runFor(500);
      c.crash('g6');
      submitMany(c, ['g0', 'g1', 'g2', 'g3'], 2_000, 'missed');
      c.runFor(3_000);
      const batchMessagesBefore = c.stats.batchMessages;
      c.start('g6');
      const ms = settle(c, monitor, 10_000);
      assert.equal(c.node('g6').disk.size, 2_200);
      const sent = c.stats.batchMessages - batchMessagesBefore;
      // g6 asks its neighbours at once, so a message may come from each; never the whole store per round.
      assert.ok(sent >= 2_000 && sent <= 3 * 2_000, `anti-entropy sent ${sent} messages for 2,000 missing`);
      assert.ok(ms <= 3_000, `re-synced in ${ms} ms (simulated)`);
      assert.deepEqual(monitor.violations, []);
    });

    test('a hole that never fills (a failed write at the origin) does not stall anti-entropy behind a short digest', () => {
      // Regression: with the held-above list cut to its first entries, the peer was sent the same
      // messages it already held, every round, and never the one it lacked.
      const { c, monitor, ids } = makeCluster(6, { digestAboveMax: 8, knobs: { batchMax: 4 } });
      submitMany(c, ['g0'], 3, 'first');
      c.runFor(50);
      c.setKnobs({ writeFailureProbability: 1 });
      assert.ok(c.submit('g0', 'never stored').ok);
      c.runFor(10);
      c.setKnobs({ writeFailureProbability: 0 });
      c.network.cutLink('g5');
      submitMany(c, ['g0'], 40, 'second');
      c.runFor(50);
      c.network.restoreLink('g5');
      submitMany(c, ['g0'], 40, 'third');
      const sentBefore = c.stats.batchMessages;
      settle(c, monitor, 10_000);
      c.runFor(10_000);
      for (const id of ids) assert.equal(c.node(id).disk.size, 83);
      const sent = c.stats.batchMessages - sentBefore;
      assert.ok(sent <= 3 * 40, `anti-entropy sent ${sent} messages to repair 40`);
      assert.deepEqual(monitor.violations, []);
    });
  });
}
