// End-to-end: four real `grapevine node` processes on 127.0.0.1 (real
// multicast on loopback, real TCP), observed through their status (timed
// polls via the client library, each result confirmed by `grapevine status
// --json`). Membership within 3 s, ring neighbours, kill -9 → dead within 5 s
// and the ring closes, restart → alive again with a higher incarnation, and a
// graceful stop announced by a leave beacon. Each run has its own multicast
// group/port and free TCP ports, so it never hears another test or a cluster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ringNeighbours } from '../../src/core/ring.js';
import { freePort, jsonLines, pollUntil, randomMcast, startNode, statusByClient, statusOf, tempDir } from '../helpers/proc.js';
import type { NodeSpec, RunningNode, StatusJson } from '../helpers/proc.js';

const HOST = '127.0.0.1';
const JOIN_WITHIN_MS = 3_000;
const DEAD_WITHIN_MS = 5_000;
const REJOIN_WITHIN_MS = 3_000;
/** The default dead timeout is 1.6 s: a leave beacon must be heard well before it. */
const LEAVE_HEARD_WITHIN_MS = 1_000;

const sortedIds = (ids: readonly string[]) => [...ids].sort();

/** The neighbours `self` must have when exactly `alive` are alive (ordered by IP number, port, id). */
function expectedNeighbours(self: NodeSpec, alive: readonly NodeSpec[]): string[] {
  const ep = (s: NodeSpec) => ({ id: s.id, host: HOST, port: s.port });
  return sortedIds(ringNeighbours(ep(self), alive.filter((s) => s.id !== self.id).map(ep)).map((e) => e.id));
}

/**
 * What is wrong with `s`, the status of `self`, if `alive` are the live nodes
 * and `dead` the dead ones; empty when it is all right (neighbours exact and
 * every neighbour connected).
 */
function problems(self: NodeSpec, s: StatusJson, alive: readonly NodeSpec[], dead: readonly NodeSpec[]): string[] {
  const out: string[] = [];
  if (s.id !== self.id) out.push(`answered as ${s.id}`);
  for (const n of alive) {
    const m = s.members.find((x) => x.id === n.id);
    if (!m) out.push(`${n.id} missing`);
    else {
      if (m.state !== 'alive') out.push(`${n.id} is ${m.state}`);
      if (m.host !== HOST || m.port !== n.port) out.push(`${n.id} at ${m.host}:${m.port}`);
    }
  }
  for (const n of dead) {
    const m = s.members.find((x) => x.id === n.id);
    if (!m || m.state !== 'dead') out.push(`${n.id} is ${m?.state ?? 'missing'}, not dead`);
  }
  const known = new Set([...alive, ...dead].map((n) => n.id));
  for (const m of s.members) if (!known.has(m.id)) out.push(`unexpected member ${m.id}`);
  const want = expectedNeighbours(self, alive);
  if (JSON.stringify(sortedIds(s.neighbours)) !== JSON.stringify(want)) out.push(`neighbours ${JSON.stringify(s.neighbours)}, want ${JSON.stringify(want)}`);
  if (JSON.stringify(sortedIds(s.connected)) !== JSON.stringify(want)) out.push(`connected ${JSON.stringify(s.connected)}, want ${JSON.stringify(want)}`);
  return out;
}

/** Asks every node in `alive` (through `ask`) and checks each one's view is exactly (alive, dead). */
async function survey(ask: (port: number) => Promise<StatusJson>, alive: readonly NodeSpec[], dead: readonly NodeSpec[]) {
  const statuses = await Promise.all(alive.map((n) => ask(n.port)));
  const problemsById: Record<string, string[]> = {};
  const views: Record<string, StatusJson> = {};
  alive.forEach((n, i) => {
    views[n.id] = statuses[i]!;
    const p = problems(n, statuses[i]!, alive, dead);
    if (p.length > 0) problemsById[n.id] = p;
  });
  return { ok: Object.keys(problemsById).length === 0, detail: { problems: problemsById, views } };
}

/**
 * Polls every node in `alive` until each one's view is exactly (alive, dead),
 * within `timeoutMs` of `since`. The timed polls use the client library
 * in-process (a probe costs ms, not a process start, so the deadline measures
 * the nodes, not the machine's load); then `grapevine status --json` must
 * report the same on every node.
 */
async function converge(what: string, alive: readonly NodeSpec[], dead: readonly NodeSpec[], timeoutMs: number, since: number) {
  const reached = await pollUntil(what, () => survey(statusByClient, alive, dead), { timeoutMs, since, intervalMs: 20 });
  const viaCli = await survey(statusOf, alive, dead);
  assert.ok(viaCli.ok, `${what}: grapevine status --json disagrees: ${JSON.stringify(viaCli.detail.problems)}`);
  return { elapsedMs: reached.elapsedMs, detail: viaCli.detail };
}

test('4 nodes: membership, ring neighbours, kill -9, restart, graceful leave', async (t) => {
  const dir = tempDir(t);
  const mcast = randomMcast().arg;
  const specs: NodeSpec[] = [];
  for (const id of ['n1', 'n2', 'n3', 'n4']) specs.push({ id, port: await freePort(), dataDir: join(dir, id), mcast });

  const nodes = new Map<string, RunningNode>();
  const started = await Promise.all(specs.map((s) => startNode(t, s)));
  for (const n of started) nodes.set(n.spec.id, n);
  const allUp = Date.now();

  // 1. Everyone lists all 4 alive, with exactly its two ring neighbours, connected.
  const joined = await converge('all 4 alive with ring neighbours', specs, [], JOIN_WITHIN_MS, allUp);
  t.diagnostic(`full membership and ring ${joined.elapsedMs} ms after the last node was up`);
  for (const s of specs) assert.equal(expectedNeighbours(s, specs).length, 2, 'with 4 nodes each has two distinct neighbours');

  // 2. kill -9 one: within 5 s every survivor shows it dead and the ring closes over the gap.
  const victim = specs[1]!;
  const oldIncarnation = joined.detail.views[specs[0]!.id]!.members.find((m) => m.id === victim.id)!.incarnation;
  for (const s of specs) {
    const seen = joined.detail.views[s.id]!.members.find((m) => m.id === victim.id)!.incarnation;
    assert.equal(seen, oldIncarnation, `${s.id} agrees on ${victim.id}'s incarnation`);
  }
  const killedAt = Date.now();
  const e = await nodes.get(victim.id)!.proc.kill9();
  assert.equal(e.signal, 'SIGKILL');
  const survivors = specs.filter((s) => s !== victim);
  const detected = await converge(`${victim.id} dead everywhere, ring closed`, survivors, [victim], DEAD_WITHIN_MS, killedAt);
  t.diagnostic(`kill -9 → dead everywhere and ring closed in ${detected.elapsedMs} ms`);
  for (const s of survivors) assert.equal(expectedNeighbours(s, survivors).length, 2, '3 nodes: two neighbours each');

  // 3. Restart it with the same data dir: alive everywhere, strictly higher incarnation.
  const restartedAt = Date.now();
  const again = await startNode(t, victim);
  nodes.set(victim.id, again);
  const rejoined = await converge(`${victim.id} alive again everywhere`, specs, [], REJOIN_WITHIN_MS, restartedAt);
  t.diagnostic(`restart → alive everywhere in ${rejoined.elapsedMs} ms`);
  const selfView = rejoined.detail.views[victim.id]!.members.find((m) => m.id === victim.id)!;
  assert.ok(selfView.incarnation > oldIncarnation, `incarnation ${selfView.incarnation} must exceed ${oldIncarnation}`);
  for (const s of specs) {
    const m = rejoined.detail.views[s.id]!.members.find((x) => x.id === victim.id)!;
    assert.equal(m.incarnation, selfView.incarnation, `${s.id} sees ${victim.id} at its new incarnation`);
  }

  // 4. Graceful stop (SIGTERM): a leave beacon makes the others say dead at
  //    once, well before the silence timeout, and the ring closes again.
  const leaver = specs[3]!;
  const stayers = specs.filter((s) => s !== leaver);
  const stopAt = Date.now();
  const exit = await nodes.get(leaver.id)!.proc.stop('SIGTERM', 3_000);
  assert.deepEqual(exit, { code: 0, signal: null }, 'SIGTERM stops the node cleanly with exit status 0');
  assert.ok(Date.now() - stopAt < 2_000, `the node took ${Date.now() - stopAt} ms to stop`);
  await Promise.all(
    stayers.map(async (s) => {
      const proc = nodes.get(s.id)!.proc;
      const isLeaveLine = (l: string) => l.includes('"msg":"member dead"') && l.includes(`"member":"${leaver.id}"`);
      await proc.waitForLine('stderr', isLeaveLine, LEAVE_HEARD_WITHIN_MS * 2, `${s.id} to log ${leaver.id} dead`);
      const rec = jsonLines(proc.stderr).filter((r) => r.msg === 'member dead' && r.member === leaver.id).at(-1)!;
      assert.equal(rec.reason, 'left', `${s.id} learnt of the leave from a leave beacon, not a timeout`);
      const afterMs = (rec.time as number) - stopAt;
      assert.ok(afterMs < LEAVE_HEARD_WITHIN_MS, `${s.id} declared ${leaver.id} dead ${afterMs} ms after SIGTERM`);
    }),
  );
  const left = await converge(`${leaver.id} dead everywhere after leaving`, stayers, [leaver], LEAVE_HEARD_WITHIN_MS, stopAt);
  t.diagnostic(`SIGTERM → dead everywhere (leave beacon) and ring closed in ${left.elapsedMs} ms`);
});
