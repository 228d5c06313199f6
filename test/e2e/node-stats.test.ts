// `kill -USR2` on a running node: one 'stats' log line with its gossip
// counters (what bench:gossip diffs per throughput run), and the node goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GrapevineClient } from '../../src/api/client.js';
import { loopbackCluster } from '../helpers/loopback-cluster.js';

test('SIGUSR2 logs the gossip counters and the CPU time; the node keeps serving', async (t) => {
  const c = await loopbackCluster(t, { ids: ['s1'], name: 'stats' });
  const node = await c.start('s1');
  const client = await GrapevineClient.connect('127.0.0.1', c.ports.get('s1')!, { timeoutMs: 5_000 });
  t.after(() => client.close());
  await Promise.all(['a', 'b', 'c'].map((x) => client.submit(x)));
  process.kill(node.pid, 'SIGUSR2');
  const line = await node.waitForLine('stderr', (l) => l.includes('"msg":"stats"'), 5_000, '"stats"');
  const v = JSON.parse(line) as { gossip: Record<string, number>; cpuUs: { user: number; system: number } };
  assert.equal(v.gossip.messages, 3);
  assert.equal(v.gossip.submitted, 3);
  assert.equal(v.gossip.committedMessages, 3);
  const commits = v.gossip.commits ?? 0;
  assert.ok(commits >= 1 && commits <= 3, `${commits} commits`);
  for (const k of ['received', 'duplicates', 'dropped', 'synced', 'syncRequests', 'syncSent', 'syncHeldBack', 'idMerges', 'purges']) assert.equal(typeof v.gossip[k], 'number', k);
  assert.ok(v.cpuUs.user > 0);
  assert.equal((await client.status()).messages, 3, 'still serving');
});
