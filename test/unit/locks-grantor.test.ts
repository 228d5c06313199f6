// The grantor's state table (src/core/locks/grantor.ts, rules G1-G7): each
// row, and that refused or illegal inputs leave the state as it was.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LockGrantor, GRANTOR_DEFAULTS } from '../../src/core/locks/grantor.js';
import type { GrantorConfig } from '../../src/core/locks/grantor.js';
import { TOKEN_MAX } from '../../src/core/locks/types.js';
import type { LockProposal, LockRecord } from '../../src/core/locks/types.js';

const WALL = 1_700_000_000_000;
const CONFIG: GrantorConfig = { ...GRANTOR_DEFAULTS, queueMax: 3, queueHoldMs: 1_000, restoreSkewMs: 500 };

function setup(config: GrantorConfig = CONFIG, disk = new Map<string, LockRecord>()) {
  const g = new LockGrantor<string>(config, (key) => disk.get(key));
  return { g, disk };
}

/** Proposal of contender `holder` (attempt 1, priority = its number) with a token. */
function p(holder: string, token: bigint, extra: Partial<LockProposal> = {}): LockProposal {
  return { key: 'k', holder, attempt: 1n, token, ttlMs: 10_000, priority: BigInt(holder.replace(/\D/g, '') || '0'), ...extra };
}

describe('grantor: G1 grant on a free key', () => {
  test('grants a token above maxToken, records the lease, and asks to persist it first', () => {
    const { g } = setup();
    const out = g.propose(p('h1', 5n), 'r1', 100, WALL);
    assert.deepEqual(out.reply, { key: 'k', attempt: 1n, token: 5n, granted: true, queued: false, maxToken: 5n });
    assert.deepEqual(out.persist, [{ key: 'k', maxToken: 5n, lease: { holder: 'h1', attempt: 1n, token: 5n, priority: 1n, ttlMs: 10_000, expiresWallMs: WALL + 10_000 } }]);
    assert.deepEqual(out.later, []);
    assert.deepEqual(g.view('k'), { maxToken: 5n, lease: { holder: 'h1', attempt: 1n, token: 5n, expiresAtMs: 10_100 }, queue: [] });
  });

  test('a token not above maxToken is queued at the head (the key is kept for it) and told maxToken', () => {
    const { g } = setup(CONFIG, new Map([['k', { key: 'k', maxToken: 9n, lease: undefined }]]));
    const out = g.propose(p('h1', 9n), 'r1', 0, WALL);
    assert.deepEqual(out.reply, { key: 'k', attempt: 1n, token: 9n, granted: false, queued: true, maxToken: 9n });
    assert.deepEqual(out.persist, []);
    assert.deepEqual(out.later, [], 'the direct answer already told it');
    // A worse contender with a good token does not take the key reserved for the better one.
    const worse = g.propose(p('h2', 50n), 'r2', 1, WALL);
    assert.equal(worse.reply.granted, false);
    assert.equal(worse.reply.queued, true);
    // The better one comes back with maxToken + 1 and gets it (token 50 was never granted: maxToken stays 9).
    const again = g.propose(p('h1', 10n), 'r1', 2, WALL);
    assert.equal(again.reply.granted, true);
    assert.equal(g.view('k')!.lease!.holder, 'h1');
    assert.deepEqual(g.view('k')!.queue.map((w) => w.holder), ['h2']);
  });

  test('a free key is not granted past a better contender waiting for it', () => {
    const { g } = setup(CONFIG, new Map([['k', { key: 'k', maxToken: 9n, lease: undefined }]]));
    g.propose(p('h1', 3n), 'r1', 0, WALL);
    const out = g.propose(p('h5', 20n), 'r5', 0, WALL);
    assert.equal(out.reply.granted, false);
    assert.equal(g.view('k')!.lease, undefined);
  });
});

describe('grantor: G2 the lease holder proposes again', () => {
  test('the same token is granted again and nothing changes', () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    const before = g.view('k');
    const out = g.propose(p('h1', 5n), 'r1', 3_000, WALL + 3_000);
    assert.equal(out.reply.granted, true);
    assert.deepEqual(out.persist, []);
    assert.deepEqual(g.view('k'), before, 'a duplicate does not extend the lease');
  });

  test('a lower token (an old round, reordered) is refused and changes nothing', () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    const before = g.view('k');
    const out = g.propose(p('h1', 4n), 'r1', 1, WALL);
    assert.deepEqual(out.reply, { key: 'k', attempt: 1n, token: 4n, granted: false, queued: false, maxToken: 5n });
    assert.deepEqual(g.view('k'), before);
  });
});

describe('grantor: G3 the lease holder starts a new round', () => {
  test('with nobody better waiting, the lease moves to the new token from now', () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    const out = g.propose(p('h1', 8n), 'r1', 2_000, WALL + 2_000);
    assert.equal(out.reply.granted, true);
    assert.equal(out.persist[0]!.maxToken, 8n);
    assert.deepEqual(g.view('k')!.lease, { holder: 'h1', attempt: 1n, token: 8n, expiresAtMs: 12_000 });
  });

  test('with a better contender waiting, the lease yields to it (and the holder waits behind it)', () => {
    const { g } = setup();
    g.propose(p('h5', 5n), 'r5', 0, WALL);
    g.propose(p('h1', 6n), 'r1', 1, WALL);
    const out = g.propose(p('h5', 7n), 'r5', 2, WALL);
    assert.deepEqual(out.reply, { key: 'k', attempt: 1n, token: 7n, granted: false, queued: true, maxToken: 6n });
    assert.deepEqual(out.later, [{ holder: 'h1', replyTo: 'r1', vote: { key: 'k', attempt: 1n, token: 6n, granted: true, queued: false, maxToken: 6n } }]);
    assert.equal(out.persist.length, 1, 'one record per key: the lease went from h5 to h1');
    assert.equal(out.persist[0]!.lease!.holder, 'h1');
    assert.deepEqual(g.view('k')!.queue.map((w) => [w.holder, w.token]), [['h5', 7n]]);
    assert.equal(g.stats.yields, 1);
  });
});

describe('grantor: G4 queueing', () => {
  test("another contender's valid lease: queued with maxToken, in (priority, holder, attempt) order", () => {
    const { g } = setup();
    g.propose(p('h9', 5n), 'r9', 0, WALL);
    const a = g.propose(p('h3', 6n), 'r3', 1, WALL);
    g.propose(p('h2', 6n, { attempt: 7n }), 'r2', 2, WALL);
    g.propose(p('h2', 6n, { attempt: 4n }), 'r2', 3, WALL);
    assert.deepEqual(a.reply, { key: 'k', attempt: 1n, token: 6n, granted: false, queued: true, maxToken: 5n });
    assert.deepEqual(g.view('k')!.queue.map((w) => [w.holder, w.attempt]), [['h2', 4n], ['h2', 7n], ['h3', 1n]]);
  });

  test('a full queue makes room for a better contender (the worst is told) and refuses a worse one unchanged', () => {
    const { g } = setup();
    g.propose(p('h9', 5n), 'r9', 0, WALL);
    for (const h of ['h2', 'h4', 'h6']) g.propose(p(h, 6n), `r${h}`, 1, WALL);
    const worse = g.propose(p('h7', 6n), 'r7', 2, WALL);
    assert.deepEqual(worse.reply, { key: 'k', attempt: 1n, token: 6n, granted: false, queued: false, maxToken: 5n });
    assert.deepEqual(g.view('k')!.queue.map((w) => w.holder), ['h2', 'h4', 'h6']);
    const better = g.propose(p('h3', 6n), 'r3', 3, WALL);
    assert.equal(better.reply.queued, true);
    assert.deepEqual(better.later, [{ holder: 'h6', replyTo: 'rh6', vote: { key: 'k', attempt: 1n, token: 6n, granted: false, queued: false, maxToken: 5n } }]);
    assert.deepEqual(g.view('k')!.queue.map((w) => w.holder), ['h2', 'h3', 'h4']);
  });

  test('an older round of a queued contender does not replace its newer entry', () => {
    const { g } = setup();
    g.propose(p('h9', 5n), 'r9', 0, WALL);
    g.propose(p('h3', 8n), 'r3', 1, WALL);
    const out = g.propose(p('h3', 6n), 'r3', 2, WALL);
    assert.equal(out.reply.queued, true);
    assert.deepEqual(g.view('k')!.queue.map((w) => w.token), [8n]);
  });
});

describe('grantor: G5 the lease ends and the best waiting contender gets the key', () => {
  test('release: the head is granted in a later vote through its replyTo', () => {
    const { g } = setup();
    g.propose(p('h9', 5n), 'r9', 0, WALL);
    g.propose(p('h4', 6n), 'r4', 1, WALL);
    g.propose(p('h2', 7n), 'r2', 2, WALL);
    const out = g.release({ key: 'k', holder: 'h9', attempt: 1n, token: 5n }, 3, WALL);
    assert.equal(out.released, true);
    assert.deepEqual(out.later, [{ holder: 'h2', replyTo: 'r2', vote: { key: 'k', attempt: 1n, token: 7n, granted: true, queued: false, maxToken: 7n } }]);
    assert.equal(out.persist[0]!.lease!.holder, 'h2');
    assert.deepEqual(g.view('k')!.queue.map((w) => w.holder), ['h4']);
  });

  test('a head whose token is too low is told maxToken once and keeps its place', () => {
    const { g } = setup();
    g.propose(p('h9', 5n), 'r9', 0, WALL);
    g.propose(p('h2', 5n), 'r2', 1, WALL);
    const out = g.release({ key: 'k', holder: 'h9', attempt: 1n, token: 5n }, 2, WALL);
    assert.deepEqual(out.later, [{ holder: 'h2', replyTo: 'r2', vote: { key: 'k', attempt: 1n, token: 5n, granted: false, queued: true, maxToken: 5n } }]);
    assert.equal(g.view('k')!.lease, undefined);
    assert.deepEqual(g.tick(3, WALL).later, [], 'told once');
    assert.equal(g.propose(p('h2', 6n), 'r2', 4, WALL).reply.granted, true);
  });

  test('expiry on the grantor clock frees the key at nextWakeMs', () => {
    const { g } = setup();
    g.propose(p('h9', 5n, { ttlMs: 1_000 }), 'r9', 0, WALL);
    g.propose(p('h2', 6n), 'r2', 500, WALL);
    assert.equal(g.nextWakeMs(), 1_000);
    assert.deepEqual(g.tick(999, WALL).later, []);
    const out = g.tick(1_000, WALL + 1_000);
    assert.equal(out.later[0]!.vote.granted, true);
    assert.equal(g.view('k')!.lease!.holder, 'h2');
  });
});

describe('grantor: G6 release', () => {
  test("a release with a token below the lease's (a delayed release of an older round) changes nothing", () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    const before = g.view('k');
    const out = g.release({ key: 'k', holder: 'h1', attempt: 1n, token: 4n }, 1, WALL);
    assert.deepEqual(out, { persist: [], later: [], released: false });
    assert.deepEqual(g.view('k'), before);
  });

  test("another contender's release changes nothing", () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    const before = g.view('k');
    assert.deepEqual(g.release({ key: 'k', holder: 'h2', attempt: 1n, token: 5n }, 1, WALL), { persist: [], later: [], released: false });
    assert.deepEqual(g.release({ key: 'k', holder: 'h1', attempt: 2n, token: 5n }, 1, WALL), { persist: [], later: [], released: false });
    assert.deepEqual(g.view('k'), before);
  });

  test('the lease ends (persisted) and a queue place is left, each only up to the token', () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    g.propose(p('h3', 9n), 'r3', 0, WALL);
    assert.deepEqual(g.release({ key: 'k', holder: 'h3', attempt: 1n, token: 8n }, 1, WALL), { persist: [], later: [], released: false });
    assert.equal(g.view('k')!.queue.length, 1);
    g.release({ key: 'k', holder: 'h3', attempt: 1n, token: 9n }, 1, WALL);
    assert.equal(g.view('k')!.queue.length, 0);
    const out = g.release({ key: 'k', holder: 'h1', attempt: 1n, token: 5n }, 2, WALL);
    assert.deepEqual(out.persist, [{ key: 'k', maxToken: 5n, lease: undefined }]);
  });
});

describe('grantor: G6 release by token (no holder)', () => {
  test('ends the lease with exactly that token, whoever holds it, and says so', () => {
    const { g } = setup();
    g.propose(p('h1', 5n), 'r1', 0, WALL);
    g.propose(p('h2', 6n), 'r2', 0, WALL);
    const before = g.view('k');
    for (const token of [4n, 6n]) {
      const out = g.release({ key: 'k', holder: '', attempt: 0n, token }, 1, WALL);
      assert.equal(out.released, false);
      assert.deepEqual(g.view('k'), before, `token ${token} changes nothing`);
    }
    const out = g.release({ key: 'k', holder: '', attempt: 0n, token: 5n }, 2, WALL);
    assert.equal(out.released, true);
    assert.equal(out.later[0]!.vote.granted, true, 'the waiting contender gets the key');
    assert.equal(g.view('k')!.lease!.holder, 'h2');
  });
});

describe('grantor: G7 queue places expire', () => {
  test('an entry not proposed again within queueHoldMs is dropped; re-proposing keeps it', () => {
    const { g } = setup();
    g.propose(p('h9', 5n), 'r9', 0, WALL);
    g.propose(p('h2', 6n), 'r2', 0, WALL);
    g.propose(p('h3', 6n), 'r3', 0, WALL);
    g.propose(p('h3', 6n), 'r3', 600, WALL);
    g.tick(1_000, WALL);
    assert.deepEqual(g.view('k')!.queue.map((w) => w.holder), ['h3']);
    g.tick(1_600, WALL);
    assert.deepEqual(g.view('k')!.queue, []);
  });
});

describe('grantor: restart and memory bounds', () => {
  test('a restarted grantor honours a persisted lease until its wall expiry + restoreSkewMs, and keeps maxToken', () => {
    const { g: first, disk } = setup();
    for (const r of first.propose(p('h1', 5n), 'r1', 0, WALL).persist) disk.set(r.key, r);
    // Restart: a new monotonic clock (starts at 0 again), 4 s of wall time later.
    const { g } = setup(CONFIG, disk);
    const other = g.propose(p('h0', 6n), 'r0', 0, WALL + 4_000);
    assert.equal(other.reply.granted, false, 'the lease of before the restart holds');
    assert.deepEqual(g.view('k')!.lease, { holder: 'h1', attempt: 1n, token: 5n, expiresAtMs: 6_500 });
    assert.equal(g.stats.restoredLeases, 1);
    g.propose(p('h0', 6n), 'r0', 6_000, WALL + 10_000);
    const out = g.tick(6_500, WALL + 10_500);
    assert.equal(out.later[0]!.vote.granted, true, 'then the waiting contender gets it');
  });

  test('a persisted lease already over is not restored; maxToken is', () => {
    const disk = new Map<string, LockRecord>([['k', { key: 'k', maxToken: 5n, lease: { holder: 'h1', attempt: 1n, token: 5n, priority: 1n, ttlMs: 100, expiresWallMs: WALL } }]]);
    const { g } = setup(CONFIG, disk);
    assert.equal(g.propose(p('h2', 5n), 'r2', 0, WALL + 501).reply.granted, false);
    assert.equal(g.view('k')!.lease, undefined);
    assert.equal(g.propose(p('h2', 6n), 'r2', 1, WALL + 502).reply.granted, true);
  });

  test('idle keys are evicted past keysMax and their maxToken comes back from the store', () => {
    const { g, disk } = setup({ ...CONFIG, keysMax: 2 });
    const write = (rs: readonly LockRecord[]) => rs.forEach((r) => disk.set(r.key, r));
    write(g.propose(p('h1', 5n, { key: 'a', ttlMs: 10 }), 'r', 0, WALL).persist);
    write(g.propose(p('h1', 1n, { key: 'b' }), 'r', 0, WALL).persist);
    // 'a' is idle (lease over), 'b' is busy: a third key evicts 'a'.
    write(g.propose(p('h1', 1n, { key: 'c', ttlMs: 10 }), 'r', 20, WALL + 20).persist);
    assert.equal(g.keyCount, 2);
    assert.equal(g.view('a'), undefined);
    // Both remaining keys busy or not, 'a' comes back with its maxToken (5).
    const again = g.propose(p('h2', 5n, { key: 'a' }), 'r', 40, WALL + 40);
    assert.equal(again.reply.granted, false);
    assert.equal(again.reply.maxToken, 5n);
  });

  test('memory full of busy keys: a new key is refused unqueued, nothing is created', () => {
    const { g } = setup({ ...CONFIG, keysMax: 1 });
    g.propose(p('h1', 1n, { key: 'a' }), 'r', 0, WALL);
    const out = g.propose(p('h1', 1n, { key: 'b' }), 'r', 1, WALL);
    assert.deepEqual(out.reply, { key: 'b', attempt: 1n, token: 1n, granted: false, queued: false, maxToken: 0n });
    assert.equal(g.keyCount, 1);
  });
});

describe('grantor: malformed proposals change nothing', () => {
  const bad: [string, Partial<LockProposal>][] = [
    ['empty key', { key: '' }],
    ['key over 1 KiB', { key: 'x'.repeat(1025) }],
    ['key of 1025 UTF-8 bytes', { key: 'é'.repeat(512) + 'x' }],
    ['ttl 0', { ttlMs: 0 }],
    ['ttl over 10 min', { ttlMs: 600_001 }],
    ['fractional ttl', { ttlMs: 1.5 }],
    ['token 0', { token: 0n }],
    ['token over 2^63 - 1', { token: TOKEN_MAX + 1n }],
    ['empty holder', { holder: '' }],
  ];
  for (const [name, change] of bad) {
    test(name, () => {
      const { g } = setup();
      const out = g.propose({ ...p('h1', 1n), ...change }, 'r', 0, WALL);
      assert.equal(out.reply.granted, false);
      assert.equal(out.reply.queued, false);
      assert.deepEqual(out.persist, []);
      assert.equal(g.keyCount, 0);
    });
  }

  test('a key of exactly 1 KiB is fine', () => {
    const { g } = setup();
    assert.equal(g.propose(p('h1', 1n, { key: 'x'.repeat(1024) }), 'r', 0, WALL).reply.granted, true);
  });
});
