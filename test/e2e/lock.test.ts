// End-to-end distributed locks (DESIGN.md section 1 "grapevine lock",
// section 2 "Locks") on 127.0.0.1: five real `grapevine node` processes from
// one cluster file (the quorum set is its five nodes), driven with the real
// `grapevine lock` binary and, where a step is timed tightly, the client
// library:
//   - a lock held at node 1 makes `lock acquire` (wait 0) at node 2 exit 1
//     with one stderr line; an `acquire --wait` at node 2, queued before the
//     release (its TCP connection to node 2 seen in /proc), is granted only
//     after node 1's `lock release`, with a greater token (latency measured);
//   - expiry: a lock with --ttl 1500 never released is granted to a waiter at
//     node 3 no sooner than the ttl after the holder asked, and soon after
//     it; releasing the expired lock then exits 1;
//   - 20 sequential acquire/release rounds over all five nodes (CLI and
//     library, release at the holder's node and by token at another node):
//     tokens strictly increase;
//   - five concurrent contenders (one per node) with --wait: each is granted
//     once, one after another, never before the previous holder's release,
//     tokens strictly increasing in grant order;
//   - release with a wrong token, twice, by token at another node;
//   - bad input exits 2 with one stderr line naming the problem; an
//     unreachable node exits 1;
//   - the holder dies: a lock taken through the client library at node 2,
//     node 2 killed -9, node 4 gets it once the lease ran out; node 2
//     restarted with its data dir issues a greater token still.
// Timings go to the test's diagnostics.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/proc.js';
import { grapevine } from '../helpers/gossip.js';
import type { BinResult } from '../helpers/gossip.js';
import { loopbackCluster } from '../helpers/loopback-cluster.js';
import type { LoopbackCluster } from '../helpers/loopback-cluster.js';
import { mapLimit } from '../helpers/lab-sh.js';
import { assertOneLine } from '../helpers/kv.js';
import { acquireInBackground, assertReleased, assertStrictlyIncreasing, tokenOf, waitConnected } from '../helpers/lock.js';
import type { BackgroundAcquire, Grant } from '../helpers/lock.js';

const IDS = ['1', '2', '3', '4', '5'];
const CLI_TIMEOUT_MS = 15_000;
/** A node process per CLI call: two at a time is what 2 cores take. */
const CLI_PARALLELISM = 2;
/** A waiter is queued at the grantors within this of its connection to its node. */
const QUEUED_AFTER_CONNECT_MS = 300;
/** A queued waiter is granted within this of the release (or the lease's end); machine under load. */
const HANDOFF_WITHIN_MS = 1_500;

interface Cluster extends LoopbackCluster {
  /** `grapevine lock ARGS --cluster FILE --id ID`. */
  lock(id: string, args: readonly string[], timeoutMs?: number): Promise<BinResult>;
}

async function startCluster(t: TestContext): Promise<Cluster> {
  const c = await loopbackCluster(t, { ids: IDS, name: 'lock-e2e', clientTimeoutMs: 5_000, upWithinMs: 15_000 });
  return { ...c, lock: (id, args, timeoutMs = CLI_TIMEOUT_MS) => grapevine(['lock', ...args, ...c.at(id)], timeoutMs) };
}

test('locks on 5 nodes: blocking and release, expiry, increasing tokens, fair contenders, wrong tokens, bad input, a holder killed -9', async (t) => {
  const c = await startCluster(t);
  const { clients } = c;
  /** Every token issued per key, in the order issued: must strictly increase. */
  const issued = new Map<string, bigint[]>();
  const record = (key: string, token: bigint) => {
    const list = issued.get(key) ?? [];
    list.push(token);
    issued.set(key, list);
    assertStrictlyIncreasing(list, `tokens of '${key}'`);
  };
  const background = (id: string, label: string, args: readonly string[], timeoutMs: number): BackgroundAcquire => acquireInBackground(t, label, ['lock', ...args, ...c.at(id)], timeoutMs);

  const t0 = Date.now();
  await Promise.all(IDS.map((id) => c.start(id)));
  t.diagnostic(`5 nodes up ${Date.now() - t0} ms after the first spawn`);

  await t.test('held at node 1: node 2 cannot take it (exit 1); a waiter at node 2 gets it right after the release, with a greater token', async () => {
    const key = 'block';
    const first = await c.lock('1', ['acquire', key, '--ttl', '5000']);
    const heldAt = Date.now();
    const token1 = tokenOf(first, 'acquire at node 1');
    record(key, token1);

    // A waiter, and (at the same time, two process starts at once) a try with wait 0 at the same node.
    const waiter = background('2', 'waiter at node 2', ['acquire', key, '--wait', '8000'], 12_000);
    const busy = await c.lock('2', ['acquire', key]);
    assertOneLine(busy, 1, [`'${key}'`, 'not acquired'], 'acquire (wait 0) at node 2 while node 1 holds the lock');
    // The waiter connected (so it is queued) before the release; granted only after it.
    await waitConnected(waiter.proc.pid, c.ports.get('2')!, 8_000, 'the waiter');
    const connectMs = Date.now() - waiter.spawnedAt;
    await sleep(QUEUED_AFTER_CONNECT_MS);
    assert.deepEqual(waiter.proc.stdout, [], 'the waiter has no token while node 1 holds the lock');
    assert.ok(waiter.proc.running, 'the waiter still waits');
    const releaseStart = Date.now();
    const rel = await c.lock('1', ['release', key, String(token1)]);
    const releaseEnd = Date.now();
    // (Exit 1 here would mean the 5 s lease ran out first: the machine too slow for this step.)
    assertReleased(rel, `release at node 1, started ${releaseStart - heldAt} ms after the acquire returned (ttl 5000 ms)`);
    const grant = await waiter.granted;
    const done = await waiter.done;
    assert.equal(done.code, 0, `the waiter exits 0: ${done.stderr}`);
    assert.equal(done.stderr, '', 'the waiter writes nothing on stderr');
    assert.equal(done.stdout, `${grant.token}\n`, 'the waiter prints exactly its token');
    assert.ok(grant.at >= releaseStart, `the waiter was granted ${releaseStart - grant.at} ms before the release began`);
    assert.ok(grant.token > token1, `the waiter's token ${grant.token} > the first holder's ${token1}`);
    record(key, grant.token);
    assert.ok(grant.at - releaseEnd <= HANDOFF_WITHIN_MS, `the waiter was granted ${grant.at - releaseEnd} ms after the release returned (bound ${HANDOFF_WITHIN_MS} ms)`);
    t.diagnostic(
      `block: wait-0 refusal took ${busy.durationMs} ms (process included); waiter connected to node 2 ${connectMs} ms after its spawn (at the latest); ` +
        `granted ${grant.at - releaseEnd} ms after 'lock release' returned (${grant.at - releaseStart} ms after it was started; the release command took ${rel.durationMs} ms); tokens ${token1} -> ${grant.token}`,
    );
    assert.equal(await clients.use('2', (cl) => cl.lockRelease(key, grant.token)), true, "node 2's lock released through the library");
  });

  await t.test('expiry: a lock never released is granted to a waiter at node 3 after its ttl, not before', async () => {
    const key = 'expiry';
    const TTL = 1_500;
    const askedAt = Date.now();
    const first = await c.lock('1', ['acquire', key, '--ttl', String(TTL)]);
    const gotAt = Date.now();
    const token1 = tokenOf(first, 'acquire --ttl 1500 at node 1');
    record(key, token1);
    const waiter = background('3', 'waiter at node 3', ['acquire', key, '--wait', '5000'], 10_000);
    const grant = await waiter.granted;
    const done = await waiter.done;
    assert.equal(done.code, 0, `the waiter exits 0: ${done.stderr}`);
    assert.equal(done.stdout, `${grant.token}\n`);
    // The grantors' leases began after the holder asked, and last the ttl: nobody may get it sooner.
    const sinceAsked = grant.at - askedAt;
    assert.ok(sinceAsked >= TTL - 25, `the waiter was granted ${sinceAsked} ms after the holder asked: before the ${TTL} ms ttl ran out`);
    assert.ok(grant.at - gotAt <= TTL + HANDOFF_WITHIN_MS, `the waiter was granted ${grant.at - gotAt} ms after the holder's acquire returned (ttl ${TTL} + ${HANDOFF_WITHIN_MS} ms at most)`);
    assert.ok(grant.token > token1, `the waiter's token ${grant.token} > the expired holder's ${token1}`);
    record(key, grant.token);
    t.diagnostic(`expiry: ttl ${TTL} ms; the waiter at node 3 was granted ${sinceAsked} ms after the holder's 'lock acquire' started, ${grant.at - gotAt} ms after it returned (waiter spawned ${waiter.spawnedAt - gotAt} ms after that)`);
    // The expired holder cannot release it any more.
    const late = await c.lock('1', ['release', key, String(token1)]);
    assertOneLine(late, 1, [`'${key}'`, String(token1), 'not held'], 'release of an expired lock');
    assert.equal(await clients.use('3', (cl) => cl.lockRelease(key, grant.token)), true, "the waiter's lock released at node 3");
  });

  await t.test('20 sequential acquire/release rounds over all nodes: tokens strictly increase', async () => {
    const key = 'sequence';
    const times: number[] = [];
    for (let r = 0; r < 20; r++) {
      const id = IDS[r % IDS.length]!;
      const other = IDS[(r + 2) % IDS.length]!;
      const began = Date.now();
      let token: bigint;
      // Rounds 0, 4, ..., 16 (nodes 1, 5, 4, 3, 2): the CLI; the others the client library (a process
      // start costs ~0.5-1 s here). Both try once (wait 0): the previous holder has released.
      if (r % 4 === 0) token = tokenOf(await c.lock(id, ['acquire', key, '--ttl', '10000']), `round ${r}: acquire at node ${id}`);
      else {
        const got = await clients.use(id, (cl) => cl.lockAcquire(key, { ttlMs: 10_000 }));
        assert.equal(got.acquired, true, `round ${r}: the library's acquire at node ${id}`);
        token = got.token;
      }
      times.push(Date.now() - began);
      record(key, token);
      // Odd rounds: released at the holder's node; even rounds: by token at another node.
      if (r % 2 === 1) assert.equal(await clients.use(id, (cl) => cl.lockRelease(key, token)), true, `round ${r}: release at node ${id}`);
      else assert.equal(await clients.use(other, (cl) => cl.lockRelease(key, token)), true, `round ${r}: release at node ${other} (held at ${id})`);
    }
    const tokens = issued.get(key)!;
    assert.equal(tokens.length, 20);
    const cli = times.filter((_, k) => k % 4 === 0);
    const lib = times.filter((_, k) => k % 4 !== 0);
    t.diagnostic(`sequence: 20 rounds, tokens ${tokens[0]}..${tokens[19]}; acquire took ${Math.min(...cli)}-${Math.max(...cli)} ms with the CLI (process included), ${Math.min(...lib)}-${Math.max(...lib)} ms with the library`);
  });

  await t.test('5 concurrent contenders with --wait: each granted once, one after another, tokens increasing in grant order', async () => {
    const key = 'contended';
    const HOLD_MS = 150;
    const arrivals: { id: string; grant: Grant }[] = [];
    let wake: (() => void) | undefined;
    const waiters = IDS.map((id) => {
      const w = background(id, `contender at node ${id}`, ['acquire', key, '--ttl', '10000', '--wait', '25000'], 35_000);
      void w.granted.then((grant) => {
        arrivals.push({ id, grant });
        wake?.();
      }, () => undefined);
      return w;
    });
    const holds: { id: string; token: bigint; acquiredAt: number; releaseStart: number; releaseEnd: number }[] = [];
    const violations: string[] = [];
    const deadline = Date.now() + 30_000;
    for (let k = 0; k < IDS.length; k++) {
      while (arrivals.length <= k) {
        if (Date.now() > deadline) throw new Error(`only ${arrivals.length} of 5 contenders granted: ${arrivals.map((a) => a.id)}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
      const { id, grant } = arrivals[k]!;
      // Anyone else granted while this one holds would show up as a second arrival before its release.
      await sleep(HOLD_MS);
      if (arrivals.length > k + 1) violations.push(`node ${arrivals[k + 1]!.id} granted (token ${arrivals[k + 1]!.grant.token}) while node ${id} held it (token ${grant.token})`);
      const releaseStart = Date.now();
      const released = await clients.use(id, (cl) => cl.lockRelease(key, grant.token));
      const releaseEnd = Date.now();
      assert.equal(released, true, `release of node ${id}'s lock (token ${grant.token})`);
      holds.push({ id, token: grant.token, acquiredAt: grant.at, releaseStart, releaseEnd });
    }
    for (let k = 1; k < holds.length; k++) {
      if (holds[k]!.acquiredAt < holds[k - 1]!.releaseStart) violations.push(`node ${holds[k]!.id} was granted ${holds[k - 1]!.releaseStart - holds[k]!.acquiredAt} ms before node ${holds[k - 1]!.id} released`);
    }
    assert.deepEqual(violations, [], 'never two holders at once');
    const results = await Promise.all(waiters.map((w) => w.done));
    results.forEach((r, k) => {
      assert.equal(r.code, 0, `contender at node ${IDS[k]} exits 0: ${r.stderr}`);
      assert.match(r.stdout, /^[1-9]\d*\n$/, `contender at node ${IDS[k]} prints one token`);
    });
    assert.deepEqual(new Set(holds.map((h) => h.id)), new Set(IDS), 'every contender was granted exactly once');
    for (const h of holds) record(key, h.token);
    const handoffs = holds.slice(1).map((h, k) => h.acquiredAt - holds[k]!.releaseEnd);
    t.diagnostic(
      `contended: grant order ${holds.map((h) => `${h.id}:${h.token}`).join(' ')}; first grant ${holds[0]!.acquiredAt - Math.min(...waiters.map((w) => w.spawnedAt))} ms after the first spawn; ` +
        `hand-over after each release ${handoffs.join(', ')} ms`,
    );
    for (const [k, ms] of handoffs.entries()) assert.ok(ms <= HANDOFF_WITHIN_MS, `hand-over #${k + 1} took ${ms} ms (bound ${HANDOFF_WITHIN_MS})`);
  });

  await t.test('release: a wrong token exits 1; releasing twice, the second exits 1', async () => {
    const key = 'release';
    const token = tokenOf(await c.lock('4', ['acquire', key, '--ttl', '10000']), 'acquire at node 4');
    record(key, token);
    const [wrongHere, wrongThere] = await Promise.all([c.lock('4', ['release', key, String(token + 1n)]), c.lock('2', ['release', key, String(token + 1000n)])]);
    assertOneLine(wrongHere, 1, [`'${key}'`, String(token + 1n), 'not held'], 'release with a wrong token at the holder node');
    assertOneLine(wrongThere, 1, [`'${key}'`, String(token + 1000n), 'not held'], 'release with a wrong token at another node');
    // Still held after the wrong-token releases: a try at node 3 is refused.
    assert.deepEqual(await clients.use('3', (cl) => cl.lockAcquire(key)), { acquired: false, token: 0n }, 'a try at node 3 after the wrong-token releases');
    assertReleased(await c.lock('4', ['release', key, String(token)]), 'release with the right token');
    const [again, againElsewhere] = await Promise.all([c.lock('4', ['release', key, String(token)]), c.lock('1', ['release', key, String(token)])]);
    assertOneLine(again, 1, [`'${key}'`, String(token), 'not held'], 'the second release at the holder node');
    assertOneLine(againElsewhere, 1, [`'${key}'`, String(token), 'not held'], 'a second release at another node');
    // Free again.
    const next = await clients.use('3', (cl) => cl.lockAcquire(key, { ttlMs: 10_000 }));
    assert.equal(next.acquired, true, 'a try at node 3 after the release');
    record(key, next.token);
    assert.equal(await clients.use('3', (cl) => cl.lockRelease(key, next.token)), true);
  });

  // Found by this test and fixed: the holder node answered a release from its own acquirer alone,
  // which did not know a release by token at another node had ended the lease at the grantors.
  await t.test('release by token at another node, then again at the holder node: the second exits 1', async () => {
    const key = 'release-elsewhere';
    const token = tokenOf(await c.lock('5', ['acquire', key, '--ttl', '10000']), 'acquire at node 5');
    record(key, token);
    assertReleased(await c.lock('1', ['release', key, String(token)]), 'release by token at node 1');
    // The lock is really free: a try at node 3 gets it.
    const next = await clients.use('3', (cl) => cl.lockAcquire(key, { ttlMs: 10_000 }));
    assert.equal(next.acquired, true, 'a try at node 3 after the release at node 1');
    record(key, next.token);
    try {
      // Node 5 must not report its lock, released at node 1 and now node 3's, as released a second time.
      const again = await c.lock('5', ['release', key, String(token)]);
      assertOneLine(again, 1, [`'${key}'`, String(token), 'not held'], 'a second release, at the holder node, of a lock released at another node');
      // Node 3's lock is untouched by it.
      assert.deepEqual(await clients.use('4', (cl) => cl.lockAcquire(key)), { acquired: false, token: 0n }, "node 3's lock still held");
    } finally {
      assert.equal(await clients.use('3', (cl) => cl.lockRelease(key, next.token)), true, "node 3's lock released");
    }
  });

  await t.test('bad input: exit 2 with one stderr line naming the problem; an unreachable node exits 1', async () => {
    const nobody = await freePort();
    const at = c.at('1');
    const key1025 = 'k'.repeat(1025);
    const keyUtf8 = 'é'.repeat(513); // 1,026 bytes
    const cases: { what: string; args: string[]; code: number; needles: string[] }[] = [
      { what: 'acquire: empty key', args: ['lock', 'acquire', '', ...at], code: 2, needles: ['empty'] },
      { what: 'release: empty key', args: ['lock', 'release', '', '5', ...at], code: 2, needles: ['empty'] },
      { what: 'acquire: key over 1 KiB', args: ['lock', 'acquire', key1025, ...at], code: 2, needles: ['1025', '1024'] },
      { what: 'acquire: key over 1 KiB in UTF-8 bytes', args: ['lock', 'acquire', keyUtf8, ...at], code: 2, needles: ['1026', '1024'] },
      { what: '--ttl 0', args: ['lock', 'acquire', 'k', '--ttl', '0', ...at], code: 2, needles: ['--ttl', "'0'"] },
      { what: '--ttl 700000', args: ['lock', 'acquire', 'k', '--ttl', '700000', ...at], code: 2, needles: ['--ttl', '700000', '600000'] },
      { what: '--wait -1', args: ['lock', 'acquire', 'k', '--wait', '-1', ...at], code: 2, needles: ['--wait'] },
      { what: '--wait=-1', args: ['lock', 'acquire', 'k', '--wait=-1', ...at], code: 2, needles: ['--wait', "'-1'"] },
      { what: '--wait abc', args: ['lock', 'acquire', 'k', '--wait', 'abc', ...at], code: 2, needles: ['--wait', "'abc'"] },
      { what: 'release: token not a number', args: ['lock', 'release', 'k', 'abc', ...at], code: 2, needles: ["'abc'", 'token'] },
      { what: 'release: token 0', args: ['lock', 'release', 'k', '0', ...at], code: 2, needles: ["'0'", 'token'] },
      { what: 'acquire: key missing', args: ['lock', 'acquire', ...at], code: 2, needles: ['acquire', 'key'] },
      { what: 'release: token missing', args: ['lock', 'release', 'k', ...at], code: 2, needles: ['release', 'two arguments'] },
      { what: 'unknown subcommand', args: ['lock', 'grab', 'k', ...at], code: 2, needles: ["'grab'"] },
      // Bad usage the CLI can see is found before any node is contacted.
      { what: 'empty key, unreachable node', args: ['lock', 'acquire', '', '--addr', `127.0.0.1:${nobody}`], code: 2, needles: ['empty'] },
      { what: 'acquire: unreachable node', args: ['lock', 'acquire', 'k', '--addr', `127.0.0.1:${nobody}`], code: 1, needles: [`127.0.0.1:${nobody}`] },
    ];
    const results = await mapLimit(cases, CLI_PARALLELISM, (cs) => grapevine(cs.args, CLI_TIMEOUT_MS));
    const failed: string[] = [];
    cases.forEach((cs, k) => {
      try {
        assertOneLine(results[k]!, cs.code, cs.needles, cs.what);
      } catch (err) {
        failed.push((err as Error).message.split('\n')[0]!);
      }
    });
    assert.deepEqual(failed, [], `${failed.length} of ${cases.length} cases wrong`);
    // The limit is inclusive: a key of exactly 1024 bytes (multi-byte characters) is a lock.
    const key1024 = `${'é'.repeat(511)}ab`;
    const token = tokenOf(await c.lock('2', ['acquire', key1024]), 'acquire with a 1024-byte key');
    assert.equal(await clients.use('2', (cl) => cl.lockRelease(key1024, token)), true, 'release with a 1024-byte key');
    // Nothing refused was taken: 'k' (every bad acquire named it) is free.
    const k = await clients.use('3', (cl) => cl.lockAcquire('k'));
    assert.equal(k.acquired, true, "'k' is free after the bad input");
    assert.equal(await clients.use('3', (cl) => cl.lockRelease('k', k.token)), true);
  });

  await t.test('the holder dies: a lock taken through the library at node 2, node 2 killed -9; node 4 gets it after the ttl; node 2 restarted issues a greater token', async () => {
    const key = 'holder-dies';
    const TTL = 2_000;
    const askedAt = Date.now();
    const got = await clients.use('2', (cl) => cl.lockAcquire(key, { ttlMs: TTL }));
    const gotAt = Date.now();
    assert.equal(got.acquired, true, 'acquired through the library at node 2');
    record(key, got.token);
    // While node 2 lives and holds it, node 4 cannot take it.
    assertOneLine(await c.lock('4', ['acquire', key]), 1, [`'${key}'`], 'acquire at node 4 while node 2 holds the lock');
    await c.kill9('2');
    const killedAt = Date.now();
    const waiter = background('4', 'waiter at node 4', ['acquire', key, '--wait', '8000'], 12_000);
    const grant = await waiter.granted;
    assert.equal((await waiter.done).code, 0);
    assert.ok(grant.at - askedAt >= TTL - 25, `node 4 was granted ${grant.at - askedAt} ms after node 2 asked: before the ${TTL} ms lease ended`);
    assert.ok(grant.at - gotAt <= TTL + HANDOFF_WITHIN_MS, `node 4 was granted ${grant.at - gotAt} ms after node 2 acquired (ttl ${TTL} + ${HANDOFF_WITHIN_MS} ms at most)`);
    assert.ok(grant.token > got.token, `node 4's token ${grant.token} > the dead holder's ${got.token}`);
    record(key, grant.token);
    t.diagnostic(`holder dies: node 2 killed -9 ${killedAt - gotAt} ms after it acquired (ttl ${TTL} ms); node 4 granted ${grant.at - gotAt} ms after node 2 acquired, ${grant.at - killedAt} ms after the kill`);
    assertReleased(await c.lock('4', ['release', key, String(grant.token)]), 'release at node 4');

    // Node 2 back with its data dir: its attempts and its grantor's tokens go on from where they were.
    const restartAt = Date.now();
    await c.start('2');
    const after = tokenOf(await c.lock('2', ['acquire', key, '--wait', '3000']), 'acquire at the restarted node 2');
    record(key, after);
    assertReleased(await c.lock('2', ['release', key, String(after)]), 'release at the restarted node 2');
    t.diagnostic(`holder dies: node 2 restarted and acquired again (token ${after}) ${Date.now() - restartAt} ms after its restart began`);
  });

  for (const [key, tokens] of issued) assertStrictlyIncreasing(tokens, `tokens of '${key}'`);
  t.diagnostic(`tokens issued: ${[...issued].map(([k, ts]) => `${k} [${ts.join(',')}]`).join('; ')}; total ${Date.now() - t0} ms`);
});
