// A node starts its beacons, links and membership before it opens its
// stores. Frames for the stores that arrive in between — a peer's cache
// flood and anti-entropy request, a client's write and gossip submit —
// must wait and then be handled, not be lost or answered wrongly; status
// answers at once. In process, with the lock store's opening held back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveClients } from '../../src/api/server.js';
import { GrapevineClient } from '../../src/api/client.js';
import { buildNodeConfig } from '../../src/cli/node-config.js';
import { hlcOf } from '../../src/core/kv/hlc.js';
import { entryToWire } from '../../src/runtime/kv-codec.js';
import { createLogger } from '../../src/runtime/log.js';
import { GrapevineNode } from '../../src/runtime/node.js';
import type { Envelope } from '../../src/wire/index.js';
import { greetAsPeer } from '../helpers/kv.js';
import { freePort, randomMcast, tempDir } from '../helpers/proc.js';

/** A client as soon as the node's listener is bound. */
async function connectSoon(port: number): Promise<GrapevineClient> {
  for (let i = 0; ; i++) {
    try {
      return await GrapevineClient.connect('127.0.0.1', port);
    } catch (err) {
      if (i >= 300) throw err;
      await sleep(10);
    }
  }
}

test('frames for the stores that arrive before they are open wait and are then handled in order', async (t) => {
  const port = await freePort();
  const cluster = `early-${port}`;
  const { config } = buildNodeConfig({ host: '127.0.0.1', port: String(port), 'data-dir': tempDir(t), 'cluster-name': cluster, mcast: randomMcast().arg, 'log-level': 'silent' });
  const node = new GrapevineNode(config, createLogger('silent'));
  serveClients(node);
  const started = node.start();
  // The services exist as soon as start() is called; hold the last store back.
  let openLocks!: () => void;
  const locksMayOpen = new Promise<void>((r) => (openLocks = r));
  const locks = node.locks;
  const startLocks = locks.start.bind(locks);
  locks.start = async (fail) => {
    await locksMayOpen;
    return startLocks(fail);
  };
  t.after(async () => {
    openLocks();
    await started.catch(() => undefined);
    await node.stop();
  });

  const client = await connectSoon(port);
  t.after(() => client.close());
  const answers: Envelope[] = [];
  const peer = await greetAsPeer(port, '127.0.0.1', cluster, 'peer-x', (env) => answers.push(env));
  t.after(() => peer.close());
  const entry = { key: 'from-peer', value: new TextEncoder().encode('early'), hlc: hlcOf(Date.now()), node: 'peer-x', expiresMs: 0 };
  peer.send({ body: { case: 'kvBatch', value: { entries: [entryToWire(entry)], repair: false } } });
  const sync = peer.request({ body: { case: 'kvSyncRequest', value: { bucketCount: 1024, bucketHashes: new Uint8Array(1024 * 8), onlyBuckets: [] } } }, 5_000);
  let put: boolean | undefined;
  let submitted: string | undefined;
  const putDone = client.kvPut('from-client', 'early').then((v) => (put = v));
  const submitDone = client.submit('early message').then((id) => (submitted = id));

  const status = await client.status();
  assert.equal(status.id, node.id, 'status answers while the stores open');
  await sleep(100);
  assert.equal(put, undefined, 'the write waits for the cache store');
  assert.equal(submitted, undefined, 'the submit waits for the gossip store');

  openLocks();
  await started;
  await Promise.all([putDone, submitDone]);
  assert.equal(put, true);
  assert.match(submitted!, /^[0-9A-Za-z]{11}$/);
  const syncAnswer = await sync;
  assert.equal(syncAnswer.body.case, 'kvSyncResponse', 'the early anti-entropy request is answered, not dropped');
  assert.equal(new TextDecoder().decode(await client.kvGet('from-peer')), 'early', "the peer's early flood was applied");
  assert.equal(new TextDecoder().decode(await client.kvGet('from-client')), 'early');
});
