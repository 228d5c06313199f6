import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Supervisor } from '../../src/runtime/supervisor.js';
import type { Service } from '../../src/runtime/supervisor.js';

const quiet = pino({ level: 'silent' });
const options = { backoff: { initialMs: 5, maxMs: 20, factor: 2 }, healthyAfterMs: 10_000, random: () => 0.5 };
const waitFor = async (cond: () => boolean, timeoutMs = 2_000) => {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
};

test('a service whose start throws is retried until it starts', async () => {
  let starts = 0;
  const svc: Service = { name: 'flaky', start: async () => { starts += 1; if (starts < 3) throw new Error('not yet'); }, stop: async () => {} };
  const sup = new Supervisor(quiet, options);
  sup.add(svc);
  await sup.start();
  await waitFor(() => sup.status()[0]!.phase === 'running');
  assert.equal(starts, 3);
  assert.equal(sup.status()[0]!.restarts, 2);
  await sup.stop();
});

test('a running service that reports a failure is stopped and restarted; the others keep running', async () => {
  let failNow: ((e: Error) => void) | undefined;
  let starts = 0;
  let stops = 0;
  const crashy: Service = { name: 'crashy', start: async (fail) => { starts += 1; failNow = fail; }, stop: async () => { stops += 1; } };
  let steadyStops = 0;
  const steady: Service = { name: 'steady', start: async () => {}, stop: async () => { steadyStops += 1; } };
  const sup = new Supervisor(quiet, options);
  sup.add(crashy);
  sup.add(steady);
  await sup.start();
  failNow!(new Error('socket died'));
  failNow!(new Error('reported twice'));
  await waitFor(() => starts === 2 && sup.status()[0]!.phase === 'running');
  assert.equal(stops, 1);
  assert.equal(steadyStops, 0);
  await sup.stop();
  await sup.stop();
  assert.equal(steadyStops, 1);
});

test('stop cancels a pending restart', async () => {
  let starts = 0;
  const svc: Service = { name: 'never', start: async () => { starts += 1; throw new Error('down'); }, stop: async () => {} };
  const sup = new Supervisor(quiet, { ...options, backoff: { initialMs: 50, maxMs: 50, factor: 1 } });
  sup.add(svc);
  await sup.start();
  await sup.stop();
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(starts, 1);
});

test('start again after adding more services starts only the new ones, in the order added; stop stops all in reverse', async () => {
  const events: string[] = [];
  const svc = (name: string): Service => ({ name, start: async () => { events.push(`start ${name}`); }, stop: async () => { events.push(`stop ${name}`); } });
  const sup = new Supervisor(quiet, options);
  sup.add(svc('beacon'));
  sup.add(svc('links'));
  await sup.start();
  sup.add(svc('gossip'));
  sup.add(svc('cache'));
  await sup.start();
  assert.deepEqual(events, ['start beacon', 'start links', 'start gossip', 'start cache']);
  assert.deepEqual(sup.status().map((s) => s.phase), ['running', 'running', 'running', 'running']);
  await sup.stop();
  assert.deepEqual(events.slice(4), ['stop cache', 'stop gossip', 'stop links', 'stop beacon']);
});
