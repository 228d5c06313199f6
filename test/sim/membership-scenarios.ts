// Targeted, hand-written membership scenarios on the simulator; registered by
// membership.sim.test.ts (this file is not a test file of its own).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MembershipEvent } from '../../src/core/membership.js';
import { ringNeighbours, shouldDial } from '../../src/core/ring.js';
import { checkConverged, SafetyMonitor } from '../../src/sim/invariants.js';
import { MembershipCluster } from '../../src/sim/membership-cluster.js';
import type { NetworkKnobs } from '../../src/sim/network.js';
import { runRandomScenario } from '../../src/sim/scenario.js';

interface Seen { readonly atMs: number; readonly observer: string; readonly event: MembershipEvent }

const DELAY_MS_MAX = 20;

function makeCluster(size: number, options: { seed?: number; network?: Partial<NetworkKnobs>; start?: number } = {}) {
  const nodes = Array.from({ length: size }, (_, i) => ({ id: `n${i}`, host: `10.0.0.${i + 1}`, port: 7_000 }));
  const c = new MembershipCluster({ seed: options.seed ?? 1, nodes, network: { delayMsMin: 1, delayMsMax: DELAY_MS_MAX, ...options.network } });
  const monitor = new SafetyMonitor(c);
  const seen: Seen[] = [];
  c.addListener({
    onEvents: (observer, events, atMs) => {
      for (const event of events) if (event.type !== 'ignored') seen.push({ atMs, observer, event });
    },
  });
  for (const n of nodes.slice(0, options.start ?? size)) c.start(n.id);
  const about = (id: string, type: MembershipEvent['type'], sinceMs = 0): Seen[] =>
    seen.filter((s) => s.atMs >= sinceMs && s.event.type === type && 'member' in s.event && s.event.member.id === id);
  return { c, monitor, seen, about, cfg: c.config };
}

/** Runs in 10 ms steps until the cluster has converged; returns how long that took. */
function settle(c: MembershipCluster, monitor: SafetyMonitor, limitMs: number): number {
  const startMs = c.nowMs;
  for (;;) {
    const left = checkConverged(c, monitor);
    if (left.length === 0) return c.nowMs - startMs;
    if (c.nowMs - startMs >= limitMs) assert.fail(`not converged within ${limitMs} ms:\n${left.map((v) => `  [${v.invariant}] ${v.detail}`).join('\n')}`);
    c.runFor(10);
  }
}

function assertSafe(monitor: SafetyMonitor): void {
  assert.deepEqual(monitor.violations, []);
}

export function membershipScenarios(): void {
  describe('membership scenarios', () => {
    test('16 nodes started within 100 ms agree on everyone within 500 ms of the last start', () => {
      const { c, monitor } = makeCluster(16, { start: 0 });
      c.nodeIds().forEach((id, i) => c.scheduler.at(i * 6, () => c.start(id)));
      c.runUntil(100);
      assert.ok(settle(c, monitor, 500) <= 500);
      assertSafe(monitor);
    });

    test('one node alone has no neighbour; two nodes have exactly each other, and one side dials', () => {
      const { c, monitor } = makeCluster(2, { start: 1 });
      c.runFor(3_000);
      const n0 = c.node('n0');
      assert.deepEqual(ringNeighbours(n0.spec, n0.membership!.liveOthers()), []);
      c.start('n1');
      settle(c, monitor, 500);
      const n1 = c.node('n1');
      assert.deepEqual(ringNeighbours(n0.spec, n0.membership!.liveOthers()).map((e) => e.id), ['n1']);
      assert.deepEqual(ringNeighbours(n1.spec, n1.membership!.liveOthers()).map((e) => e.id), ['n0']);
      assert.equal(Number(shouldDial(n0.spec, n1.spec)) + Number(shouldDial(n1.spec, n0.spec)), 1);
      assertSafe(monitor);
    });

    test('a 10 s partition: each side declares the other dead and closes its ring; after the heal all converge within 1 s', () => {
      const { c, monitor } = makeCluster(8);
      settle(c, monitor, 1_000);
      const left = ['n0', 'n1', 'n2', 'n3'];
      const right = ['n4', 'n5', 'n6', 'n7'];
      c.network.partition([left, right]);
      c.runFor(5_000);
      const views: [string[], string[]][] = [[left, right], [right, left]];
      for (const [mine, theirs] of views) {
        for (const id of mine) {
          const node = c.node(id);
          for (const other of theirs) assert.equal(node.membership!.get(other)?.state, 'dead', `${id} sees ${other}`);
          const sameSide = mine.filter((x) => x !== id).map((x) => c.node(x).spec);
          const ids = (endpoints: readonly { id: string }[]): string[] => endpoints.map((e) => e.id);
          assert.deepEqual(ids(ringNeighbours(node.spec, node.membership!.liveOthers())), ids(ringNeighbours(node.spec, sameSide)));
        }
      }
      c.runFor(5_000);
      c.network.heal();
      assert.ok(settle(c, monitor, 1_000) <= 1_000);
      assertSafe(monitor);
    });

    test('crash: dead everywhere within deadAfterMs; restart: alive everywhere at a higher incarnation', () => {
      const { c, monitor, about, cfg } = makeCluster(6);
      settle(c, monitor, 1_000);
      const crashMs = c.nowMs;
      c.crash('n2');
      c.runFor(cfg.deadAfterMs + 1);
      const deaths = about('n2', 'dead', crashMs);
      assert.deepEqual(deaths.map((d) => d.observer).sort(), ['n0', 'n1', 'n3', 'n4', 'n5']);
      for (const d of deaths) assert.ok(d.atMs <= crashMs + cfg.deadAfterMs, `${d.observer} took ${d.atMs - crashMs} ms`);
      assert.deepEqual(checkConverged(c, monitor), [], 'the ring closes over the gap');
      c.start('n2');
      assert.ok(settle(c, monitor, 500) <= 500);
      for (const id of ['n0', 'n1', 'n3', 'n4', 'n5']) assert.equal(c.node(id).membership!.get('n2')?.incarnation, 2);
      assertSafe(monitor);
    });

    test('a quick restart replaces the old incarnation without anyone declaring a death', () => {
      const { c, monitor, about } = makeCluster(6);
      settle(c, monitor, 1_000);
      const crashMs = c.nowMs;
      c.crash('n2');
      c.runFor(100);
      c.start('n2');
      settle(c, monitor, 500);
      assert.deepEqual(about('n2', 'dead', crashMs), []);
      assert.equal(about('n2', 'restarted', crashMs).length, 5);
      assertSafe(monitor);
    });

    test('a node alive but silent (link cut) for longer than deadAfterMs is declared dead in time, and recovers', () => {
      const { c, monitor, about, cfg } = makeCluster(5);
      settle(c, monitor, 1_000);
      const cutMs = c.nowMs;
      c.network.cutLink('n3');
      c.runFor(3_000);
      const deaths = about('n3', 'dead', cutMs);
      assert.equal(deaths.length, 4);
      const earliestMs = cutMs + cfg.deadAfterMs - 1.1 * cfg.heartbeatIntervalMs - DELAY_MS_MAX;
      for (const d of deaths) assert.ok(d.atMs >= earliestMs && d.atMs <= cutMs + cfg.deadAfterMs, `${d.observer} after ${d.atMs - cutMs} ms`);
      assert.equal(about('n3', 'suspect', cutMs).length, 4, 'suspect comes first');
      for (const id of ['n0', 'n1', 'n2', 'n4']) assert.equal(c.node('n3').membership!.get(id)?.state, 'dead', 'n3 hears nobody either');
      c.network.restoreLink('n3');
      assert.ok(settle(c, monitor, 500) <= 500);
      assert.equal(about('n3', 'recovered', cutMs).length, 4);
      assert.equal(c.node('n0').membership!.get('n3')?.incarnation, 1);
      assertSafe(monitor);
    });

    test('a node frozen for 3 s is declared dead by the others, suspects nobody itself, and recovers', () => {
      const { c, monitor, about, seen } = makeCluster(5);
      settle(c, monitor, 1_000);
      const stallMs = c.nowMs;
      c.stall('n1', 3_000);
      c.runFor(3_000);
      assert.equal(about('n1', 'dead', stallMs).length, 4);
      assert.ok(settle(c, monitor, 500) <= 500);
      const byN1 = seen.filter((s) => s.observer === 'n1' && s.atMs >= stallMs);
      assert.deepEqual(byN1.filter((s) => s.event.type === 'suspect' || s.event.type === 'dead'), []);
      assert.ok(byN1.some((s) => s.event.type === 'stall'), 'n1 noticed its own stall');
      assertSafe(monitor);
    });

    test('a node frozen for 2 s (its host still answers probes) is not declared dead, and recovers', () => {
      const { c, monitor, about, seen } = makeCluster(5);
      settle(c, monitor, 1_000);
      const stallMs = c.nowMs;
      c.stall('n1', 2_000);
      c.runFor(2_500);
      assert.ok(about('n1', 'suspect', stallMs).length > 0, 'the others suspected it');
      assert.ok(seen.some((s) => s.atMs >= stallMs && s.event.type === 'probe'), 'and probed it');
      assert.deepEqual(about('n1', 'dead', stallMs), []);
      assert.ok(settle(c, monitor, 500) <= 500);
      assertSafe(monitor);
    });

    test('a crashed node is dead at deadAfterMs although its host answered probes while it was only suspect', () => {
      const { c, monitor, about, cfg } = makeCluster(5);
      settle(c, monitor, 1_000);
      const stallMs = c.nowMs;
      c.stall('n2', 1_300);
      // Suspect from about 1 s on, probed and answering; crashed at 1.2 s (still frozen).
      c.scheduler.at(stallMs + 1_200, () => c.crash('n2'));
      c.runFor(3_000);
      const deaths = about('n2', 'dead', stallMs);
      assert.equal(deaths.length, 4);
      for (const d of deaths) assert.ok(d.atMs <= stallMs + cfg.deadAfterMs + DELAY_MS_MAX + 100, `${d.observer} after ${d.atMs - stallMs} ms`);
      assertSafe(monitor);
    });

    test('a 300 ms stall every 10 s causes no suspicion (16 nodes, no loss, 60 s)', () => {
      const { c, monitor, seen } = makeCluster(16);
      settle(c, monitor, 1_000);
      const fromMs = c.nowMs;
      for (let k = 0; k < 6; k++) c.scheduler.at(fromMs + 1_000 + k * 10_000, () => c.stall('n5', 300));
      c.runFor(60_000);
      assert.deepEqual(seen.filter((s) => s.atMs >= fromMs && (s.event.type === 'suspect' || s.event.type === 'dead')), []);
      assertSafe(monitor);
    });

    test('5 minutes at 5% loss with a 300 ms stall every 10 s: no node is ever declared dead', () => {
      const { c, monitor, seen } = makeCluster(16, { seed: 5, network: { lossProbability: 0.05 } });
      settle(c, monitor, 1_000);
      const fromMs = c.nowMs;
      for (let k = 0; k < 30; k++) c.scheduler.at(fromMs + 1_000 + k * 10_000, () => c.stall('n9', 300));
      c.runFor(300_000);
      assert.deepEqual(seen.filter((s) => s.atMs >= fromMs && s.event.type === 'dead'), []);
      assert.ok(c.network.stats.dropped.loss > 0);
      assertSafe(monitor);
    });

    test('a graceful leave is dead (left) everywhere within the network delay, and the ring closes', () => {
      const { c, monitor, about } = makeCluster(6);
      settle(c, monitor, 1_000);
      const leaveMs = c.nowMs;
      c.leave('n4');
      c.runFor(DELAY_MS_MAX);
      const deaths = about('n4', 'dead', leaveMs);
      assert.equal(deaths.length, 5);
      assert.ok(deaths.every((d) => d.event.type === 'dead' && d.event.reason === 'left'));
      assert.deepEqual(checkConverged(c, monitor), []);
      assertSafe(monitor);
    });

    test('a late joiner learns everyone, and everyone learns it, within 300 ms', () => {
      const { c, monitor } = makeCluster(13, { start: 12 });
      settle(c, monitor, 1_000);
      c.runFor(2_000);
      c.start('n12');
      assert.ok(settle(c, monitor, 300) <= 300);
      assertSafe(monitor);
    });

    test('the same seed replays the same run; another seed does not', () => {
      const a = runRandomScenario(7);
      assert.equal(runRandomScenario(7).fingerprint, a.fingerprint);
      assert.notEqual(runRandomScenario(8).fingerprint, a.fingerprint);
    });
  });
}
