// Hand-made pmcast runs on the simulated cluster, each aimed at one edge of
// the guarantees, each judged by the history checker too.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PmCluster } from '../../src/sim/pmcast-cluster.js';
import type { CommandOutcome, PmClusterOptions } from '../../src/sim/pmcast-cluster.js';
import { analysePmHistory } from '../../src/sim/pmcast-history.js';
import type { PmAnalysis } from '../../src/sim/pmcast-history.js';

/** Every segment takes exactly this long, so a command sent at t is accepted at t + DELAY. */
const DELAY = 2;

function cluster(ids: string[], tdMs: number, more: Partial<PmClusterOptions> = {}): PmCluster {
  const c = new PmCluster({ seed: 1, tdMs, participantIds: ids, network: { delayMsMin: DELAY, delayMsMax: DELAY }, noticeMsMax: 0, ...more });
  c.coordinator.start();
  for (const id of ids) c.participant(id).start();
  return c;
}

/** Runs one command line at participant `id` to its outcome, and asserts the coordinator accepted it (unless `expect` says otherwise). */
function cmd(c: PmCluster, id: string, line: string, expect: CommandOutcome['kind'] = 'ok'): CommandOutcome {
  let out: CommandOutcome | undefined;
  c.participant(id).command(line, (o) => {
    out = o;
  });
  while (!out && c.scheduler.step());
  assert.ok(out, `${id} ${line}: no outcome`);
  assert.equal(out.kind, expect, `${id} ${line}: ${JSON.stringify(out)}`);
  return out;
}

/** Sends each [atMs, id, line] so that the coordinator accepts it at exactly atMs; returns when all are answered. */
function cmdsAt(c: PmCluster, ...commands: [number, string, string][]): void {
  const outs: { atMs: number; out: CommandOutcome }[] = [];
  for (const [atMs, id, line] of commands) {
    c.scheduler.at(atMs - DELAY, () => c.participant(id).command(line, (out) => outs.push({ atMs, out })));
  }
  while (outs.length < commands.length && c.scheduler.step());
  assert.equal(outs.length, commands.length);
  for (const { atMs, out } of outs) assert.ok(out.kind === 'ok' && out.result.acceptedMs === atMs, `accepted at ${atMs}: ${JSON.stringify(out)}`);
}

function checked(c: PmCluster): PmAnalysis {
  const a = analysePmHistory(c.history());
  assert.deepEqual(a.violations, []);
  assert.deepEqual(c.problems, []);
  return a;
}

/** Breaks the coordinator's delivery stream to `id`. */
function breakDelivery(c: PmCluster, id: string): void {
  const end = c.net.openEnds().find((e) => e.node === c.coordinator.node && e.peer === id);
  assert.ok(end, `a delivery stream to ${id}`);
  c.net.break(end);
  c.runFor(1);
}

export function pmcastScenarios(): void {
  describe('pmcast scenarios', () => {
    test('a message not yet delivered when a member disconnects still comes after an absence longer than td', () => {
      const c = cluster(['a', 'b'], 500, { coordinator: { redialMsMin: 60_000, redialMsMax: 60_000 } });
      cmd(c, 'a', 'register 1000');
      cmd(c, 'b', 'register 1000');
      breakDelivery(c, 'b');
      cmd(c, 'a', 'msend owed');
      cmd(c, 'b', 'disconnect');
      c.runFor(200);
      cmd(c, 'a', 'msend cut');
      c.runFor(2_000);
      cmd(c, 'a', 'msend fresh');
      cmd(c, 'b', 'reconnect 1001');
      c.runFor(100);
      assert.deepEqual(c.participant('b').log, ['owed', 'fresh']);
      assert.equal(checked(c).stats.cutOff, 1);
    });

    test('td edges: away exactly td gets everything; the window includes a message accepted at exactly R - td and nothing a ms older', () => {
      const td = 1_000;
      const c = cluster(['a', 'exact', 'edge', 'late'], td);
      for (const id of ['a', 'exact', 'edge', 'late']) cmd(c, id, 'register 1000');
      const d = 1_000;
      cmdsAt(
        c,
        [d, 'exact', 'disconnect'], [d, 'edge', 'disconnect'], [d, 'late', 'disconnect'],
        [d + 50, 'a', 'msend early'], [d + 100, 'a', 'msend at-edge'], [d + 500, 'a', 'msend middle'],
        [d + td, 'exact', 'reconnect 1001'], [d + 100 + td, 'edge', 'reconnect 1001'], [d + 101 + td, 'late', 'reconnect 1001'],
      );
      c.runFor(100);
      assert.deepEqual(c.participant('exact').log, ['early', 'at-edge', 'middle']);
      assert.deepEqual(c.participant('edge').log, ['at-edge', 'middle']);
      assert.deepEqual(c.participant('late').log, ['middle']);
      const { stats } = checked(c);
      assert.equal(stats.disconnects.exact, 1);
      assert.equal(stats.disconnects.long, 2);
      assert.ok(stats.cutEdgeHits >= 1);
    });

    test('a participant killed between a log line and its state writes that message once after restart + reconnect', () => {
      const c = cluster(['a', 'b'], 1_000, { participant: { diskMsMax: 1 } });
      cmd(c, 'a', 'register 1000');
      cmd(c, 'b', 'register 1000');
      cmd(c, 'a', 'msend first');
      c.runFor(50);
      const b = c.participant('b');
      b.crashAfterNextLine = true;
      cmd(c, 'a', 'msend torn');
      c.runFor(50);
      assert.equal(b.running, false);
      assert.deepEqual(b.log, ['first', 'torn']);
      assert.equal(b.saved.logLines, 1);
      cmd(c, 'a', 'msend while-down');
      c.runFor(500);
      b.start();
      assert.deepEqual(b.log, ['first'], 'the line the state does not count is cut');
      cmd(c, 'b', 'reconnect 1001');
      c.runFor(100);
      assert.deepEqual(b.log, ['first', 'torn', 'while-down']);
      assert.equal(b.stats.linesCut, 1);
      checked(c);
    });

    test('acks lost in a coordinator crash bring redeliveries, which the participants drop', () => {
      const c = cluster(['a', 'b'], 1_000, { coordinator: { ackFlushMs: 60_000 } });
      cmd(c, 'a', 'register 1000');
      cmd(c, 'b', 'register 1000');
      for (let i = 1; i <= 5; i++) cmd(c, 'a', `msend m${i}`);
      c.runFor(100);
      c.coordinator.crash();
      c.runFor(300);
      c.coordinator.start();
      c.runFor(300);
      for (const id of ['a', 'b']) {
        assert.deepEqual(c.participant(id).log, ['m1', 'm2', 'm3', 'm4', 'm5']);
        assert.equal(c.participant(id).stats.duplicatesDropped, 5);
      }
      checked(c);
    });

    test('purge: nothing older than td stays once everyone has it, except what an absent member is still owed from before it left', () => {
      const c = cluster(['a', 'b'], 500, { coordinator: { redialMsMin: 60_000, redialMsMax: 60_000, purgeEveryMs: 50 } });
      cmd(c, 'a', 'register 1000');
      cmd(c, 'b', 'register 1000');
      cmd(c, 'a', 'msend m1');
      c.runFor(1_000);
      assert.equal(c.coordinator.store.messages.size, 0);
      breakDelivery(c, 'b');
      cmd(c, 'a', 'msend pinned');
      cmd(c, 'b', 'disconnect');
      c.runFor(3_000);
      assert.deepEqual([...c.coordinator.store.messages.values()].map((m) => m.text), ['pinned']);
      cmd(c, 'b', 'reconnect 1001');
      c.runFor(1_000);
      assert.equal(c.coordinator.store.messages.size, 0);
      assert.deepEqual(c.participant('b').log, ['m1', 'pinned']);
      checked(c);
    });

    test('deregister then register again: nothing sent in between, nothing from before; reconnect on another port', () => {
      const c = cluster(['a', 'b'], 1_000);
      cmd(c, 'a', 'register 1000');
      cmd(c, 'b', 'register 1000');
      cmd(c, 'a', 'msend before');
      c.runFor(50);
      cmd(c, 'b', 'deregister');
      assert.equal(c.net.listening('b', 1000), false, 'the receiver let go of its port');
      cmd(c, 'a', 'msend between');
      cmd(c, 'b', 'msend refused-locally', 'refused');
      cmd(c, 'b', 'register 1001');
      cmd(c, 'a', 'msend after');
      cmd(c, 'b', 'disconnect');
      cmd(c, 'a', 'msend away');
      cmd(c, 'b', 'reconnect 1002');
      c.runFor(100);
      assert.deepEqual(c.participant('b').log, ['before', 'after', 'away']);
      assert.equal(c.coordinator.core!.member('b')!.port, 1002);
      assert.deepEqual(cmd(c, 'b', 'reconnect 1003', 'refused'), { kind: 'refused', why: 'already online (disconnect first)' });
      checked(c);
    });
  });
}
