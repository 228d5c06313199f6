// The cache's periodic anti-entropy round skips a neighbour whose beacon
// fingerprint equals ours (a sync would find nothing) and still syncs one
// whose fingerprint differs or is unknown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { FramedConnection } from '../../src/runtime/connection.js';
import { KV_SERVICE_DEFAULTS, KvService } from '../../src/runtime/kv-service.js';

const INTERVAL_MS = 20;

async function rounds(peerDigest: (ours: bigint) => bigint | undefined): Promise<{ asked: number; ours: bigint }> {
  const dir = mkdtempSync(join(tmpdir(), 'kv-idle-sync-'));
  let asked = 0;
  // Takes floods; never answers a sync, so each round that asks shows up as one request (one sync at a time).
  const conn = { sendFrame: () => true, request: () => ((asked += 1), new Promise(() => undefined)) } as unknown as FramedConnection;
  const service: KvService = new KvService({
    ...KV_SERVICE_DEFAULTS,
    selfId: 'me',
    dataDir: dir,
    log: pino({ level: 'silent' }),
    idleSyncIntervalMs: INTERVAL_MS,
    neighbours: () => ['p'],
    connection: () => conn,
    overlayOf: () => undefined,
    overlayStableSinceMs: () => 0,
    membersOldestPendingMs: () => [],
    members: () => ['me', 'p'],
    rpc: () => Promise.reject(new Error('no rpc here')),
    peerCacheDigest: () => peerDigest(service.cacheDigest()),
  });
  try {
    await service.start(() => undefined);
    await service.put(new TextEncoder().encode('k'), new TextEncoder().encode('v'));
    await sleep(INTERVAL_MS * 4);
    return { asked, ours: service.cacheDigest() };
  } finally {
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the periodic cache round skips a neighbour with our fingerprint and syncs one with another or none', async () => {
  const same = await rounds((ours) => ours);
  assert.notEqual(same.ours, 0n, 'an open full replica has a fingerprint');
  assert.equal(same.asked, 0, 'nothing asked of a neighbour that holds what we hold');
  const other = await rounds((ours) => ours ^ 1n);
  assert.equal(other.asked, 1, 'a neighbour with other versions is asked (one sync at a time)');
  const unknown = await rounds(() => undefined);
  assert.equal(unknown.asked, 1, 'a neighbour whose fingerprint is unknown is asked');
});

test('the fingerprint follows the versions held: equal for equal contents, different after a write', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kv-digest-'));
  const make = (sub: string) => new KvService({
    ...KV_SERVICE_DEFAULTS, selfId: 'me', dataDir: join(dir, sub), log: pino({ level: 'silent' }),
    neighbours: () => [], connection: () => undefined, overlayOf: () => undefined, overlayStableSinceMs: () => 0,
    membersOldestPendingMs: () => [], members: () => ['me'], rpc: () => Promise.reject(new Error('none')),
  });
  const a = make('a');
  const b = make('b');
  try {
    assert.equal(a.cacheDigest(), 0n, 'not open: none');
    await a.start(() => undefined);
    await b.start(() => undefined);
    assert.equal(a.cacheDigest(), b.cacheDigest(), 'two empty caches');
    const before = a.cacheDigest();
    await a.put(new TextEncoder().encode('k'), new TextEncoder().encode('v'));
    assert.notEqual(a.cacheDigest(), before);
  } finally {
    await a.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
