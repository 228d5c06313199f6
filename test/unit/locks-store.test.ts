// LockStore (src/store/lock-store.ts): records survive reopening, maxToken
// never goes down, epochs grow, and pruning keeps tokens growing (floor).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LockStore } from '../../src/store/lock-store.js';
import type { LockRecord } from '../../src/core/locks/types.js';

const root = mkdtempSync(join(tmpdir(), 'grapevine-lock-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
const WALL = 1_700_000_000_000;
let dirs = 0;
const dir = () => join(root, `s${++dirs}`);

const leased = (key: string, token: bigint, expiresWallMs = WALL + 10_000): LockRecord => ({
  key, maxToken: token, lease: { holder: 'n1', attempt: (5n << 32n) + 7n, token, priority: BigInt(WALL), ttlMs: 10_000, expiresWallMs },
});

describe('LockStore', () => {
  test('a record comes back after reopening, lease and all; an unknown key is undefined', () => {
    const d = dir();
    const s = LockStore.open(d);
    s.write([leased('k', 42n), { key: 'free', maxToken: 9n, lease: undefined }], WALL);
    s.close();
    const again = LockStore.open(d);
    assert.deepEqual(again.load('k'), leased('k', 42n));
    assert.deepEqual(again.load('free'), { key: 'free', maxToken: 9n, lease: undefined });
    assert.equal(again.load('nope'), undefined);
    assert.equal(again.rowCount, 2);
    again.close();
  });

  test('maxToken never goes down, whatever is written', () => {
    const s = LockStore.open(dir());
    s.write([leased('k', 42n)], WALL);
    s.write([{ key: 'k', maxToken: 3n, lease: undefined }], WALL);
    assert.deepEqual(s.load('k'), { key: 'k', maxToken: 42n, lease: undefined });
    s.close();
  });

  test('tokens up to 2^63 - 1 round-trip', () => {
    const s = LockStore.open(dir());
    const big = (1n << 63n) - 1n;
    s.write([leased('k', big)], WALL);
    assert.equal(s.load('k')!.maxToken, big);
    s.close();
  });

  test('each open takes a new epoch', () => {
    const d = dir();
    const a = LockStore.open(d);
    assert.equal(a.nextEpoch(), 1);
    a.close();
    const b = LockStore.open(d);
    assert.equal(b.nextEpoch(), 2);
    b.close();
  });

  test('beyond rowsMax, idle keys are pruned and read back as the floor (tokens still grow); live leases stay', () => {
    const s = LockStore.open(dir(), { rowsMax: 10, pruneAfterMs: 1_000 });
    s.write([leased('live', 5n, WALL + 1_000_000)], WALL);
    for (let i = 0; i < 10; i++) s.write([{ key: `idle${i}`, maxToken: BigInt(100 + i), lease: undefined }], WALL + i);
    assert.ok(s.rowCount <= 10, `${s.rowCount} rows`);
    assert.ok(s.floor >= 100n);
    assert.deepEqual(s.load('live'), { ...leased('live', 5n, WALL + 1_000_000), maxToken: s.floor }, 'kept, and read with the floor');
    assert.equal(s.load('idle0')!.maxToken, s.floor);
    assert.equal(s.load('never-seen')!.maxToken, s.floor);
    s.close();
  });
});
