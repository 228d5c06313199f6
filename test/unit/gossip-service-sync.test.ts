// The gossip service's anti-entropy answer (src/runtime/gossip-service.ts)
// on a real store, with a fake peer connection: messages stored within the
// in-flight window are held back (they are still being flooded) and make
// `more` true; messages stored before — here by an earlier run of the node —
// are sent at once, as are those already merged into message_seqs.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GossipCore } from '../../src/core/gossip/gossip.js';
import type { GossipMessage } from '../../src/core/gossip/message.js';
import type { FramedConnection } from '../../src/runtime/connection.js';
import { encodeGossipMessage, gossipBatchFrame } from '../../src/runtime/gossip-frame.js';
import { GOSSIP_SERVICE_DEFAULTS, GossipService } from '../../src/runtime/gossip-service.js';
import { createLogger } from '../../src/runtime/log.js';
import { GossipStore } from '../../src/store/gossip-store.js';
import type { Envelope } from '../../src/wire/index.js';
import { FRAME_HEADER_BYTES } from '../../src/wire/limits.js';

const sha256 = (t: string): string => hash('sha256', t, 'binary');
const PEER = 'peerAAAAAAA';

function messages(origin: string, n: number): GossipMessage[] {
  const core = new GossipCore({ selfId: origin, incarnation: 1, sha256, messageBytesMax: 65_536, digestAboveMax: 1_024, streamsMax: 64 });
  return Array.from({ length: n }, (_, i) => {
    const r = core.submit(`${origin} #${i}`, 1_700_000_000_000 + i);
    if (!r.ok) throw new Error('submit refused');
    return r.message;
  });
}

async function service(t: TestContext, dataDir: string): Promise<{ svc: GossipService; replies: Envelope[]; conn: FramedConnection }> {
  const replies: Envelope[] = [];
  const conn = {
    sendFrame: () => true,
    request: () => new Promise(() => {}),
    reply: (_req: Envelope, init: Envelope) => (replies.push(init), true),
  } as unknown as FramedConnection;
  const svc = new GossipService({
    ...GOSSIP_SERVICE_DEFAULTS,
    selfId: 'selfAAAAAAA',
    incarnation: 1,
    dataDir,
    log: createLogger('silent'),
    neighbours: () => [PEER],
    connection: () => undefined,
  });
  await svc.start();
  t.after(() => svc.stop());
  return { svc, replies, conn };
}

async function receive(svc: GossipService, ms: readonly GossipMessage[]): Promise<void> {
  const frame = gossipBatchFrame(ms.map((m) => encodeGossipMessage({ ...m, path: [m.origin, PEER] })));
  assert.ok(svc.onPeerFrame(PEER, frame.subarray(FRAME_HEADER_BYTES)));
  await new Promise((r) => setImmediate(r)); // the group commit
}

function askEverything(svc: GossipService, conn: FramedConnection, replies: Envelope[]): { sent: number; more: boolean } {
  const env = { requestId: 7, response: false, body: { case: 'syncRequest', value: { streams: [] } } } as unknown as Envelope;
  assert.ok(svc.onPeerEnvelope(PEER, env, conn));
  const answer = replies.pop()!;
  assert.equal(answer.body.case, 'syncResponse');
  const value = answer.body.value as { messages: unknown[]; more: boolean };
  return { sent: value.messages.length, more: value.more };
}

test('anti-entropy holds back what was stored within the in-flight window, and sends what was stored before it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gossip-sync-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const old = messages('origAAAAAAA', 5);
  const fresh = messages('origBBBBBBB', 3);
  {
    // Just stored: all held back.
    const first = await service(t, join(dir, 'a'));
    await receive(first.svc, old);
    assert.deepEqual(askEverything(first.svc, first.conn, first.replies), { sent: 0, more: true });
    assert.equal(first.svc.stats.syncHeldBack, old.length);
  }
  // An earlier run of the node stored `old` 5 s ago (its window is gone with it).
  const earlier = GossipStore.open(join(dir, 'b'));
  earlier.insertMany(old.map((message) => ({ message, receivedMs: Date.now() - 5_000 })));
  earlier.close();
  const { svc, replies, conn } = await service(t, join(dir, 'b'));
  await receive(svc, fresh);
  // A stored message of the earlier run goes at once; this run's are still in flight.
  assert.deepEqual(askEverything(svc, conn, replies), { sent: old.length, more: true });
  assert.equal(svc.stats.syncHeldBack, fresh.length);
  assert.equal(svc.stats.syncSent, old.length);
});
