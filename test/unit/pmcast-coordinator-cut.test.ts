// The coordinator core's td cut keeps what a member was owed when it went offline
// (found by the pmcast simulation: a message sent while a member was online, not yet
// delivered when it disconnected, was skipped by the cut after an absence longer than td).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COORDINATOR_DEFAULTS, CoordinatorCore } from '../../src/core/pmcast/coordinator.js';
import type { PmCommand } from '../../src/core/pmcast/coordinator.js';

const TD = 1_000;

function setup(): { core: CoordinatorCore; run: (cmd: PmCommand, atMs: number) => number } {
  const core = new CoordinatorCore({ ...COORDINATOR_DEFAULTS, tdMs: TD });
  const run = (cmd: PmCommand, atMs: number): number => {
    const { result } = core.apply(cmd, atMs);
    assert.ok(result.ok, JSON.stringify(result));
    return result.seq;
  };
  run({ kind: 'register', id: 'a', host: 'h', port: 1 }, 0);
  run({ kind: 'register', id: 'b', host: 'h', port: 2 }, 0);
  return { core, run };
}

test('after more than td away a member still gets what it was owed when it left, then only the last td ms', () => {
  const { core, run } = setup();
  const msend = (text: string, atMs: number): number => run({ kind: 'msend', id: 'a', text }, atMs);
  msend('m1', 100);
  msend('m2', 150);
  assert.ok(core.ack('b', 1));
  run({ kind: 'disconnect', id: 'b' }, 200); // m2 is still owed to b
  msend('m3', 300); // while b is away, before its window
  msend('m4', 2_600); // in its window (from 2000)
  run({ kind: 'reconnect', id: 'b', host: 'h', port: 3 }, 3_000);
  assert.deepEqual(core.owed('b', 0, 10), [2, 4]);
  assert.deepEqual(core.member('b')!.notOwed, [{ fromSeq: 3, toSeq: 3 }]);
  // Acks move past the range that is not owed.
  const moved = core.ack('b', 2)!;
  assert.equal(moved.ackedSeq, 3);
  assert.equal(moved.notOwed, undefined);
  assert.deepEqual(core.owed('b', 0, 10), [4]);
});

test('with nothing owed at the disconnect the cut is as before: ackedSeq moves below the window', () => {
  const { core, run } = setup();
  run({ kind: 'msend', id: 'a', text: 'm1' }, 100);
  core.ack('b', 1);
  run({ kind: 'disconnect', id: 'b' }, 200);
  run({ kind: 'msend', id: 'a', text: 'm2' }, 300);
  run({ kind: 'msend', id: 'a', text: 'm3' }, 2_000); // exactly R - td: included
  run({ kind: 'reconnect', id: 'b', host: 'h', port: 3 }, 3_000);
  assert.equal(core.member('b')!.ackedSeq, 2);
  assert.equal(core.member('b')!.notOwed, undefined);
  assert.deepEqual(core.owed('b', 0, 10), [3]);
});

test('two long absences in a row, each leaving messages undelivered, skip two ranges', () => {
  const { core, run } = setup();
  const msend = (text: string, atMs: number): number => run({ kind: 'msend', id: 'a', text }, atMs);
  msend('m1', 100); // owed to b, never acked
  run({ kind: 'disconnect', id: 'b' }, 200);
  msend('m2', 300); // cut
  run({ kind: 'reconnect', id: 'b', host: 'h', port: 3 }, 5_000);
  msend('m3', 5_100); // online
  run({ kind: 'disconnect', id: 'b' }, 5_200);
  msend('m4', 5_300); // cut
  msend('m5', 9_500); // window
  run({ kind: 'reconnect', id: 'b', host: 'h', port: 4 }, 10_000);
  assert.deepEqual(core.owed('b', 0, 10), [1, 3, 5]);
  assert.deepEqual(core.owed('b', 1, 10), [3, 5]);
  assert.deepEqual(core.owed('b', 3, 1), [5]);
});

test('purge keeps what a member offline longer than td still needs from before it left, and lets go once it has it', () => {
  const { core, run } = setup();
  run({ kind: 'msend', id: 'a', text: 'm1' }, 100);
  core.ack('a', 1);
  run({ kind: 'disconnect', id: 'b' }, 200); // b never got m1
  assert.equal(core.purgeableUpTo(10_000), 0);
  run({ kind: 'reconnect', id: 'b', host: 'h', port: 3 }, 10_000);
  assert.deepEqual(core.owed('b', 0, 10), [1]);
  core.ack('b', 1);
  assert.equal(core.purgeableUpTo(10_000), 1);
});

test('a restart from a store that kept the new fields keeps the ranges', () => {
  const { core, run } = setup();
  run({ kind: 'msend', id: 'a', text: 'm1' }, 100);
  run({ kind: 'disconnect', id: 'b' }, 200);
  run({ kind: 'msend', id: 'a', text: 'm2' }, 300);
  run({ kind: 'reconnect', id: 'b', host: 'h', port: 3 }, 5_000);
  const restored = new CoordinatorCore({ ...COORDINATOR_DEFAULTS, tdMs: TD }, {
    members: core.allMembers().map((m) => JSON.parse(JSON.stringify(m))),
    lastSeq: core.lastSequence,
    messages: [{ seq: 1, acceptedMs: 100 }, { seq: 2, acceptedMs: 300 }],
  });
  assert.deepEqual(restored.owed('b', 0, 10), [1]);
});
