// The cache service's pacing (src/runtime/kv-service.ts) with fake links:
// under a write load a node sends at most one flood frame per
// `floodIntervalMs` (`floodBusyIntervalMs` after a frame of `floodBusyEntries`
// changes; a quiet node's first change goes at once, and a change
// waiting for its frame counts as unreplicated in the beacon); the periodic
// anti-entropy round waits while changes flow and runs once they stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hlcOf } from '../../src/core/kv/hlc.js';
import { decodeKvBatchEnvelope, encodeKvBatchFrame } from '../../src/runtime/kv-batch-codec.js';
import type { FramedConnection } from '../../src/runtime/connection.js';
import { KV_SERVICE_DEFAULTS, KvService } from '../../src/runtime/kv-service.js';
import type { KvServiceOptions } from '../../src/runtime/kv-service.js';
import type { Logger } from '../../src/runtime/log.js';

const quietLog = { info() {}, warn() {}, error() {}, debug() {}, child: () => quietLog } as unknown as Logger;
const LIMITS = KV_SERVICE_DEFAULTS.limits;

/** A neighbour 'n2' that records the frames sent to it and refuses every request (counted). */
function fakePeer() {
  const frames: Uint8Array[] = [];
  let requests = 0;
  const conn = {
    sendFrame: (f: Uint8Array) => (frames.push(f), true),
    request: () => {
      requests += 1;
      return Promise.reject(new Error('refused by the test'));
    },
  } as unknown as FramedConnection;
  const keysOf = (i: number) => decodeKvBatchEnvelope(frames[i]!.subarray(4), LIMITS)!.entries.map((e) => e!.key);
  return { conn, frames, keysOf, requests: () => requests };
}

async function service(t: { after(fn: () => Promise<void> | void): void }, conn: FramedConnection, options: Partial<KvServiceOptions>): Promise<KvService> {
  const dataDir = mkdtempSync(join(tmpdir(), 'grapevine-kvsvc-'));
  const svc = new KvService({
    ...KV_SERVICE_DEFAULTS,
    selfId: 'n1',
    dataDir,
    log: quietLog,
    neighbours: () => ['n2'],
    connection: () => conn,
    overlayOf: () => undefined,
    overlayStableSinceMs: () => 0,
    membersOldestPendingMs: () => [],
    members: () => ['n1', 'n2'],
    rpc: () => Promise.reject(new Error('no rpc in this test')),
    ...options,
  });
  await svc.start(() => assert.fail('the cache service failed'));
  t.after(async () => {
    await svc.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return svc;
}

test('under a write load one flood frame per floodIntervalMs; a quiet node sends at once', async (t) => {
  const peer = fakePeer();
  const svc = await service(t, peer.conn, { floodIntervalMs: 60 });
  assert.equal(await svc.put(Buffer.from('a'), Buffer.from('1')), true);
  assert.equal(peer.frames.length, 1, 'the first change goes out with its commit');
  assert.deepEqual(peer.keysOf(0), ['a']);
  assert.equal(svc.oldestPendingMs(), 0);
  await svc.put(Buffer.from('b'), Buffer.from('2'));
  await svc.put(Buffer.from('c'), Buffer.from('3'));
  assert.equal(peer.frames.length, 1, 'committed, but waiting for the next frame');
  assert.ok(svc.oldestPendingMs() > 0, 'a change waiting for its frame is unreplicated');
  await sleep(120);
  assert.equal(peer.frames.length, 2);
  assert.deepEqual(peer.keysOf(1), ['b', 'c'], 'one frame for both');
  assert.equal(svc.oldestPendingMs(), 0);
});

test('after a frame of floodBusyEntries changes the next waits floodBusyIntervalMs; after a small one, floodIntervalMs', async (t) => {
  const peer = fakePeer();
  const svc = await service(t, peer.conn, { floodIntervalMs: 1, floodBusyIntervalMs: 150, floodBusyEntries: 3 });
  // Three writes in one turn: one commit, one frame at once (the node was quiet).
  await svc.putMany([1, 2, 3].map((i) => [Buffer.from(`a${i}`), Buffer.from('v')] as const));
  assert.equal(peer.frames.length, 1);
  assert.equal(peer.keysOf(0).length, 3);
  await sleep(20);
  await svc.put(Buffer.from('b'), Buffer.from('v'));
  assert.equal(peer.frames.length, 1, 'a busy node waits floodBusyIntervalMs, not floodIntervalMs');
  await sleep(200);
  assert.equal(peer.frames.length, 2);
  assert.deepEqual(peer.keysOf(1), ['b']);
  // That frame carried one change: the next waits floodIntervalMs only.
  await sleep(5);
  await svc.put(Buffer.from('c'), Buffer.from('v'));
  assert.equal(peer.frames.length, 3, 'back to the short interval after a small frame');
});

test('periodic anti-entropy waits while changes flow and runs once they stop', async (t) => {
  const peer = fakePeer();
  const svc = await service(t, peer.conn, { idleSyncIntervalMs: 60, syncQuietMs: 150 });
  assert.equal(peer.requests(), 1, 'the round at start');
  // Changes from n2 every 10 ms for 150 ms: well within the longest wait (6 periods, 360 ms).
  const t0 = performance.now();
  let hlc = hlcOf(Date.now());
  for (let i = 0; performance.now() - t0 < 150; i++) {
    const frame = encodeKvBatchFrame([{ key: `k${i}`, value: Buffer.from('v'), hlc: ++hlc, node: 'n2', expiresMs: 0 }]);
    assert.equal(svc.onPeerFrame('n2', frame.subarray(4)), true);
    await sleep(10);
  }
  assert.equal(peer.requests(), 1, 'no periodic round while changes flow');
  await sleep(400);
  assert.ok(peer.requests() >= 2, `a round once quiet (requests ${peer.requests()})`);
});

test('flooded changes no neighbour needs from us share one delayed commit; an own write or a needed relay commits in the turn', async (t) => {
  const n3 = fakePeer();
  const conns: Record<string, FramedConnection> = { n2: fakePeer().conn, n3: n3.conn };
  let n2Neighbours = new Set(['n1', 'n3']);
  const svc = await service(t, n3.conn, {
    neighbours: () => ['n2', 'n3'],
    connection: (id) => conns[id],
    overlayOf: (id) => (id === 'n2' ? n2Neighbours : undefined),
    overlayStableSinceMs: () => -1e9,
    members: () => ['n1', 'n2', 'n3'],
    // Long enough that a loaded machine cannot fire it between two turns of this test.
    relaylessCommitDelayMs: 400,
  });
  const tick = () => new Promise((r) => setImmediate(r));
  let hlc = hlcOf(Date.now());
  const frameOf = (key: string) => encodeKvBatchFrame([{ key, value: Buffer.from('v'), hlc: ++hlc, node: 'n2', expiresMs: 0 }]).subarray(4);
  // n2 floods to n3 itself: nobody waits for our commit.
  const commits0 = svc.stats.commits;
  svc.onPeerFrame('n2', frameOf('a'));
  await tick();
  svc.onPeerFrame('n2', frameOf('b'));
  await tick();
  assert.equal(svc.stats.commits, commits0, 'not committed in the turn');
  assert.equal(Buffer.from(svc.getLocal(Buffer.from('b'))!).toString(), 'v', 'read at once');
  for (const until = Date.now() + 5_000; svc.stats.commits === commits0 && Date.now() < until; ) await sleep(20);
  assert.equal(svc.stats.commits, commits0 + 1, 'both in one commit');
  assert.equal(n3.frames.length, 0, 'n3 has them from n2');
  // An own write while a flooded change waits: both committed in the turn.
  svc.onPeerFrame('n2', frameOf('c'));
  assert.equal(await svc.put(Buffer.from('d'), Buffer.from('1')), true);
  assert.equal(svc.stats.commits, commits0 + 2);
  assert.equal(svc.info().pending_writes, 0);
  // n3 is no neighbour of n2: it gets the change from us, after our commit in the turn.
  n2Neighbours = new Set(['n1']);
  const framesBefore = n3.frames.length;
  svc.onPeerFrame('n2', frameOf('e'));
  await tick();
  await sleep(5);
  assert.equal(svc.stats.commits, commits0 + 3);
  assert.ok(n3.frames.slice(framesBefore).some((_, i) => n3.keysOf(framesBefore + i).includes('e')), 'relayed to n3');
});

test('changes below the purge horizon are not taken from a frame: old tombstones and long-expired values; an old plain value is', async (t) => {
  const peer = fakePeer();
  const svc = await service(t, peer.conn, { tombstoneRetentionMs: 1_000 });
  const old = hlcOf(Date.now() - 60_000);
  const frame = encodeKvBatchFrame([
    { key: 'tomb', value: undefined, hlc: old, node: 'n2', expiresMs: 0 },
    { key: 'expired', value: Buffer.from('v'), hlc: old + 1, node: 'n2', expiresMs: Date.now() - 30_000 },
    { key: 'plain', value: Buffer.from('v'), hlc: old + 2, node: 'n2', expiresMs: 0 },
  ]);
  assert.equal(svc.onPeerFrame('n2', frame.subarray(4)), true);
  const info = svc.info();
  assert.equal(info.keys_held, 1, 'only the plain value is held');
  assert.equal(Buffer.from(svc.getLocal(Buffer.from('plain'))!).toString(), 'v');
  assert.equal(info.repl_received, 3);
});

test('a replica that skips the flood of changes nobody needs from it still clears an earlier unsent mark once its neighbours are connected', async (t) => {
  const n3 = fakePeer();
  const conns: Record<string, FramedConnection | undefined> = { n2: fakePeer().conn, n3: undefined };
  const svc = await service(t, n3.conn, {
    neighbours: () => ['n2', 'n3'],
    connection: (id) => conns[id],
    overlayOf: (id) => (id === 'n2' ? new Set(['n1', 'n3']) : undefined),
    overlayStableSinceMs: () => -1e9,
    members: () => ['n1', 'n2', 'n3'],
  });
  // n3 is down when our own write floods: it is unsent.
  await svc.put(Buffer.from('own'), Buffer.from('1'));
  assert.ok(svc.oldestPendingMs() > 0, 'unsent to n3');
  conns.n3 = n3.conn;
  // A change n2 flooded to both of us: nothing for us to send, yet the mark goes.
  const frame = encodeKvBatchFrame([{ key: 'x', value: Buffer.from('v'), hlc: hlcOf(Date.now()) + 5, node: 'n2', expiresMs: 0 }]);
  svc.onPeerFrame('n2', frame.subarray(4));
  await sleep(40);
  assert.equal(n3.frames.length, 0, 'nothing relayed');
  assert.equal(svc.oldestPendingMs(), 0);
});
