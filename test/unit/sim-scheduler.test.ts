import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimClock } from '../../src/sim/clock.js';
import { SimRandom } from '../../src/sim/random.js';
import { Scheduler } from '../../src/sim/scheduler.js';

test('events run in time order and time jumps to each one', () => {
  const s = new Scheduler();
  const log: string[] = [];
  s.at(30, () => log.push(`c@${s.nowMs}`));
  s.at(10, () => log.push(`a@${s.nowMs}`));
  s.at(20, () => log.push(`b@${s.nowMs}`));
  s.runUntil(100);
  assert.deepEqual(log, ['a@10', 'b@20', 'c@30']);
  assert.equal(s.nowMs, 100);
});

test('events at the same time run in the order they were scheduled, also when scheduled while running', () => {
  const s = new Scheduler();
  const log: number[] = [];
  for (let i = 0; i < 5; i++) s.at(7, () => log.push(i));
  s.at(7, () => s.at(7, () => log.push(99)));
  s.at(7, () => log.push(5));
  s.runUntil(7);
  assert.deepEqual(log, [0, 1, 2, 3, 4, 5, 99]);
});

test('a random mix comes out sorted by (time, insertion order)', () => {
  const r = new SimRandom(11);
  const s = new Scheduler();
  const out: { t: number; i: number }[] = [];
  const want: { t: number; i: number }[] = [];
  for (let i = 0; i < 5_000; i++) {
    const t = r.int(0, 200);
    want.push({ t, i });
    s.at(t, () => out.push({ t: s.nowMs, i }));
  }
  s.runUntil(1_000);
  want.sort((a, b) => a.t - b.t || a.i - b.i);
  assert.deepEqual(out, want);
  assert.equal(s.pendingCount, 0);
});

test('runUntil leaves later events pending; after() is relative; step runs one event', () => {
  const s = new Scheduler({ startMs: 1_000 });
  const log: number[] = [];
  s.after(5, () => log.push(s.nowMs));
  s.at(2_000, () => log.push(s.nowMs));
  s.runFor(500);
  assert.deepEqual(log, [1_005]);
  assert.equal(s.nowMs, 1_500);
  assert.equal(s.peekMs(), 2_000);
  assert.equal(s.step(), true);
  assert.deepEqual(log, [1_005, 2_000]);
  assert.equal(s.step(), false);
});

test('a cancelled event does not run', () => {
  const s = new Scheduler();
  let ran = false;
  const h = s.at(5, () => { ran = true; });
  h.cancel();
  s.runUntil(10);
  assert.equal(ran, false);
  assert.equal(s.executedCount, 0);
});

test('the past and non-finite times are refused; time never goes back', () => {
  const s = new Scheduler();
  s.runUntil(50);
  assert.throws(() => s.at(49, () => {}), RangeError);
  assert.throws(() => s.at(Number.POSITIVE_INFINITY, () => {}), RangeError);
  assert.throws(() => s.after(-1, () => {}), RangeError);
  const c = new SimClock(10);
  c.advanceTo(10);
  assert.throws(() => c.advanceTo(9), RangeError);
});

test('a livelock hits eventsMax instead of hanging', () => {
  const s = new Scheduler({ eventsMax: 100 });
  const again = (): void => { s.after(0, again); };
  s.at(0, again);
  assert.throws(() => s.runUntil(1), /eventsMax/);
});
