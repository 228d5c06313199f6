// --seed: two nodes that cannot hear each other's multicast (each beacons on
// its own group) meet through a TCP join to the seed and then keep each other
// alive with unicast beacons; killing one is still detected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { freePort, pollUntil, randomMcast, startNode, statusOf, tempDir } from '../helpers/proc.js';

test('nodes beyond multicast reach find each other through --seed and stay alive', async (t) => {
  const dir = tempDir(t);
  const [pa, pb] = [await freePort(), await freePort()];
  const a = await startNode(t, { id: 'a', port: pa, dataDir: join(dir, 'a'), mcast: randomMcast().arg });
  const b = await startNode(t, { id: 'b', port: pb, dataDir: join(dir, 'b'), mcast: randomMcast().arg, extraArgs: ['--seed', `127.0.0.1:${pa}`] });

  const bothAlive = async () => {
    const [sa, sb] = [await statusOf(pa), await statusOf(pb)];
    const ok = [sa, sb].every((s) => s.members.length === 2 && s.members.every((m) => m.state === 'alive'));
    return { ok, detail: { a: sa.members, b: sb.members } };
  };
  await pollUntil('a and b see each other alive', bothAlive, { timeoutMs: 3_000 });
  // Three dead-timeouts later they must still be alive: unicast beacons flow both ways.
  await new Promise((r) => setTimeout(r, 3 * 1_600));
  const later = await bothAlive();
  assert.ok(later.ok, JSON.stringify(later.detail));
  assert.deepEqual((await statusOf(pb)).neighbours, ['a']);

  await a.proc.kill9();
  await pollUntil(
    'b declares the killed seed dead',
    async () => {
      const s = await statusOf(pb);
      return { ok: s.members.find((m) => m.id === 'a')?.state === 'dead', detail: s.members };
    },
    { timeoutMs: 5_000 },
  );
  assert.ok(b.proc.running);
});
