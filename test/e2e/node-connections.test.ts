// End-to-end: how many TCP connections real `grapevine node` processes keep,
// read from the kernel (`ss -tnp state established`), not from the nodes.
// One node alone: none. Two: exactly one between them. Three: exactly one per
// pair. Sampled repeatedly over a second, so a duplicate or a flapping link
// shows up. Status calls are made only between samples: their short-lived
// connections are never counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, pollUntil, randomMcast, startNode, statusByClient, statusOf, tempDir } from '../helpers/proc.js';
import type { NodeSpec, RunningNode } from '../helpers/proc.js';

const run = promisify(execFile);
const SAMPLES = 5;
const SAMPLE_GAP_MS = 200;

interface Sock {
  readonly local: string;
  readonly peer: string;
  readonly pids: readonly number[];
}

/** Every established TCP socket of the machine with its owning PIDs. */
async function established(): Promise<Sock[]> {
  const { stdout } = await run('ss', ['-tnpH', 'state', 'established']);
  const out: Sock[] = [];
  for (const line of stdout.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4) continue;
    const [, , local, peer, ...rest] = cols;
    const pids = [...rest.join(' ').matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    out.push({ local: local!, peer: peer!, pids });
  }
  return out;
}

interface Census {
  /** Connections between each pair of nodes, key "a|b" (ids sorted). */
  readonly pairs: Record<string, number>;
  /** Sockets owned by each node. */
  readonly socketsOf: Record<string, number>;
  /** Established sockets of anyone to or from a node's port. */
  readonly touchingPorts: number;
  readonly detail: string[];
}

/**
 * Counts connections between the nodes. A connection is one pair of
 * endpoints (both ends are on this host, so ss shows it twice); it is
 * between A and B when one end belongs to A's process and the other to B's.
 */
async function census(nodes: readonly RunningNode[]): Promise<Census> {
  const socks = await established();
  const owner = new Map<string, string>();
  const byPid = new Map(nodes.map((n) => [n.proc.pid, n.spec.id]));
  for (const s of socks) for (const pid of s.pids) if (byPid.has(pid)) owner.set(s.local, byPid.get(pid)!);
  const ports = new Set(nodes.map((n) => `127.0.0.1:${n.spec.port}`));
  const socketsOf: Record<string, number> = Object.fromEntries(nodes.map((n) => [n.spec.id, 0]));
  const pairs: Record<string, number> = {};
  const seen = new Set<string>();
  let touchingPorts = 0;
  const detail: string[] = [];
  for (const s of socks) {
    const mine = owner.get(s.local);
    if (mine !== undefined) socketsOf[mine] = (socketsOf[mine] ?? 0) + 1;
    if (ports.has(s.local) || ports.has(s.peer)) touchingPorts += 1;
    if (mine !== undefined || ports.has(s.local) || ports.has(s.peer)) detail.push(`${s.local} -> ${s.peer} pids ${s.pids.join(',') || '?'}`);
    const key = [s.local, s.peer].sort().join(' ');
    if (seen.has(key)) continue;
    seen.add(key);
    const a = owner.get(s.local);
    const b = owner.get(s.peer);
    if (a === undefined || b === undefined) continue;
    const pair = [a, b].sort().join('|');
    pairs[pair] = (pairs[pair] ?? 0) + 1;
    // A peer link is always dialled to a node's listening port.
    if (!ports.has(s.local) && !ports.has(s.peer)) detail.push(`connection ${key} uses no node's listening port`);
  }
  return { pairs, socketsOf, touchingPorts, detail };
}

/** What the census must show: `links` connections exactly once each, nothing else owned by a node. */
function censusOk(c: Census, nodes: readonly RunningNode[], links: readonly [string, string][]): boolean {
  const want: Record<string, number> = {};
  for (const [a, b] of links) want[[a, b].sort().join('|')] = 1;
  const degree = (id: string) => links.filter(([a, b]) => a === id || b === id).length;
  return (
    JSON.stringify(Object.entries(c.pairs).sort()) === JSON.stringify(Object.entries(want).sort()) &&
    nodes.every((n) => c.socketsOf[n.spec.id] === degree(n.spec.id)) &&
    c.touchingPorts === 2 * links.length &&
    !c.detail.some((d) => d.startsWith('connection '))
  );
}

/** Waits (status probes, then stray status sockets close) and then samples the kernel SAMPLES times: every sample must match. */
async function expectConnections(phase: string, nodes: readonly RunningNode[], links: readonly [string, string][]): Promise<Census> {
  const ids = nodes.map((n) => n.spec.id);
  // First the nodes themselves must agree the ring is up (all alive, neighbours connected).
  await pollUntil(
    `${phase}: every node sees all alive and its neighbours connected`,
    async () => {
      const st = await Promise.all(nodes.map((n) => statusByClient(n.spec.port)));
      const ok = st.every(
        (s) =>
          ids.every((id) => s.members.some((m) => m.id === id && m.state === 'alive')) &&
          s.members.length === ids.length &&
          s.neighbours.length === ids.length - 1 &&
          [...s.connected].sort().join() === [...s.neighbours].sort().join(),
      );
      return { ok, detail: st.map((s) => ({ id: s.id, neighbours: s.neighbours, connected: s.connected })) };
    },
    { timeoutMs: 3_000, intervalMs: 20 },
  );
  // The status connections just made close within moments; then the count must hold, sample after sample.
  await pollUntil(`${phase}: connections as expected`, async () => {
    const c = await census(nodes);
    return { ok: censusOk(c, nodes, links), detail: c };
  }, { timeoutMs: 2_000, intervalMs: 20 });
  let last: Census | undefined;
  for (let i = 0; i < SAMPLES; i++) {
    await sleep(SAMPLE_GAP_MS);
    last = await census(nodes);
    assert.ok(censusOk(last, nodes, links), `${phase}: sample ${i + 1}: ${JSON.stringify(last, null, 1)}`);
  }
  return last!;
}

test('TCP connections: 1 node none, 2 nodes exactly one, 3 nodes one per pair', async (t) => {
  const dir = tempDir(t);
  const mcast = randomMcast().arg;
  const spec = async (id: string): Promise<NodeSpec> => ({ id, port: await freePort(), dataDir: join(dir, id), mcast });

  const a = await startNode(t, await spec('a'));

  await t.test('1 node: no TCP connection besides the status client', async () => {
    const s = await statusOf(a.spec.port);
    assert.deepEqual(s.members.map((m) => [m.id, m.state]), [['a', 'alive']]);
    assert.deepEqual(s.neighbours, []);
    assert.deepEqual(s.connected, []);
    // Let it run several heartbeat intervals: it must not have dialled anyone (itself included).
    await sleep(600);
    await pollUntil('1 node: no connection', async () => {
      const c = await census([a]);
      return { ok: c.socketsOf.a === 0 && c.touchingPorts === 0, detail: c };
    }, { timeoutMs: 2_000, intervalMs: 20 });
    for (let i = 0; i < SAMPLES; i++) {
      await sleep(SAMPLE_GAP_MS);
      const c = await census([a]);
      assert.ok(c.socketsOf.a === 0 && c.touchingPorts === 0, `1 node: sample ${i + 1}: ${JSON.stringify(c, null, 1)}`);
    }
  });

  const b = await startNode(t, await spec('b'));
  await t.test('2 nodes: exactly one TCP connection between them', async (st) => {
    const seen = await expectConnections('2 nodes', [a, b], [['a', 'b']]);
    st.diagnostic(`kernel: ${seen.detail.join('; ')}`);
  });

  const c = await startNode(t, await spec('c'));
  await t.test('3 nodes: exactly one TCP connection per pair', async (st) => {
    const seen = await expectConnections('3 nodes', [a, b, c], [
      ['a', 'b'],
      ['a', 'c'],
      ['b', 'c'],
    ]);
    st.diagnostic(`kernel: ${seen.detail.join('; ')}`);
  });
});
