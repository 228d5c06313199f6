import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { ProbeOutcome } from '../../src/core/membership.js';
import { PortProber } from '../../src/runtime/port-probe.js';

async function listen(): Promise<net.Server> {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}

function prober(results: { id: string; incarnation: number; outcome: ProbeOutcome }[], inFlightMax = 8): PortProber {
  return new PortProber({ timeoutMs: 400, inFlightMax, onResult: (id, incarnation, outcome) => results.push({ id, incarnation, outcome }) });
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

test('a listening port answers', async () => {
  const server = await listen();
  const results: { id: string; incarnation: number; outcome: ProbeOutcome }[] = [];
  const p = prober(results);
  p.probe({ id: 'a', incarnation: 3, host: '127.0.0.1', port: portOf(server) });
  await until(() => results.length > 0);
  assert.deepEqual(results, [{ id: 'a', incarnation: 3, outcome: 'answered' }]);
  await new Promise<void>((r) => server.close(() => r()));
});

test('a closed port (the process was killed) is refused', async () => {
  const server = await listen();
  const port = portOf(server);
  await new Promise<void>((r) => server.close(() => r()));
  const results: { id: string; incarnation: number; outcome: ProbeOutcome }[] = [];
  prober(results).probe({ id: 'b', incarnation: 1, host: '127.0.0.1', port });
  await until(() => results.length > 0);
  assert.deepEqual(results, [{ id: 'b', incarnation: 1, outcome: 'refused' }]);
});

test('two probes per member at a time, and at most inFlightMax in all; stop abandons them silently', async () => {
  const server = await listen();
  const results: { id: string; incarnation: number; outcome: ProbeOutcome }[] = [];
  const p = prober(results, 3);
  const target = (id: string) => ({ id, incarnation: 1, host: '127.0.0.1', port: portOf(server) });
  p.probe(target('a'));
  p.probe(target('a'));
  p.probe(target('a'));
  assert.equal(p.probesSent, 2);
  p.probe(target('b'));
  p.probe(target('c'));
  assert.equal(p.probesSent, 3);
  p.stop();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(results, []);
  await new Promise<void>((r) => server.close(() => r()));
});
