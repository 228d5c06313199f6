// End-to-end replicated cache (seeds 000/002; DESIGN.md sections 1-2) on
// 127.0.0.1: five real `grapevine node` processes from one cluster file whose
// `links` make a ring 1-2-3-4-5-1 (a write needs two hops to reach the far
// side), driven with the real `grapevine kv` binary and the client library:
//   - put at one node, `kv get` on every node prints it (time measured);
//     `kv list` prints exactly "KEY<TAB>VALUE" lines in bytewise key order,
//     a backslash, newline and tab escaped as \\, \n, \t; `list --match`
//     globs; `kv del` prints how many keys existed, and the deleted keys are
//     then absent everywhere (`kv get` exits 1 with one stderr line);
//     `--ttl` makes a value vanish on every node after the ttl, not before;
//   - two nodes writing the same 200 keys at the same moment, three rounds:
//     every node converges on one value per key, the same everywhere, and it
//     is one of the last round's two writes;
//   - a node's acknowledged writes are in its SQLite file when it is killed
//     -9 right after the acknowledgement, and it serves them after a restart;
//   - a node killed -9 while puts, overwrites and deletes happen elsewhere
//     catches up (anti-entropy on link up) within a few seconds of restarting.
// Timed polls use the client library in-process (a probe costs ms, not a
// process start); the binary is asserted at the end of each step.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { LogBlobReader } from '../../src/store/kv-log-codec.js';
import { jsonLines, pollUntil } from '../helpers/proc.js';
import { grapevine } from '../helpers/gossip.js';
import { loopbackCluster } from '../helpers/loopback-cluster.js';
import type { LoopbackCluster } from '../helpers/loopback-cluster.js';
import { mapLimit } from '../helpers/lab-sh.js';
import { assertOneLine, kvDiff, kvDisagreement, kvListOutput, kvSnapshot } from '../helpers/kv.js';
import type { KvContents } from '../helpers/kv.js';

const IDS = ['1', '2', '3', '4', '5'];
const LINKS: [string, string][] = [['1', '2'], ['2', '3'], ['3', '4'], ['4', '5'], ['5', '1']];
const PROPAGATE_WITHIN_MS = 3_000;
const CATCH_UP_WITHIN_MS = 5_000;
const TTL_MS = 2_500;
/** A node process per CLI call: two at a time is what 2 cores take. */
const CLI_PARALLELISM = 2;
const CLI_TIMEOUT_MS = 15_000;

function startCluster(t: TestContext): Promise<LoopbackCluster> {
  return loopbackCluster(t, { ids: IDS, name: 'kv-e2e', extra: { links: LINKS } });
}

test('cache on 5 nodes with a static ring: kv put/get/list/del/--ttl, concurrent writers, kill -9, restart and catch-up', async (t) => {
  const c = await startCluster(t);
  const { clients, at } = c;

  /** What every node must hold: key -> value. */
  const model: KvContents = new Map();

  /** Polls `ids` until each lists exactly `model`; elapsed ms from `since`. */
  const converge = (what: string, ids: readonly string[], timeoutMs: number, since = Date.now()) =>
    pollUntil(
      what,
      async () => {
        const snaps = await clients.snapshots(ids);
        const problems = ids.flatMap((id) => kvDiff(snaps.get(id)!, model).map((p) => `${id}: ${p}`));
        return { ok: problems.length === 0, detail: problems };
      },
      { timeoutMs, since, intervalMs: 20 },
    );
  /** `grapevine kv list` on each node prints exactly `model`. */
  const assertListsWithCli = async (ids: readonly string[], what: string) => {
    const want = kvListOutput(model);
    const results = await mapLimit(ids, CLI_PARALLELISM, (id) => grapevine(['kv', 'list', ...at(id)], CLI_TIMEOUT_MS));
    ids.forEach((id, k) => {
      const r = results[k]!;
      assert.equal(r.code, 0, `kv list at ${id} ${what}: ${r.stderr}`);
      assert.equal(r.stderr, '', `kv list at ${id} ${what}: nothing on stderr`);
      assert.equal(r.stdout, want, `kv list at ${id} ${what}`);
    });
  };
  /** `grapevine kv put` at a node: exit 0, silent; returns when it returned. */
  const cliPut = async (id: string, key: string, value: string, extra: string[] = []) => {
    const r = await grapevine(['kv', 'put', key, value, ...at(id), ...extra], CLI_TIMEOUT_MS);
    assert.equal(r.code, 0, `kv put ${key} at ${id}: ${r.stderr}`);
    assert.equal(r.stdout, '', 'kv put prints nothing');
    assert.equal(r.stderr, '');
    if (extra.length === 0) model.set(key, value);
    return Date.now();
  };

  // ---- Five nodes; every static link connected.
  const t0 = Date.now();
  await Promise.all(IDS.map((id) => c.start(id)));
  const linked = await pollUntil(
    'every static link connected',
    async () => {
      const ss = await Promise.all(IDS.map((id) => clients.use(id, (cl) => cl.status())));
      const wrong = ss.flatMap((s) => (s.linksConnected.length === 2 ? [] : [`${s.id}: connected ${s.linksConnected}`]));
      return { ok: wrong.length === 0, detail: wrong };
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
  t.diagnostic(`5 nodes up and linked ${Date.now() - t0} ms after the first spawn (links ${linked.elapsedMs} ms after the last 'node up')`);

  await t.test('put at one node; get on every node; list format and escapes; --match; del', async () => {
    // put at node 1, get on every node (the far side is two hops away).
    const putDone = await cliPut('1', 'greeting', 'hello, world');
    const spread = await pollUntil(
      'greeting on every node',
      async () => {
        const vs = await Promise.all(IDS.map((id) => clients.use(id, (cl) => cl.kvGet('greeting'))));
        const lacking = IDS.filter((_, k) => vs[k] === undefined || Buffer.from(vs[k]!).toString('utf8') !== 'hello, world');
        return { ok: lacking.length === 0, detail: lacking };
      },
      { timeoutMs: PROPAGATE_WITHIN_MS, since: putDone, intervalMs: 5 },
    );
    t.diagnostic(`a put at node 1 was readable on all 5 nodes ${spread.elapsedMs} ms after 'grapevine kv put' returned`);
    const gets = await mapLimit(IDS, CLI_PARALLELISM, (id) => grapevine(['kv', 'get', 'greeting', ...at(id)], CLI_TIMEOUT_MS));
    IDS.forEach((id, k) => {
      assert.equal(gets[k]!.code, 0, `kv get at ${id}: ${gets[k]!.stderr}`);
      assert.equal(gets[k]!.stdout, 'hello, world\n', `kv get at ${id} prints the value and one newline`);
      assert.equal(gets[k]!.stderr, '');
    });

    // Keys and values with a backslash, newline and tab; UTF-8; an empty value; a value starting with a dash.
    const trickyKey = 'tricky\tkey with \\ and\nnewline';
    const trickyValue = 'line one\nline two\twith tab, a \\ backslash, a literal \\n, grüße ✓';
    await cliPut('3', trickyKey, trickyValue);
    await cliPut('4', 'café:ß', 'unicode key');
    await cliPut('2', 'empty-value', '');
    const r = await grapevine(['kv', 'put', ...at('5'), '--', 'dash', '-starts with a dash']);
    assert.equal(r.code, 0, `put of a value starting with '-' after '--': ${r.stderr}`);
    model.set('dash', '-starts with a dash');
    for (const [id, k] of [['1', 'user:1'], ['2', 'user:2'], ['3', 'user:10'], ['4', 'users'], ['5', 'xuser:3']] as const) await cliPut(id, k, `value of ${k}`);
    // An overwrite at another node.
    await cliPut('4', 'greeting', 'hello again');
    const all = await converge('every key on every node', IDS, PROPAGATE_WITHIN_MS);
    t.diagnostic(`${model.size} keys identical on all 5 nodes ${all.elapsedMs} ms after the last put returned`);

    // get prints the exact value (newlines and all), plus one newline.
    const tg = await grapevine(['kv', 'get', trickyKey, ...at('1')]);
    assert.equal(tg.code, 0, tg.stderr);
    assert.equal(tg.stdout, `${trickyValue}\n`);
    const eg = await grapevine(['kv', 'get', 'empty-value', ...at('5')]);
    assert.equal(eg.code, 0, eg.stderr);
    assert.equal(eg.stdout, '\n', 'an empty value prints an empty line');
    assert.equal((await grapevine(['kv', 'get', 'greeting', ...at('1')])).stdout, 'hello again\n', 'the overwrite reached node 1');

    // list: exactly the model, sorted, escaped, one line per key.
    await assertListsWithCli(['5', '2'], 'after the puts');
    const list = await grapevine(['kv', 'list', ...at('3')]);
    assert.ok(
      list.stdout.split('\n').includes('tricky\\tkey with \\\\ and\\nnewline\tline one\\nline two\\twith tab, a \\\\ backslash, a literal \\\\n, grüße ✓'),
      `the tricky pair is one escaped line: ${JSON.stringify(list.stdout)}`,
    );
    assert.equal(list.stdout.split('\n').length, model.size + 1, 'one line per key');

    // --match: a Redis glob over keys.
    const users = await grapevine(['kv', 'list', '--match', 'user:*', ...at('2')]);
    assert.equal(users.code, 0, users.stderr);
    assert.equal(users.stdout, 'user:1\tvalue of user:1\nuser:10\tvalue of user:10\nuser:2\tvalue of user:2\n');
    const one = await grapevine(['kv', 'list', '--match', 'user:?', ...at('4')]);
    assert.equal(one.stdout, 'user:1\tvalue of user:1\nuser:2\tvalue of user:2\n');
    const none = await grapevine(['kv', 'list', '--match', 'nothing*', ...at('4')]);
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, '', ''], 'no match: exit 0, no output');

    // del: prints how many existed; gone everywhere; get then exits 1 with one line.
    const del = await grapevine(['kv', 'del', 'greeting', 'user:1', 'no-such-key', ...at('2')]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, '2\n', 'two of the three keys existed');
    model.delete('greeting');
    model.delete('user:1');
    const delDone = Date.now();
    const gone = await converge('the deleted keys absent everywhere', IDS, PROPAGATE_WITHIN_MS, delDone);
    t.diagnostic(`a delete at node 2 was seen on all 5 nodes ${gone.elapsedMs} ms after 'grapevine kv del' returned`);
    const absent = await mapLimit(['4', '5'], CLI_PARALLELISM, (id) => grapevine(['kv', 'get', 'greeting', ...at(id)]));
    for (const a of absent) assertOneLine(a, 1, ["'greeting'"], 'kv get of a deleted key');
    const again = await grapevine(['kv', 'del', 'greeting', ...at('3')]);
    assert.deepEqual([again.code, again.stdout], [0, '0\n'], 'deleting an absent key: 0 existed');
    await assertListsWithCli(['1'], 'after the delete');
  });

  await t.test('--ttl: the value vanishes on every node after the ttl, not before', async () => {
    const putStart = Date.now();
    const acked = await cliPut('2', 'session', 'token-1', ['--ttl', String(TTL_MS)]);
    // Present on every node before the ttl runs out.
    const present = await pollUntil(
      'session on every node',
      async () => {
        const vs = await Promise.all(IDS.map((id) => clients.use(id, (cl) => cl.kvGet('session'))));
        return { ok: vs.every((v) => v !== undefined && Buffer.from(v).toString('utf8') === 'token-1'), detail: vs.map((v) => v !== undefined) };
      },
      { timeoutMs: Math.max(500, putStart + TTL_MS - 500 - Date.now()), intervalMs: 10 },
    );
    t.diagnostic(`the ttl value was on all 5 nodes ${Date.now() - acked} ms after the put returned (poll took ${present.elapsedMs} ms)`);
    // Absent on every node at the latest 1 s after the ttl; never absent before it.
    const vanishedAt = new Map<string, number>();
    await pollUntil(
      'session gone everywhere',
      async () => {
        await Promise.all(
          IDS.filter((id) => !vanishedAt.has(id)).map(async (id) => {
            const v = await clients.use(id, (cl) => cl.kvGet('session'));
            const answeredAt = Date.now();
            if (v === undefined) {
              assert.ok(answeredAt >= putStart + TTL_MS, `node ${id} lost the value ${answeredAt - putStart} ms after the put began (ttl ${TTL_MS} ms)`);
              vanishedAt.set(id, answeredAt);
            }
          }),
        );
        return { ok: vanishedAt.size === IDS.length, detail: [...vanishedAt.keys()] };
      },
      { timeoutMs: TTL_MS + 1_000, since: acked, intervalMs: 10 },
    );
    const late = [...vanishedAt.values()].map((ms) => ms - putStart - TTL_MS);
    t.diagnostic(`the ttl value vanished on all 5 nodes ${Math.min(...late)}-${Math.max(...late)} ms after put start + ttl`);
    const g = await grapevine(['kv', 'get', 'session', ...at('5')]);
    assertOneLine(g, 1, ["'session'"], 'kv get of an expired key');
    await assertListsWithCli(['3'], 'after the expiry');
  });

  await t.test('two nodes write the same 200 keys at the same moment: one value per key, the same everywhere', async () => {
    const KEYS = 200;
    const ROUNDS = 3;
    const writers = ['2', '4'];
    const key = (i: number) => `race:${String(i).padStart(3, '0')}`;
    const started = Date.now();
    for (let round = 1; round <= ROUNDS; round++) {
      // Both writers start together; each sends all its puts at once.
      await Promise.all(writers.map((w) => clients.use(w, (cl) => Promise.all(Array.from({ length: KEYS }, (_, i) => cl.kvPut(key(i), `round ${round} by ${w}`))))));
      // Every stamp of the next round is at a later wall millisecond than every stamp of this one.
      await sleep(3);
    }
    const acked = Date.now();
    const agreed = await pollUntil(
      'all 5 nodes hold the same contents',
      async () => {
        const snaps = await clients.snapshots(IDS);
        const problems = kvDisagreement(snaps);
        return { ok: problems.length === 0, detail: { problems, snaps: snaps.get('1')! } };
      },
      { timeoutMs: PROPAGATE_WITHIN_MS + 2_000, since: acked, intervalMs: 20 },
    );
    const final = agreed.detail.snaps;
    const wins = new Map(writers.map((w) => [w, 0]));
    for (let i = 0; i < KEYS; i++) {
      const v = final.get(key(i));
      assert.ok(v !== undefined, `${key(i)} is held`);
      const w = writers.find((x) => v === `round ${ROUNDS} by ${x}`);
      assert.ok(w !== undefined, `${key(i)} holds one of the last round's writes, not ${JSON.stringify(v)}`);
      wins.set(w, wins.get(w)! + 1);
      model.set(key(i), v);
    }
    assert.deepEqual(kvDiff(final, model), [], 'nothing else changed');
    // The list is paged under the hood: pages of 7 give the same, each key once, in order.
    assert.deepEqual(kvDiff(await clients.use('3', (cl) => kvSnapshot(cl, undefined, 7)), model), [], 'kvList in pages of 7');
    t.diagnostic(
      `${ROUNDS} rounds x ${KEYS} keys x 2 writers (${ROUNDS * KEYS * 2} puts) acknowledged in ${acked - started} ms; identical on all 5 nodes ${agreed.elapsedMs} ms later; last-round winners: ${[...wins].map(([w, n]) => `node ${w} ${n}`).join(', ')}`,
    );
    await assertListsWithCli(IDS, 'after the concurrent writes');
  });

  await t.test("a node's acknowledged writes survive its kill -9; a node down during puts and deletes catches up", async () => {
    // (a) 100 puts and one delete at node 5, all acknowledged; kill -9 at once.
    const durable = Array.from({ length: 100 }, (_, i) => [`durable:${String(i).padStart(3, '0')}`, `kept ${i} ✓`] as const);
    await clients.use('5', (cl) => Promise.all([...durable.map(([k, v]) => cl.kvPut(k, v)), cl.kvDel('user:2')]));
    await c.kill9('5');
    for (const [k, v] of durable) model.set(k, v);
    model.delete('user:2');
    // Its own SQLite file holds every acknowledged write (nothing but the disk survived the kill).
    const db = new Database(join(c.dir, 'data-5', 'cache.db'), { readonly: true, fileMustExist: true });
    try {
      // The store is a log of commits: a key's current version is its last record.
      const last = new Map<string, { value: Uint8Array | undefined; node: string }>();
      for (const blob of db.prepare('SELECT records FROM commits ORDER BY seq').pluck().iterate() as IterableIterator<Buffer>) {
        const r = new LogBlobReader(blob);
        while (r.next()) last.set(r.key, { value: r.value(), node: r.node });
      }
      for (const [k, v] of durable) {
        const got = last.get(k);
        assert.ok(got?.value, `${k} is in node 5's cache.db after kill -9`);
        assert.equal(Buffer.from(got.value).toString('utf8'), v);
        assert.equal(got.node, '5', `${k} was written by node 5`);
      }
      const tomb = last.get('user:2');
      assert.ok(tomb, 'the delete is in cache.db');
      assert.equal(tomb.value, undefined, 'the delete is a tombstone');
      assert.equal(tomb.node, '5', 'the delete was written by node 5');
    } finally {
      db.close();
    }
    const five = await c.start('5');
    const opened = jsonLines(five.stderr).filter((rec) => rec.msg === 'cache store open');
    assert.equal(opened.length, 1);
    assert.ok(Number(opened[0]!.values) >= model.size, `node 5 reopened its store with ${opened[0]!.values} values (at least the ${model.size} live ones)`);
    const back = await grapevine(['kv', 'get', durable[99]![0], ...at('5')]);
    assert.equal(back.stdout, `${durable[99]![1]}\n`, 'node 5 serves its own write after the restart');
    await converge('all 5 after node 5 restarted', IDS, CATCH_UP_WITHIN_MS);

    // (b) node 3 down while the others put, overwrite and delete.
    await c.kill9('3');
    const others = IDS.filter((id) => id !== '3');
    await clients.use('1', async (cl) => {
      for (let i = 0; i < 60; i++) {
        await cl.kvPut(`while-3-down:${i}`, `new ${i}`);
        model.set(`while-3-down:${i}`, `new ${i}`);
      }
    });
    await clients.use('4', async (cl) => {
      for (let i = 0; i < 20; i++) {
        await cl.kvPut(durable[i]![0], `overwritten ${i}`);
        model.set(durable[i]![0], `overwritten ${i}`);
      }
      const doomed = [...durable.slice(20, 40).map(([k]) => k), 'users', 'tricky\tkey with \\ and\nnewline'];
      assert.equal(await cl.kvDel(...doomed), doomed.length, 'every doomed key existed');
      for (const k of doomed) model.delete(k);
    });
    await converge('the 4 live nodes', others, PROPAGATE_WITHIN_MS);
    await sleep(500); // let 3's neighbours notice it is gone (their redial backoff grows meanwhile)
    const restartAt = Date.now();
    const three = await c.start('3');
    const threeUp = Number(jsonLines(three.stderr).find((rec) => rec.msg === 'node up')!.time);
    const caughtUp = await converge('node 3 caught up', ['3'], CATCH_UP_WITHIN_MS, threeUp);
    t.diagnostic(`node 3 (down for 60 puts, 20 overwrites, 22 deletes) held exactly the ${model.size} keys ${caughtUp.elapsedMs} ms after its 'node up' (${Date.now() - restartAt} ms after the restart began)`);
    await converge('everyone exact', IDS, 2_000);
    const deleted = await grapevine(['kv', 'get', durable[25]![0], ...at('3')]);
    assertOneLine(deleted, 1, [`'${durable[25]![0]}'`], 'a key deleted while node 3 was down');
    await assertListsWithCli(['3', '5'], 'after the catch-up');
  });

  for (const id of IDS) assert.ok(c.nodes.get(id)!.running, `node ${id} still running`);
  const errors = IDS.flatMap((id) => jsonLines(c.nodes.get(id)!.stderr).filter((rec) => typeof rec.level === 'number' && rec.level >= 50));
  assert.deepEqual(errors, [], 'no error-level log lines');
});
