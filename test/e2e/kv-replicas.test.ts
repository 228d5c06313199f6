// End-to-end partitioned cache (`"replicas": 2` in the cluster file; DESIGN.md
// section 2, seed 002's DHT) on 127.0.0.1: five real `grapevine node`
// processes, driven with the real `grapevine kv` binary and the client library:
//   - 200 keys written at every node (10 with `grapevine kv put`, the rest
//     through the client library) are readable at every node (a non-owner
//     asks an owner), and `grapevine kv list` at each node lists exactly the
//     keys it owns by the placement (consistent hashing, R=2): the union is
//     the 200 keys, each on exactly 2 nodes;
//   - kill -9 of one node: once the others declare it dead, its keys are
//     copied to their new owners (co-owner sync), every key is readable at
//     every live node and on exactly 2 of them; writes go on meanwhile;
//   - its restart: the keys move back (it gets what changed while it was
//     away, the temporary owners hand their buckets over and drop them):
//     exactly 2 copies of each key again, on the owners of the 5-node placement.
// Each step's time is logged as a diagnostic.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { hashString32 } from '../../src/core/kv/entry.js';
import { Placement } from '../../src/core/kv/placement.js';
import { KV_REPLICA_DEFAULTS } from '../../src/core/kv/replica.js';
import { jsonLines, pollUntil } from '../helpers/proc.js';
import { grapevine } from '../helpers/gossip.js';
import { loopbackCluster } from '../helpers/loopback-cluster.js';
import type { LoopbackCluster } from '../helpers/loopback-cluster.js';
import { mapLimit } from '../helpers/lab-sh.js';
import { kvListOutput } from '../helpers/kv.js';

const IDS = ['1', '2', '3', '4', '5'];
const REPLICAS = 2;
const KEYS = 200;
/** Of which written with `grapevine kv put` (a process each). */
const CLI_PUTS = 10;
const VICTIM = '3';
/** A node process per CLI call: two at a time is what 2 cores take. */
const CLI_PARALLELISM = 2;
const CLI_TIMEOUT_MS = 15_000;
/** Membership declares a silent member dead after 1.6 s (plus a heartbeat or two). */
const DEAD_WITHIN_MS = 6_000;
/** After the death: new owners copy the keys at once (the placement change starts a sync round); a sync interval (5 s) is the slack. */
const RECOPY_WITHIN_MS = 12_000;
/** After the restart: the node hears the others, they hand its buckets back (a round to push, the next one, 5 s later, confirms and drops). */
const MOVE_BACK_WITHIN_MS = 20_000;

const bucketOf = (key: string): number => hashString32(key) % KV_REPLICA_DEFAULTS.bucketCount;

function startCluster(t: TestContext): Promise<LoopbackCluster> {
  return loopbackCluster(t, { ids: IDS, name: 'kv-replicas-e2e', extra: { replicas: REPLICAS } });
}

test('cache with "replicas": 2 on 5 nodes: each key on exactly its 2 owners, readable everywhere; kill -9 and restart move keys and keep 2 copies', async (t) => {
  const c = await startCluster(t);
  const { clients, at } = c;
  /** What the cluster must hold: key -> value. */
  const model = new Map<string, string>();

  /** Which keys each of `members` must hold: those of the buckets it owns among `members`. */
  const expectedHoldings = (members: readonly string[]): Map<string, Set<string>> => {
    const placement = new Placement(members, REPLICAS, KV_REPLICA_DEFAULTS.bucketCount);
    const out = new Map(members.map((id) => [id, new Set<string>()]));
    for (const key of model.keys()) for (const owner of placement.ownersOf(bucketOf(key))) out.get(owner)!.add(key);
    return out;
  };
  /** Problems with what each live node lists: every key on exactly its owners, with the model's value. */
  const holdingProblems = async (members: readonly string[]): Promise<string[]> => {
    const snaps = await clients.snapshots(members);
    const want = expectedHoldings(members);
    const problems: string[] = [];
    const copies = new Map<string, number>();
    for (const id of members) {
      const got = snaps.get(id)!;
      const mine = want.get(id)!;
      const missing = [...mine].filter((k) => got.get(k) !== model.get(k));
      const extra = [...got.keys()].filter((k) => !mine.has(k));
      if (missing.length > 0) problems.push(`${id} lacks (or has another value of) ${missing.length} of its ${mine.size} keys, e.g. ${missing.slice(0, 3).join(',')}`);
      if (extra.length > 0) problems.push(`${id} holds ${extra.length} keys it does not own, e.g. ${extra.slice(0, 3).join(',')}`);
      for (const k of got.keys()) copies.set(k, (copies.get(k) ?? 0) + 1);
    }
    const wrongCount = [...model.keys()].filter((k) => copies.get(k) !== REPLICAS);
    if (wrongCount.length > 0) problems.push(`${wrongCount.length} keys not on exactly ${REPLICAS} nodes, e.g. ${wrongCount.slice(0, 3).map((k) => `${k}x${copies.get(k) ?? 0}`).join(',')}`);
    const unknown = [...copies.keys()].filter((k) => !model.has(k));
    if (unknown.length > 0) problems.push(`${unknown.length} keys nobody wrote: ${unknown.slice(0, 3).join(',')}`);
    return problems;
  };
  /** Problems with reading every key at each of `members` (non-owners ask an owner). */
  const readProblems = async (members: readonly string[]): Promise<string[]> => {
    const keys = [...model.keys()];
    const per = await Promise.all(members.map((id) => clients.use(id, (cl) => Promise.all(keys.map((k) => cl.kvGet(k))))));
    return members.flatMap((id, i) => {
      const wrong = keys.filter((k, j) => (per[i]![j] === undefined ? undefined : Buffer.from(per[i]![j]!).toString('utf8')) !== model.get(k));
      return wrong.length === 0 ? [] : [`${id} reads ${wrong.length} keys wrong, e.g. ${wrong.slice(0, 3).join(',')}`];
    });
  };
  const poll = (what: string, probe: () => Promise<string[]>, timeoutMs: number, since = Date.now()) =>
    pollUntil(what, async () => {
      const problems = await probe();
      return { ok: problems.length === 0, detail: problems };
    }, { timeoutMs, since, intervalMs: 100 });
  /** Each node's latest placement (its 'cache placement changed' log line) counts `n` members. */
  const placedOn = (ids: readonly string[], n: number) =>
    poll(`placement over ${n} members on ${ids.join(',')}`, async () =>
      ids.flatMap((id) => {
        const last = jsonLines(c.nodes.get(id)!.stderr).filter((r) => r.msg === 'cache placement changed').at(-1);
        return last?.members === n ? [] : [`${id}: ${last?.members ?? 'no'} members`];
      }), 10_000);
  /** `grapevine kv list` at each node prints exactly the keys it owns, with their values. */
  const assertListsWithCli = async (members: readonly string[], what: string) => {
    const want = expectedHoldings(members);
    const results = await mapLimit(members, CLI_PARALLELISM, (id) => grapevine(['kv', 'list', ...at(id)], CLI_TIMEOUT_MS));
    let total = 0;
    members.forEach((id, k) => {
      const r = results[k]!;
      assert.equal(r.code, 0, `kv list at ${id} ${what}: ${r.stderr}`);
      assert.equal(r.stderr, '', `kv list at ${id} ${what}: nothing on stderr`);
      const mine = new Map([...want.get(id)!].map((key) => [key, model.get(key)!]));
      assert.equal(r.stdout, kvListOutput(mine), `kv list at ${id} ${what}: exactly its ${mine.size} keys`);
      total += mine.size;
    });
    assert.equal(total, REPLICAS * model.size, `${what}: ${REPLICAS} copies of each of the ${model.size} keys in all lists`);
    return members.map((id) => want.get(id)!.size);
  };
  const key = (i: number) => `rk:${String(i).padStart(3, '0')}`;

  // ---- Five nodes that see each other.
  const t0 = Date.now();
  await Promise.all(IDS.map((id) => c.start(id)));
  const placed = await placedOn(IDS, 5);
  t.diagnostic(`5 nodes up ${Date.now() - t0} ms after the first spawn; every node placed keys over 5 members ${placed.elapsedMs} ms after the last 'node up'`);

  await t.test('200 keys written at every node: readable everywhere, each on exactly its 2 owners', async () => {
    const started = Date.now();
    // 10 with the binary (at each node in turn), 190 through the client library.
    await mapLimit(Array.from({ length: CLI_PUTS }, (_, i) => i), CLI_PARALLELISM, async (i) => {
      const r = await grapevine(['kv', 'put', key(i), `cli value ${i}`, ...at(IDS[i % IDS.length]!)], CLI_TIMEOUT_MS);
      assert.equal(r.code, 0, `kv put ${key(i)}: ${r.stderr}`);
      assert.deepEqual([r.stdout, r.stderr], ['', ''], 'kv put prints nothing');
      model.set(key(i), `cli value ${i}`);
    });
    const cliDone = Date.now();
    await Promise.all(IDS.map((id, n) => clients.use(id, (cl) => Promise.all(
      Array.from({ length: KEYS - CLI_PUTS }, (_, j) => CLI_PUTS + j).filter((i) => i % IDS.length === n).map(async (i) => {
        assert.equal(await cl.kvPut(key(i), `value ${i} from node ${id}`), true);
        model.set(key(i), `value ${i} from node ${id}`);
      }),
    ))));
    const acked = Date.now();
    t.diagnostic(`${CLI_PUTS} puts with 'grapevine kv put' in ${cliDone - started} ms; ${KEYS - CLI_PUTS} through the client library in ${acked - cliDone} ms`);
    // Writes go straight to both owners: nothing to wait for.
    const held = await poll('each key on exactly its 2 owners', () => holdingProblems(IDS), 3_000, acked);
    const read = await poll('every key readable at every node', () => readProblems(IDS), 3_000);
    t.diagnostic(`every key on exactly its 2 owners ${held.elapsedMs} ms after the last put was acknowledged; all 1000 reads (5 nodes x 200 keys) right ${read.elapsedMs} ms later`);
    const counts = await assertListsWithCli(IDS, 'after the puts');
    t.diagnostic(`'grapevine kv list' per node: ${IDS.map((id, i) => `node ${id} ${counts[i]}`).join(', ')} keys (${counts.reduce((a, b) => a + b, 0)} = 2 x ${model.size})`);
    // A non-owner's `kv get` asks an owner.
    const placement = new Placement(IDS, REPLICAS, KV_REPLICA_DEFAULTS.bucketCount);
    const probes = [0, 1, 2, 3].map((i) => key(i * 37));
    const gets = await mapLimit(probes, CLI_PARALLELISM, (k) => {
      const nonOwner = IDS.find((id) => !placement.isOwner(bucketOf(k), id))!;
      return grapevine(['kv', 'get', k, ...at(nonOwner)], CLI_TIMEOUT_MS);
    });
    probes.forEach((k, i) => {
      assert.equal(gets[i]!.code, 0, `kv get ${k} at a non-owner: ${gets[i]!.stderr}`);
      assert.equal(gets[i]!.stdout, `${model.get(k)}\n`);
    });
  });

  await t.test(`kill -9 of node ${VICTIM}: declared dead, its keys copied to new owners, 2 copies on the live nodes, readable everywhere`, async () => {
    const live = IDS.filter((id) => id !== VICTIM);
    const before = expectedHoldings(IDS);
    const killedAt = Date.now();
    await c.kill9(VICTIM);
    const dead = await poll(`node ${VICTIM} declared dead by every other node`, async () => {
      const ss = await Promise.all(live.map((id) => clients.use(id, (cl) => cl.status())));
      return ss.flatMap((s) => (s.members.find((m) => m.id === VICTIM)?.state ?? 'dead') === 'dead' ? [] : [`${s.id} sees ${VICTIM} ${s.members.find((m) => m.id === VICTIM)?.state}`]);
    }, DEAD_WITHIN_MS, killedAt);
    const declaredAt = Date.now();
    const recopied = await poll('each key on exactly 2 live nodes', () => holdingProblems(live), RECOPY_WITHIN_MS, declaredAt);
    const read = await poll('every key readable at every live node', () => readProblems(live), 3_000);
    const moved = [...before.get(VICTIM)!].length;
    t.diagnostic(`node ${VICTIM} (owner of ${moved} keys) declared dead by all 4 others ${dead.elapsedMs} ms after kill -9; every key on exactly 2 live nodes ${recopied.elapsedMs} ms after that; all reads right ${read.elapsedMs} ms later`);
    // Writes go on while it is away: new keys and overwrites, some of them its.
    const writtenAt = Date.now();
    await Promise.all(live.map((id, n) => clients.use(id, (cl) => Promise.all(
      Array.from({ length: 80 }, (_, i) => i).filter((i) => i % live.length === n).map(async (i) => {
        const k = i < 40 ? key(i * 5) : key(KEYS + i);
        const v = `while ${VICTIM} was down: ${i} at ${id}`;
        assert.equal(await cl.kvPut(k, v), true);
        model.set(k, v);
      }),
    ))));
    const held = await poll('the new writes on exactly 2 live nodes', () => holdingProblems(live), 3_000);
    t.diagnostic(`80 writes (40 overwrites, 40 new keys) at the 4 live nodes in ${Date.now() - writtenAt - held.elapsedMs} ms; on exactly their 2 live owners ${held.elapsedMs} ms later`);
    await assertListsWithCli(live, `with node ${VICTIM} down`);
  });

  await t.test(`restart of node ${VICTIM}: the keys move back, exactly 2 copies each on the owners over 5 nodes`, async () => {
    const restartAt = Date.now();
    const p = await c.start(VICTIM);
    const upAt = Number(jsonLines(p.stderr).find((r) => r.msg === 'node up')!.time);
    const opened = jsonLines(p.stderr).find((r) => r.msg === 'cache store open');
    const placed5 = await placedOn(IDS, 5);
    const back = await poll('each key on exactly its 2 owners again', () => holdingProblems(IDS), MOVE_BACK_WITHIN_MS, upAt);
    const read = await poll('every key readable at every node', () => readProblems(IDS), 3_000);
    t.diagnostic(
      `node ${VICTIM} up ${upAt - restartAt} ms after the restart began, with ${String(opened?.keys)} keys in its store; every node placed over 5 members ${placed5.elapsedMs} ms later; ` +
      `every key on exactly its 2 owners (node ${VICTIM} holding its ${expectedHoldings(IDS).get(VICTIM)!.size}, the others having dropped what they handed over) ${back.elapsedMs} ms after its 'node up'; all reads right ${read.elapsedMs} ms later`,
    );
    const counts = await assertListsWithCli(IDS, 'after the restart');
    t.diagnostic(`'grapevine kv list' per node: ${IDS.map((id, i) => `node ${id} ${counts[i]}`).join(', ')} keys (= 2 x ${model.size})`);
  });

  for (const id of IDS) assert.ok(c.nodes.get(id)!.running, `node ${id} still running`);
  const errors = IDS.flatMap((id) => jsonLines(c.nodes.get(id)!.stderr).filter((rec) => typeof rec.level === 'number' && rec.level >= 50));
  assert.deepEqual(errors, [], 'no error-level log lines');
});
