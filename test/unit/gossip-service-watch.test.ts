// A node's watchers (src/runtime/gossip-service.ts): every stored message is
// handed to each watcher with its GossipMessage bytes, encoded once for all of
// them — for a message from a peer, the canonical bytes it arrived in. Those
// bytes must be exactly encodeGossipMessage of the stored message, whichever
// way they were made (the watch event frame is built from them).
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { messageId } from '../../src/core/gossip/message.js';
import type { GossipMessage } from '../../src/core/gossip/message.js';
import { GOSSIP_SERVICE_DEFAULTS, GossipService } from '../../src/runtime/gossip-service.js';
import { encodeGossipMessage, gossipBatchFrame } from '../../src/runtime/gossip-frame.js';
import type { StoredMessage } from '../../src/store/gossip-store.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();

async function started(t: TestContext): Promise<GossipService> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gossip-watch-'));
  const s = new GossipService({
    ...GOSSIP_SERVICE_DEFAULTS,
    selfId: 'self',
    incarnation: 1,
    dataDir,
    log: pino({ level: 'silent' }),
    neighbours: () => [],
    connection: () => undefined,
  });
  await s.start();
  t.after(async () => {
    await s.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return s;
}

function watched(s: GossipService): { m: StoredMessage; encoded: Uint8Array }[][] {
  const seen: { m: StoredMessage; encoded: Uint8Array }[][] = [[], []];
  for (const list of seen) s.watch((m, encoded) => list.push({ m, encoded }));
  return seen;
}

const turn = () => new Promise((r) => setImmediate(r));

test('a submit reaches every watcher once, with the bytes encodeGossipMessage writes for it, shared', async (t) => {
  const s = await started(t);
  const seen = watched(s);
  const m = await s.submit('hello, watchers');
  for (const list of seen) {
    assert.equal(list.length, 1);
    assert.equal(list[0]!.m.id, m.id);
    assert.deepEqual(Buffer.from(list[0]!.encoded), Buffer.from(encodeGossipMessage(list[0]!.m)));
  }
  assert.equal(seen[0]![0]!.encoded, seen[1]![0]!.encoded, 'encoded once for both watchers');
});

test("a peer's message reaches watchers with the canonical bytes it came in: encodeGossipMessage of what was stored", async (t) => {
  const s = await started(t);
  const seen = watched(s);
  const text = 'from a peer — ünïcode';
  const m: GossipMessage = { id: messageId(sha256, 'peer', 3, 7, text), origin: 'peer', incarnation: 3, seq: 7, text, createdMs: 1_700_000_000_123, path: ['peer', 'relay'] };
  const sent = encodeGossipMessage(m);
  assert.equal(s.onPeerFrame('relay', gossipBatchFrame([sent]).subarray(4)), true);
  await turn();
  for (const list of seen) {
    assert.equal(list.length, 1);
    const got = list[0]!;
    assert.deepEqual({ id: got.m.id, path: got.m.path, text: got.m.text }, { id: m.id, path: m.path, text });
    assert.deepEqual(Buffer.from(got.encoded), Buffer.from(sent));
    assert.deepEqual(Buffer.from(got.encoded), Buffer.from(encodeGossipMessage(got.m)));
  }
  // The same message again is a duplicate: no second event.
  s.onPeerFrame('other', gossipBatchFrame([sent]).subarray(4));
  await turn();
  assert.deepEqual(seen.map((l) => l.length), [1, 1]);
});
