import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimNetwork } from '../../src/sim/network.js';
import type { DropReason, NetworkKnobs } from '../../src/sim/network.js';
import { SimRandom } from '../../src/sim/random.js';
import { Scheduler } from '../../src/sim/scheduler.js';

interface Arrival { readonly to: string; readonly from: string; readonly msg: string; readonly atMs: number }

function setup(knobs: Partial<NetworkKnobs> = {}, seed = 1, ids = ['a', 'b', 'c', 'd']) {
  const s = new Scheduler();
  const arrivals: Arrival[] = [];
  const drops: { from: string; to: string; reason: DropReason }[] = [];
  const net = new SimNetwork<string>(s, new SimRandom(seed), knobs, (from, to, reason) => drops.push({ from, to, reason }));
  for (const id of ids) net.attach(id, (from, msg) => arrivals.push({ to: id, from, msg, atMs: s.nowMs }));
  return { s, net, arrivals, drops };
}

test('multicast reaches every node, the sender too with loopback, within the delay bounds', () => {
  const { s, net, arrivals } = setup({ delayMsMin: 3, delayMsMax: 9 });
  net.multicast('a', 'hi');
  s.runUntil(100);
  assert.deepEqual(arrivals.map((x) => x.to).sort(), ['a', 'b', 'c', 'd']);
  for (const x of arrivals) assert.ok(x.atMs >= 3 && x.atMs <= 9 && Number.isInteger(x.atMs));
  net.setKnobs({ loopback: false });
  net.multicast('a', 'again');
  s.runUntil(200);
  assert.deepEqual(arrivals.filter((x) => x.msg === 'again').map((x) => x.to).sort(), ['b', 'c', 'd']);
});

test('the same seed gives the same deliveries; another seed does not', () => {
  const run = (seed: number): Arrival[] => {
    const { s, net, arrivals } = setup({ delayMsMin: 0, delayMsMax: 50, lossProbability: 0.3, duplicateProbability: 0.2, reorderProbability: 0.3, reorderDelayMsMax: 40 }, seed);
    for (let i = 0; i < 50; i++) s.at(i * 3, () => net.multicast(['a', 'b', 'c', 'd'][i % 4]!, `m${i}`));
    s.runUntil(1_000);
    return arrivals;
  };
  assert.deepEqual(run(5), run(5));
  assert.notDeepEqual(run(5), run(6));
});

test('loss drops copies and reports each drop', () => {
  const { s, net, arrivals, drops } = setup({ lossProbability: 1 });
  net.multicast('a', 'x');
  s.runUntil(100);
  assert.equal(arrivals.length, 0);
  assert.equal(drops.length, 4);
  assert.ok(drops.every((d) => d.reason === 'loss'));
  assert.equal(net.stats.dropped.loss, 4);
});

test('duplication delivers a second copy; reordering lets later datagrams overtake', () => {
  const dup = setup({ duplicateProbability: 1, loopback: false });
  dup.net.unicast('a', 'b', 'x');
  dup.s.runUntil(100);
  assert.equal(dup.arrivals.length, 2);

  const re = setup({ delayMsMin: 1, delayMsMax: 1, reorderProbability: 0.5, reorderDelayMsMax: 100 }, 3);
  for (let i = 0; i < 40; i++) re.s.at(i, () => re.net.unicast('a', 'b', String(i)));
  re.s.runUntil(1_000);
  const order = re.arrivals.map((x) => Number(x.msg));
  assert.equal(order.length, 40);
  assert.notDeepEqual(order, [...order].sort((x, y) => x - y), 'some datagrams arrive out of order');
});

test('a partition blocks across sides only, also for datagrams in flight; heal restores', () => {
  const { s, net, arrivals, drops } = setup({ delayMsMin: 10, delayMsMax: 10, loopback: false });
  net.multicast('a', 'in-flight');
  s.runUntil(5);
  net.partition([['a', 'b'], ['c', 'd']]);
  s.runUntil(20);
  assert.deepEqual(arrivals.map((x) => x.to), ['b']);
  assert.deepEqual(drops.map((d) => `${d.to}:${d.reason}`).sort(), ['c:partition', 'd:partition']);
  assert.equal(net.blocked('c', 'd'), undefined);
  assert.equal(net.blocked('d', 'a'), 'partition');

  net.heal();
  net.multicast('d', 'healed');
  s.runUntil(40);
  assert.deepEqual(arrivals.filter((x) => x.msg === 'healed').map((x) => x.to).sort(), ['a', 'b', 'c']);
});

test('nodes left out of a partition list share one side', () => {
  const { net } = setup();
  net.partition([['a']]);
  assert.equal(net.blocked('b', 'c'), undefined);
  assert.equal(net.blocked('a', 'b'), 'partition');
});

test('a cut link isolates one node both ways until restored', () => {
  const { s, net, arrivals, drops } = setup({ loopback: false });
  net.cutLink('b');
  net.multicast('a', 'x');
  net.multicast('b', 'y');
  s.runUntil(50);
  assert.deepEqual(arrivals.map((x) => `${x.from}>${x.to}`).sort(), ['a>c', 'a>d']);
  assert.equal(drops.filter((d) => d.reason === 'link_cut').length, 4);
  net.restoreLink('b');
  net.unicast('a', 'b', 'z');
  s.runUntil(100);
  assert.ok(arrivals.some((x) => x.to === 'b' && x.msg === 'z'));
});

test('bad knobs are refused with the knob named', () => {
  const { net } = setup();
  assert.throws(() => net.setKnobs({ lossProbability: 1.5 }), /lossProbability/);
  assert.throws(() => net.setKnobs({ delayMsMin: 10, delayMsMax: 5 }), /delayMsMax/);
  assert.throws(() => net.setKnobs({ delayMsMax: 2.5 }), /delayMsMax/);
  assert.throws(() => net.attach('a', () => {}), /already attached/);
});
