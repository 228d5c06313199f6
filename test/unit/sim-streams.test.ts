import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimRandom } from '../../src/sim/random.js';
import { Scheduler } from '../../src/sim/scheduler.js';
import { StreamNet } from '../../src/sim/streams.js';
import type { CloseReason, StreamEnd, StreamHandler } from '../../src/sim/streams.js';
import type { NetworkKnobs } from '../../src/sim/network.js';

interface Side {
  readonly got: number[];
  closed: CloseReason | undefined;
  readonly handler: StreamHandler<number>;
}

function side(): Side {
  const s: Side = {
    got: [],
    closed: undefined,
    handler: { data: (_e, body) => s.got.push(body), closed: (_e, reason) => { s.closed = reason; } },
  };
  return s;
}

function setup(knobs: Partial<NetworkKnobs> = {}) {
  const sched = new Scheduler();
  const net = new StreamNet<number>(sched, new SimRandom(1), new SimRandom(2), knobs, 5);
  net.attach('a');
  net.attach('b');
  const server = side();
  let accepted: StreamEnd<number> | undefined;
  net.listen('b', 80, (end) => {
    accepted = end;
    return server.handler;
  });
  const client = side();
  const end = net.connect('a', 'b', 80, client.handler);
  return { sched, net, server, client, end, accepted: () => accepted };
}

test('data arrives once and in order despite reordering and duplication', () => {
  const { sched, server, end } = setup({ delayMsMin: 0, delayMsMax: 20, reorderProbability: 0.5, reorderDelayMsMax: 50, duplicateProbability: 0.3 });
  for (let i = 0; i < 200; i++) assert.ok(end.send(i));
  sched.runFor(1_000);
  assert.deepEqual(server.got, Array.from({ length: 200 }, (_, i) => i));
});

test('close is graceful: what was sent arrives, then the peer hears fin', () => {
  const { sched, server, client, end, accepted } = setup({ delayMsMin: 1, delayMsMax: 9 });
  end.send(1);
  end.send(2);
  end.close();
  assert.equal(end.send(3), false);
  sched.runFor(100);
  assert.deepEqual(server.got, [1, 2]);
  assert.equal(server.closed, 'fin');
  assert.equal(client.closed, undefined, 'the closing end is not told');
  assert.equal(accepted()!.open, false);
});

test('no listener: the initiator gets a reset', () => {
  const sched = new Scheduler();
  const net = new StreamNet<number>(sched, new SimRandom(1), new SimRandom(2));
  net.attach('a');
  net.attach('b');
  const c = side();
  net.connect('a', 'b', 81, c.handler);
  sched.runFor(100);
  assert.equal(c.closed, 'reset');
  assert.equal(net.stats.refused, 1);
});

test('a lost segment breaks the stream: both ends are told, nothing more passes', () => {
  const { sched, net, server, client, end, accepted } = setup({ delayMsMin: 1, delayMsMax: 1 });
  end.send(1);
  sched.runFor(10);
  net.network.setKnobs({ lossProbability: 1 });
  end.send(2);
  sched.runFor(10);
  net.network.setKnobs({ lossProbability: 0 });
  assert.equal(end.send(3), false);
  sched.runFor(10);
  assert.deepEqual(server.got, [1]);
  assert.equal(client.closed, 'broken');
  assert.equal(server.closed, 'broken');
  assert.equal(accepted()!.send(9), false);
});

test('a crashed process vanishes silently; its peer gets a reset and its listener is gone', () => {
  const { sched, net, server, client, end } = setup({ delayMsMin: 1, delayMsMax: 1 });
  end.send(1);
  sched.runFor(10);
  net.crash('b');
  sched.runFor(10);
  assert.equal(client.closed, 'reset');
  assert.equal(server.closed, undefined);
  assert.equal(net.listening('b', 80), false);
});
