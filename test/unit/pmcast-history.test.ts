import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analysePmHistory, checkPmHistory } from '../../src/sim/pmcast-history.js';
import type { PmAccepted, PmEvent, PmGuarantee, PmHistory, PmLogEntry, PmViolation } from '../../src/sim/pmcast-history.js';

const TD = 1_000;

/** Messages m1..mN from 'a', accepted at the given times (seq = position). */
function sent(...times: number[]): PmAccepted[] {
  return times.map((acceptedMs, i) => ({ seq: i + 1, sender: 'a', text: `m${i + 1}`, acceptedMs }));
}

const ev = (kind: PmEvent['kind'], atMs: number, afterSeq?: number): PmEvent => ({ kind, atMs, afterSeq });

function one(accepted: PmAccepted[], events: PmEvent[], log: PmLogEntry[], tdMs = TD): PmHistory {
  return { tdMs, accepted, participants: [{ id: 'p', log, events }] };
}

function kinds(v: readonly PmViolation[]): PmGuarantee[] {
  return v.map((x) => x.guarantee);
}

function assertOnly(v: readonly PmViolation[], guarantee: PmGuarantee, seqs: number[]): void {
  assert.deepEqual(kinds(v), seqs.map(() => guarantee), JSON.stringify(v, null, 1));
  assert.deepEqual(v.map((x) => x.seq), seqs);
}

test('an online member that logged everything, its own messages too, passes', () => {
  const h: PmHistory = {
    tdMs: TD,
    accepted: [
      { seq: 1, sender: 'a', text: 'hello', acceptedMs: 10 },
      { seq: 2, sender: 'b', text: 'from b', acceptedMs: 20 },
    ],
    participants: [
      { id: 'a', log: ['hello', 'from b'], events: [ev('register', 0, 0)] },
      { id: 'b', log: ['hello', { seq: 2, text: 'from b' }], events: [ev('register', 1, 0)] },
    ],
  };
  assert.deepEqual(checkPmHistory(h), []);
  const { stats } = analysePmHistory(h);
  assert.equal(stats.required, 4);
  assert.equal(stats.logged, 4);
});

test('guarantee 1: an online member that misses a message (even its own) is caught', () => {
  const v = checkPmHistory(one(sent(10, 20, 30), [ev('register', 0, 0)], ['m1', 'm3']));
  assertOnly(v, 1, [2]);
  assert.match(v[0]!.detail, /missed seq 2 "m2" from a: accepted while it was online/);
  assertOnly(checkPmHistory({ tdMs: TD, accepted: sent(10), participants: [{ id: 'a', log: [], events: [ev('register', 0, 0)] }] }), 1, [1]);
});

test('guarantee 1: a disconnect shorter than td must bring everything sent meanwhile', () => {
  const events = [ev('register', 0, 0), ev('disconnect', 100, 1), ev('reconnect', 600, 3)];
  const accepted = sent(50, 200, 500, 700);
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m1', 'm2', 'm3', 'm4'])), []);
  assertOnly(checkPmHistory(one(accepted, events, ['m1', 'm3', 'm4'])), 1, [2]);
});

test('td boundary: R - D == td exactly is still a short disconnect (everything comes)', () => {
  const events = [ev('register', 0, 0), ev('disconnect', 100, 0), ev('reconnect', 100 + TD, 3)];
  const accepted = sent(100, 150, 1_050);
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m1', 'm2', 'm3'])), []);
  assertOnly(checkPmHistory(one(accepted, events, ['m2', 'm3'])), 1, [1]);
  assert.equal(analysePmHistory(one(accepted, events, [])).stats.disconnects.exact, 1);
  // One ms longer: the cut applies (window from 101 ms), m1 at 100 ms must not come.
  const longer = [ev('register', 0, 0), ev('disconnect', 100, 0), ev('reconnect', 101 + TD, 3)];
  assert.deepEqual(checkPmHistory(one(accepted, longer, ['m2', 'm3'])), []);
  assertOnly(checkPmHistory(one(accepted, longer, ['m1', 'm2', 'm3'])), 2, [1]);
});

test('guarantee 2: after more than td away, exactly the last td ms come; acceptedMs == R - td is included', () => {
  const events = [ev('register', 0, 0), ev('disconnect', 100, 0), ev('reconnect', 5_000, 4), ev('disconnect', 9_000, 5)];
  // Window from 4000 ms: m1 (1000) and m2 (3999) are cut, m3 (4000, the edge) and m4 come.
  const accepted = sent(1_000, 3_999, 4_000, 4_500, 6_000);
  const good = ['m3', 'm4', 'm5'];
  assert.deepEqual(checkPmHistory(one(accepted, events, good)), []);
  const { stats } = analysePmHistory(one(accepted, events, good));
  assert.equal(stats.cutOff, 2);
  assert.equal(stats.cutEdgeHits, 1);
  assert.equal(stats.disconnects.long, 1);
  assertOnly(checkPmHistory(one(accepted, events, ['m2', 'm3', 'm4', 'm5'])), 2, [2]);
  assertOnly(checkPmHistory(one(accepted, events, ['m1', 'm3', 'm4', 'm5'])), 2, [1]);
  // The edge message is required; so is the rest of the window; m5 is excused (it went offline again at the end).
  assertOnly(checkPmHistory(one(accepted, events, ['m4'])), 2, [3]);
  assertOnly(checkPmHistory(one(accepted, events, ['m3', 'm5'])), 2, [4]);
});

test('messages sent while online stay owed however long the member is away afterwards', () => {
  // m1 was sent while p was online, but had not reached it when it disconnected for 10 s.
  const events = [ev('register', 0, 0), ev('disconnect', 200, 1), ev('reconnect', 10_200, 3)];
  const accepted = sent(100, 300, 9_500);
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m1', 'm3'])), []);
  assertOnly(checkPmHistory(one(accepted, events, ['m3'])), 1, [1]);
});

test('guarantee 3: a message logged twice is caught, also across lines far apart', () => {
  const v = checkPmHistory(one(sent(10, 20), [ev('register', 0, 0)], ['m1', 'm2', 'm1']));
  assert.deepEqual(kinds(v), [3]);
  assert.match(v[0]!.detail, /lines 1 and 3/);
});

test('guarantee 4: nothing sent before registering or while deregistered; re-registering starts afresh', () => {
  const events = [ev('register', 100, 1), ev('deregister', 300, 2), ev('register', 600, 3)];
  const accepted = sent(50, 200, 400, 700);
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m2', 'm4'])), []);
  assertOnly(checkPmHistory(one(accepted, events, ['m1', 'm2', 'm4'])), 4, [1]);
  assertOnly(checkPmHistory(one(accepted, events, ['m2', 'm3', 'm4'])), 4, [3]);
  // m2 belonged to the first membership, which the deregister ended: it is not required.
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m4'])), []);
});

test('a member that went offline and never came back gets nothing sent after its disconnect', () => {
  const events = [ev('register', 0, 0), ev('disconnect', 150, 1)];
  const accepted = sent(100, 200);
  assert.deepEqual(checkPmHistory(one(accepted, events, [])), [], 'what it was owed is excused: it never reconnected');
  assertOnly(checkPmHistory(one(accepted, events, ['m1', 'm2'])), 2, [2]);
  // The same when it deregistered while offline.
  assertOnly(checkPmHistory(one(accepted, [...events, ev('deregister', 300, 2)], ['m2'])), 2, [2]);
});

test('a crash is not a disconnect: after the restart and reconnect everything is owed; without the reconnect nothing is required', () => {
  const accepted = sent(100, 200, 300);
  const crashed = [ev('register', 0, 0), ev('crash', 150)];
  assert.deepEqual(checkPmHistory(one(accepted, crashed, ['m1'])), []);
  const back = [...crashed, ev('reconnect', 5_000, 3)];
  assert.deepEqual(checkPmHistory(one(accepted, back, ['m1', 'm2', 'm3'])), []);
  assertOnly(checkPmHistory(one(accepted, back, ['m1', 'm3'])), 1, [2]);
});

test('delivery is in order: a hole below a received message is caught even when nothing is required', () => {
  const events = [ev('register', 0, 0), ev('deregister', 1_000, 3)];
  const accepted = sent(100, 200, 300);
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m1', 'm2'])), []);
  assertOnly(checkPmHistory(one(accepted, events, ['m1', 'm3'])), 1, [2]);
  assert.match(checkPmHistory(one(accepted, events, ['m3']))[0]!.detail, /although it received seq 3/);
});

test('the log must be in ascending seq and hold only messages that were sent', () => {
  const accepted = sent(100, 200);
  assertOnly(checkPmHistory(one(accepted, [ev('register', 0, 0)], ['m2', 'm1'])), 'order', [1]);
  const v = checkPmHistory(one(accepted, [ev('register', 0, 0)], ['m1', 'forged', 'm2']));
  assert.deepEqual(kinds(v), ['unknown']);
  assert.match(v[0]!.detail, /line 2/);
  assert.deepEqual(kinds(checkPmHistory(one(accepted, [ev('register', 0, 0)], ['m1', { seq: 7, text: 'm2' }]))), ['input']);
});

test('uncertain msends may appear once, or not at all', () => {
  const h = (log: string[]): PmHistory => ({ ...one(sent(100), [ev('register', 0, 0)], log), uncertain: [{ sender: 'a', text: 'maybe' }] });
  assert.deepEqual(checkPmHistory(h(['m1'])), []);
  assert.deepEqual(checkPmHistory(h(['m1', 'maybe'])), []);
  assert.deepEqual(kinds(checkPmHistory(h(['m1', 'maybe', 'maybe']))), [3]);
});

test('without afterSeq the place comes from atMs; a message in the same ms as the event is neither required nor forbidden', () => {
  const events = [ev('register', 0), ev('disconnect', 200), ev('reconnect', 5_000)];
  const accepted = sent(100, 200, 300, 6_000);
  // m2 shares its ms with the disconnect: before it (owed) or after (cut); m3 is cut.
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m1', 'm4'])), []);
  assert.deepEqual(checkPmHistory(one(accepted, events, ['m1', 'm2', 'm4'])), []);
  assertOnly(checkPmHistory(one(accepted, events, ['m1', 'm3', 'm4'])), 2, [3]);
  assertOnly(checkPmHistory(one(accepted, events, ['m4'])), 1, [1]);
  assert.equal(analysePmHistory(one(accepted, events, [])).stats.ambiguous, 1);
});

test('inconsistent input is reported, not judged', () => {
  const twice = checkPmHistory(one(sent(100), [ev('register', 0, 0), ev('register', 50, 0)], []));
  assert.deepEqual(kinds(twice), ['input']);
  assert.match(twice[0]!.detail, /already registered/);
  const back = checkPmHistory(one(sent(100), [ev('register', 50, 0), ev('disconnect', 10, 0)], []));
  assert.deepEqual(kinds(back), ['input']);
  assert.match(back[0]!.detail, /earlier than event 1/);
  const dupText: PmHistory = { tdMs: TD, accepted: [{ seq: 1, sender: 'a', text: 'x', acceptedMs: 1 }, { seq: 2, sender: 'a', text: 'x', acceptedMs: 2 }], participants: [] };
  assert.deepEqual(kinds(checkPmHistory(dupText)), ['input']);
  const backwards: PmHistory = { tdMs: TD, accepted: sent(200, 100), participants: [] };
  assert.deepEqual(kinds(checkPmHistory(backwards)), ['input']);
});
