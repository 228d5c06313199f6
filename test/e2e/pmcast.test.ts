// Seed 004 end to end (DESIGN.md section 1, "Participant and coordinator
// files"): the real `coordinator` and `participant` binaries on 127.0.0.1,
// driven as a person would — config files, commands on the participant's
// standard input, its one-line answers, its message log file. After every
// test the shared history checker (src/sim/pmcast-history.ts) verifies the
// four guarantees from the ok-lines (msend seq/at; register, disconnect,
// reconnect, deregister at/seq) and the log files:
//   - a disconnect shorter than td: everything sent meanwhile arrives, once;
//   - a disconnect longer than td: exactly the messages of the last td before
//     the reconnect (coordinator clock, ms), none older — a steady stream of
//     messages through the whole absence puts the cut in the middle of it;
//   - deregister then register again: nothing sent in between, the rest yes;
//   - reconnect on a different port (the old one is released), also while
//     others keep sending during repeated disconnect/reconnect cycles;
//   - 10 participants sending 50 messages each at once: every log has all 500
//     exactly once, each sender's messages in the order it sent them.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertGuarantees, Coordinator, PmParticipant, portIsFree, writeCoordinatorConfig } from '../helpers/pmcast.js';
import { freePort, tempDir } from '../helpers/proc.js';

interface Group {
  readonly dir: string;
  readonly coordinator: Coordinator;
  readonly tdMs: number;
  readonly participants: PmParticipant[];
}

/** A coordinator with td seconds and started participants p1..pN (not registered yet). */
async function group(t: TestContext, tdSeconds: number, n: number): Promise<Group> {
  const dir = tempDir(t, 'grapevine-pmcast-');
  const port = await freePort();
  const coordinator = await Coordinator.start(t, writeCoordinatorConfig(join(dir, 'coordinator.conf'), port, tdSeconds), port);
  const participants = Array.from({ length: n }, (_, i) => new PmParticipant(t, `p${i + 1}`, dir, port).start());
  return { dir, coordinator, tdMs: Math.round(tdSeconds * 1000), participants };
}

async function ports(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort());
  return out;
}

/** Sends `count` messages "tag-i" from p, one after another, each acknowledged. */
async function sendAll(p: PmParticipant, tag: string, count: number): Promise<void> {
  for (let i = 1; i <= count; i++) await p.msend(`${tag}-${i}`);
}

test('pmcast: a disconnect shorter than td loses nothing', async (t) => {
  const g = await group(t, 3, 3);
  const [a, b, c] = g.participants as [PmParticipant, PmParticipant, PmParticipant];
  const [pa, pb, pc] = await ports(3);
  await a.register(pa!);
  await b.register(pb!);
  await c.register(pc!);
  await sendAll(b, 'short-before', 5);

  const off = await a.disconnect();
  assert.ok(await portIsFree(pa!), 'a disconnected participant releases its receiver port');
  await Promise.all([sendAll(b, 'short-while-b', 10), sendAll(c, 'short-while-c', 10)]);
  // A backslash and a space inside a message are logged exactly (a backslash as \\).
  await c.msend('short back\\slash and spaces');
  await sleep(300);
  const back = await a.reconnect(pa!);
  assert.ok(off.kind === 'disconnect' && back.kind === 'reconnect');
  assert.ok(back.atMs - off.atMs <= g.tdMs, `the absence (${back.atMs - off.atMs} ms) must be at most td for this scenario`);
  await sendAll(a, 'short-after', 5);

  const analysis = await assertGuarantees(g.tdMs, g.participants);
  assert.equal(analysis.stats.disconnects.short, 1);
  // Every message reached every participant, the sender included.
  for (const p of g.participants) assert.equal(p.log().length, 31, `${p.id}'s log`);
  assert.ok(a.log().includes('short back\\slash and spaces'));
  for (const p of g.participants) await p.quit();
});

test('pmcast: a disconnect longer than td gets exactly the last td of messages, none older', async (t) => {
  const g = await group(t, 1.2, 2);
  const [a, b] = g.participants as [PmParticipant, PmParticipant];
  const [pa, pb] = await ports(2);
  await a.register(pa!);
  await b.register(pb!);
  await sendAll(b, 'long-before', 3);

  const off = await a.disconnect();
  // A steady stream through the whole absence (td + ~1 s): the td cut falls inside it.
  const streamStart = b.sent.length;
  const until = Date.now() + g.tdMs + 1_000;
  for (let i = 1; Date.now() < until; i++) {
    await b.msend(`long-while-${i}`);
    await sleep(20);
  }
  const back = await a.reconnect(pa!);
  assert.ok(off.kind === 'disconnect' && back.kind === 'reconnect');
  assert.ok(back.atMs - off.atMs > g.tdMs, `the absence (${back.atMs - off.atMs} ms) must exceed td`);
  await sendAll(b, 'long-after', 3);

  const analysis = await assertGuarantees(g.tdMs, g.participants);
  assert.equal(analysis.stats.disconnects.long, 1);
  // Spelled out for this scenario: of the messages sent while a was away, a has
  // exactly those accepted at or after R - td, in order.
  const during = b.sent.slice(streamStart, streamStart + (b.sent.length - streamStart - 3));
  const windowStart = back.atMs - g.tdMs;
  const want = during.filter((m) => m.acceptedMs >= windowStart).map((m) => m.text);
  const got = a.log().filter((l) => l.startsWith('long-while-'));
  assert.deepEqual(got, want);
  assert.ok(want.length > 0 && want.length < during.length, `the cut must fall inside the stream: ${want.length} of ${during.length} in the window`);
  assert.ok(analysis.stats.cutOff > 0);
  assert.deepEqual(
    a.log().filter((l) => !l.startsWith('long-while-')),
    ['long-before-1', 'long-before-2', 'long-before-3', 'long-after-1', 'long-after-2', 'long-after-3'],
  );
  for (const p of g.participants) await p.quit();
});

test('pmcast: deregister then register again gets nothing sent in between', async (t) => {
  const g = await group(t, 2, 3);
  const [a, b, c] = g.participants as [PmParticipant, PmParticipant, PmParticipant];
  const [pa, pb, pc, pa2] = await ports(4);
  await a.register(pa!);
  await b.register(pb!);
  await c.register(pc!);
  await sendAll(b, 'dereg-member', 5);
  await a.deregister();
  assert.ok(await portIsFree(pa!), 'a deregistered participant releases its receiver port');
  assert.match(await a.command('msend dereg-refused'), /^error: /, 'msend after deregister');
  assert.match(await a.command(`reconnect ${pa!}`), /^error: /, 'reconnect after deregister (register is needed)');
  await Promise.all([sendAll(b, 'dereg-gone-b', 8), sendAll(c, 'dereg-gone-c', 8)]);
  await a.register(pa2!);
  await Promise.all([sendAll(b, 'dereg-back-b', 5), sendAll(a, 'dereg-back-a', 5)]);
  // And once more, quickly: deregister and register with nothing in between.
  await a.deregister();
  await a.register(pa!);
  await sendAll(c, 'dereg-again', 3);

  await assertGuarantees(g.tdMs, g.participants);
  const log = a.log();
  assert.equal(log.filter((l) => l.startsWith('dereg-gone-')).length, 0, 'nothing sent while deregistered');
  assert.equal(log.length, 5 + 10 + 3);
  assert.equal(b.log().length, 5 + 16 + 10 + 3);
  for (const p of g.participants) await p.quit();
});

test('pmcast: reconnect on a different port, also while others keep sending', async (t) => {
  const g = await group(t, 2, 3);
  const [a, b, c] = g.participants as [PmParticipant, PmParticipant, PmParticipant];
  const ps = await ports(8);
  await a.register(ps[0]!);
  await b.register(ps[6]!);
  await c.register(ps[7]!);
  await a.disconnect();
  await sendAll(b, 'port-away', 5);
  await a.reconnect(ps[1]!);
  assert.ok(await portIsFree(ps[0]!), 'the old port is released');
  assert.ok(!(await portIsFree(ps[1]!)), 'the new port is held by the receiver');
  await sendAll(c, 'port-back', 5);

  // Now with b and c sending all the time: four more disconnect/reconnect
  // cycles, each on another port. Messages sent just before a disconnect were
  // sent while a was online and must arrive too.
  let stop = false;
  const stream = async (p: PmParticipant, tag: string) => {
    for (let i = 1; !stop; i++) await p.msend(`${tag}-${i}`);
  };
  const senders = [stream(b, 'port-stream-b'), stream(c, 'port-stream-c')];
  for (let k = 2; k <= 5; k++) {
    await sleep(60);
    await a.disconnect();
    await sleep(100);
    await a.reconnect(ps[k]!);
    assert.ok(await portIsFree(ps[k - 1]!), `port of cycle ${k - 1} released`);
  }
  await sleep(100);
  stop = true;
  await Promise.all(senders);

  const analysis = await assertGuarantees(g.tdMs, g.participants);
  assert.equal(analysis.stats.disconnects.short, 5);
  const all = g.participants.reduce((n, p) => n + p.sent.length, 0);
  for (const p of g.participants) assert.equal(p.log().length, all, `${p.id} got every message`);
  for (const p of g.participants) await p.quit();
});

test('pmcast: 10 participants send 50 messages each at once; every log has all 500 once, each sender in order', async (t) => {
  const g = await group(t, 3, 10);
  const ps = await ports(10);
  await Promise.all(g.participants.map((p, i) => p.register(ps[i]!)));
  const started = Date.now();
  await Promise.all(g.participants.map((p) => sendAll(p, `${p.id}-concurrent`, 50)));
  const sendMs = Date.now() - started;

  await assertGuarantees(g.tdMs, g.participants, 10_000);
  const seqs = g.participants.flatMap((p) => p.sent.map((m) => m.seq)).sort((x, y) => x - y);
  assert.deepEqual(seqs, Array.from({ length: 500 }, (_, i) => i + 1), 'seqs 1..500, each once');
  for (const p of g.participants) {
    const log = p.log();
    assert.equal(log.length, 500, `${p.id}'s log`);
    for (const sender of g.participants) {
      const mine = log.filter((l) => l.startsWith(`${sender.id}-concurrent-`));
      assert.deepEqual(mine, sender.sent.map((m) => m.text), `${p.id} logs ${sender.id}'s messages in the order sent`);
    }
  }
  t.diagnostic(`500 msends from 10 participants acknowledged in ${sendMs} ms`);
  for (const p of g.participants) await p.quit();
});
