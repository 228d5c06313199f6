// The acquirer's states (src/core/locks/acquirer.ts): proposing -> held ->
// gone, or proposing -> failed; rounds, validity, releases, and that bad
// input and stray votes leave it as it was.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LockAcquirer, ACQUIRER_DEFAULTS } from '../../src/core/locks/acquirer.js';
import type { AcquirerConfig, AcquirerOutput } from '../../src/core/locks/acquirer.js';
import { LockError } from '../../src/core/locks/errors.js';
import type { LockVote } from '../../src/core/locks/types.js';

const WALL = 1_700_000_000_000;
const Q = ['a', 'b', 'c'];
const BASE = 7n << 32n;
const CONFIG: AcquirerConfig = { ...ACQUIRER_DEFAULTS, selfId: 'me', attemptBase: BASE, retryMs: 100, splitTimeoutMs: 50, splitTimeoutMaxMs: 200, roundMinMs: 10, tryMs: 300, releaseSends: 2 };

function start(waitMs = 5_000, ttlMs = 10_000, config = CONFIG) {
  const acq = new LockAcquirer(config);
  const { attempt, output } = acq.acquire({ key: 'k', ttlMs, waitMs, quorum: Q }, 1_000, WALL);
  return { acq, attempt, output };
}

function v(attempt: bigint, token: bigint, granted: boolean, maxToken: bigint, queued = false): LockVote {
  return { key: 'k', attempt, token, granted, maxToken, queued };
}

const proposesOf = (o: AcquirerOutput) => o.sends.filter((s) => s.message.kind === 'propose').map((s) => (s.message.kind === 'propose' ? [s.to, s.message.proposal.token] : []));
const releasesOf = (o: AcquirerOutput) => o.sends.filter((s) => s.message.kind === 'release').map((s) => (s.message.kind === 'release' ? [s.to, s.message.release.token] : []));

describe('acquirer: proposing', () => {
  test('proposes token 1 to every member, with its attempt id and priority (wall ms at the request)', () => {
    const { output, attempt } = start();
    assert.equal(attempt, BASE + 1n);
    assert.deepEqual(output.sends.map((s) => s.to), Q);
    assert.deepEqual(output.sends[0]!.message, { kind: 'propose', proposal: { key: 'k', holder: 'me', attempt, token: 1n, ttlMs: 10_000, priority: BigInt(WALL) } });
    assert.deepEqual(output.events, []);
  });

  test('a majority of grants for the token: acquired, valid until sent + ttl x (1 - driftMargin); the others are released from', () => {
    const { acq, attempt } = start();
    assert.deepEqual(acq.vote('a', v(attempt, 1n, true, 1n), 1_010).events, []);
    const out = acq.vote('c', v(attempt, 1n, true, 1n), 1_020);
    assert.deepEqual(out.events, [{ kind: 'acquired', key: 'k', attempt, token: 1n, validUntilMs: 1_000 + 9_500 }]);
    assert.deepEqual(releasesOf(out), [['b', 1n]], 'b may have queued us: leave its queue');
    assert.equal(acq.view(attempt)!.phase, 'held');
  });

  test('a refusal with maxToken >= token starts a new round at maxToken + 1 to all', () => {
    const { acq, attempt } = start();
    const out = acq.vote('b', v(attempt, 1n, false, 41n, true), 1_010);
    assert.deepEqual(proposesOf(out), [['a', 42n], ['b', 42n], ['c', 42n]]);
    // Grants of the old round no longer count.
    acq.vote('a', v(attempt, 1n, true, 1n), 1_011);
    assert.deepEqual(acq.vote('c', v(attempt, 1n, true, 1n), 1_012).events, []);
    acq.vote('a', v(attempt, 42n, true, 42n), 1_013);
    assert.equal(acq.vote('c', v(attempt, 42n, true, 42n), 1_014).events[0]!.kind, 'acquired');
  });

  test('votes from outside the quorum set, for another key or another attempt change nothing', () => {
    const { acq, attempt } = start();
    const before = acq.view(attempt);
    assert.deepEqual(acq.vote('zz', v(attempt, 1n, true, 1n), 1_001), { sends: [], events: [] });
    assert.deepEqual(acq.vote('a', { ...v(attempt, 1n, true, 1n), key: 'other' }, 1_001).events, []);
    assert.deepEqual(acq.view(attempt), before);
  });

  test('a grant for an attempt that is over is handed back to that grantor', () => {
    const { acq } = start();
    const out = acq.vote('b', v(BASE + 99n, 3n, true, 3n), 1_001);
    assert.deepEqual(releasesOf(out), [['b', 3n]]);
    assert.equal(acq.stats.strayGrants, 1);
  });

  test('members that have not granted get the proposal again every retryMs', () => {
    const { acq, attempt } = start();
    acq.vote('a', v(attempt, 1n, true, 1n), 1_010);
    acq.vote('b', v(attempt, 1n, false, 0n, true), 1_010);
    assert.equal(acq.nextWakeMs(), 1_060, 'split timer (granted by a, queued at b) comes first');
    assert.deepEqual(proposesOf(acq.tick(1_059)), []);
  });

  test('split vote: holding grants while queued elsewhere for splitTimeoutMs starts a new round (same priority)', () => {
    const { acq, attempt } = start();
    acq.vote('a', v(attempt, 1n, true, 1n), 1_010);
    acq.vote('b', v(attempt, 1n, false, 0n, true), 1_010);
    const out = acq.tick(1_060);
    assert.deepEqual(proposesOf(out), [['a', 2n], ['b', 2n], ['c', 2n]]);
    assert.equal(out.sends[0]!.message.kind === 'propose' && out.sends[0]!.message.proposal.priority, BigInt(WALL));
    assert.equal(acq.stats.splitRounds, 1);
  });

  test('a majority that comes too late in its round is not declared: the round is renewed', () => {
    const { acq, attempt } = start(20_000, 1_000);
    acq.vote('a', v(attempt, 1n, true, 1n), 1_010);
    // freshMs = 1000 x 0.95 / 2 = 475: by 1500 the round is too old.
    assert.deepEqual(acq.vote('b', v(attempt, 1n, true, 1n), 1_500).events, []);
    assert.deepEqual(proposesOf(acq.tick(1_500)).map(([, t]) => t), [2n, 2n, 2n]);
  });

  test('the wait ends: not acquired, and every member is released from (twice, retryMs apart)', () => {
    const { acq, attempt } = start(500);
    acq.vote('a', v(attempt, 1n, true, 1n), 1_010);
    const out = acq.tick(1_500);
    assert.deepEqual(out.events, [{ kind: 'failed', key: 'k', attempt, reason: 'timeout' }]);
    assert.deepEqual(releasesOf(out), [['a', 1n], ['b', 1n], ['c', 1n]]);
    assert.deepEqual(releasesOf(acq.tick(1_600)), [['a', 1n], ['b', 1n], ['c', 1n]]);
    assert.deepEqual(acq.tick(1_700).sends, []);
    assert.equal(acq.attemptCount, 0);
  });

  test('wait 0: fails as soon as a majority cannot grant', () => {
    const { acq, attempt } = start(0);
    acq.vote('a', v(attempt, 1n, false, 0n, true), 1_001);
    const out = acq.vote('b', v(attempt, 1n, false, 0n, true), 1_002);
    assert.deepEqual(out.events, [{ kind: 'failed', key: 'k', attempt, reason: 'busy' }]);
  });
});

describe('acquirer: held', () => {
  function held() {
    const s = start();
    s.acq.vote('a', v(s.attempt, 1n, true, 1n), 1_010);
    s.acq.vote('b', v(s.attempt, 1n, true, 1n), 1_010);
    return s;
  }

  test('release with the token: true, and every member is told', () => {
    const { acq } = held();
    const r = acq.release('k', 1n, 2_000);
    assert.equal(r.released, true);
    assert.deepEqual(releasesOf(r.output), [['a', 1n], ['b', 1n], ['c', 1n]]);
    assert.equal(acq.attemptCount, 0);
  });

  test('release with another token or key: false, nothing changes', () => {
    const { acq, attempt } = held();
    const before = acq.view(attempt);
    assert.deepEqual(acq.release('k', 2n, 2_000), { released: false, held: false, output: { sends: [], events: [] } });
    assert.deepEqual(acq.release('j', 1n, 2_000), { released: false, held: false, output: { sends: [], events: [] } });
    assert.deepEqual(acq.view(attempt), before);
  });

  test('the lease ends on our clock: expired, and the grantors are freed early', () => {
    const { acq, attempt } = held();
    assert.equal(acq.nextWakeMs(), 10_500);
    assert.deepEqual(acq.tick(10_499).events, []);
    const out = acq.tick(10_500);
    assert.deepEqual(out.events, [{ kind: 'expired', key: 'k', attempt, token: 1n }]);
    assert.equal(releasesOf(out).length, 3);
  });

  test('late votes change nothing while held', () => {
    const { acq, attempt } = held();
    const before = acq.view(attempt);
    assert.deepEqual(acq.vote('c', v(attempt, 1n, false, 9n, true), 1_020), { sends: [], events: [] });
    assert.deepEqual(acq.view(attempt), before);
  });
});

describe('acquirer: bad input and bounds', () => {
  const bad: [string, { key?: string; ttlMs?: number; waitMs?: number; quorum?: string[] }, string][] = [
    ['empty key', { key: '' }, 'bad_key'],
    ['key over 1 KiB', { key: 'k'.repeat(1025) }, 'bad_key'],
    ['ttl 0', { ttlMs: 0 }, 'bad_ttl'],
    ['ttl over 10 min', { ttlMs: 600_001 }, 'bad_ttl'],
    ['negative wait', { waitMs: -1 }, 'bad_wait'],
    ['wait over the limit', { waitMs: 600_001 }, 'bad_wait'],
    ['empty quorum', { quorum: [] }, 'no_quorum'],
  ];
  for (const [name, change, code] of bad) {
    test(`${name}: LockError ${code}, nothing started`, () => {
      const acq = new LockAcquirer(CONFIG);
      assert.throws(() => acq.acquire({ key: 'k', ttlMs: 1_000, waitMs: 1_000, quorum: Q, ...change }, 0, WALL), (e: unknown) => e instanceof LockError && e.code === code);
      assert.equal(acq.attemptCount, 0);
      assert.equal(acq.nextWakeMs(), undefined);
    });
  }

  test('attemptsMax in flight: busy', () => {
    const acq = new LockAcquirer({ ...CONFIG, attemptsMax: 2 });
    acq.acquire({ key: 'k', ttlMs: 1_000, waitMs: 1_000, quorum: Q }, 0, WALL);
    acq.acquire({ key: 'k', ttlMs: 1_000, waitMs: 1_000, quorum: Q }, 0, WALL);
    assert.throws(() => acq.acquire({ key: 'k', ttlMs: 1_000, waitMs: 1_000, quorum: Q }, 0, WALL), (e: unknown) => e instanceof LockError && e.code === 'busy');
  });

  test('duplicate quorum members count once (majority of 3 is 2)', () => {
    const acq = new LockAcquirer(CONFIG);
    const { attempt, output } = acq.acquire({ key: 'k', ttlMs: 1_000, waitMs: 1_000, quorum: ['a', 'a', 'b', 'c'] }, 0, WALL);
    assert.equal(output.sends.length, 3);
    acq.vote('a', v(attempt, 1n, true, 1n), 1);
    assert.equal(acq.vote('b', v(attempt, 1n, true, 1n), 1).events[0]!.kind, 'acquired');
  });

  test('the next attempt on a key starts above the highest token this node heard of', () => {
    const { acq, attempt } = start();
    acq.vote('a', v(attempt, 1n, false, 30n, true), 1_001);
    const next = acq.acquire({ key: 'k', ttlMs: 1_000, waitMs: 1_000, quorum: Q }, 1_002, WALL);
    assert.equal(next.output.sends[0]!.message.kind === 'propose' && next.output.sends[0]!.message.proposal.token, 31n);
  });
});

describe('acquirer: the drift margin covers clocks ±1 %', () => {
  test('the holder validity ends before any grant of its majority, for extreme rates', () => {
    const ttlMs = 10_000;
    for (const holderRate of [-0.01, 0, 0.01]) {
      for (const grantorRate of [-0.01, 0, 0.01]) {
        // True ms: the holder sends at 0; the grantor receives at 0 (the worst case) and keeps the lease ttl of its own ms.
        const grantEndsTrue = ttlMs / (1 + grantorRate);
        const validEndsTrue = (ttlMs * (1 - ACQUIRER_DEFAULTS.driftMargin)) / (1 + holderRate);
        assert.ok(validEndsTrue < grantEndsTrue, `holder ${holderRate}, grantor ${grantorRate}`);
      }
    }
  });
});
