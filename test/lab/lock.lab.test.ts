/**
 * Lab test of the distributed locks (DESIGN.md section 2 "Locks": a lock is
 * held on a majority of the cluster file's nodes, tokens strictly increase):
 * 5 real `grapevine node` processes, one per network namespace
 * (10.77.0.1-5) on one bridge, from one cluster file; the real
 * `grapevine lock` CLI run inside the namespaces. iptables in every host cuts
 * {1,2} from {3,4,5} (unicast and beacons alike):
 *   - the minority cannot acquire, neither the key used before nor a fresh
 *     one: `acquire --wait 3000` at node 1 exits 1 once its wait is over, a
 *     try (wait 0) at node 2 exits 1; one stderr line each;
 *   - the majority can: acquire at node 4 (a greater token), refused to a
 *     try at node 5 while held, released by token at node 5, acquired again
 *     at node 5 (held across the heal);
 *   - after the heal, a waiter at node 1 is granted only once node 5
 *     releases, then nodes 2 and 3 take it in turn: every token of the key,
 *     before, during and after the partition, strictly greater than the one
 *     before.
 * Measured figures go to stderr as `lock lab: ...` lines.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { GRAPEVINE_JS, waitUntil } from '../helpers/lab-cluster.js';
import { Lab, labTestOptions, requireLab } from '../helpers/lab.js';
import { writeClusterFile } from '../helpers/gossip.js';
import type { BinResult } from '../helpers/gossip.js';
import { assertOneLine, partition, partitionRulesOf } from '../helpers/kv.js';
import { assertReleased, assertStrictlyIncreasing, labRun, tokenOf } from '../helpers/lock.js';

const HOSTS = 5;
const PORT = 7800;
const MCAST = { group: '239.255.77.96', port: 7796 };
const CLI_TIMEOUT_MS = 20_000;
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const idOf = (host: number): string => String(host + 1);

function report(line: string): void {
  process.stderr.write(`lock lab: ${line}\n`);
}

test('lab: locks under a partition {1,2} | {3,4,5}: the minority cannot acquire, the majority can; after the heal tokens still strictly increase', labTestOptions({ timeout: 90_000 }), async (t) => {
  const started = performance.now();
  requireLab();
  const lab = await Lab.create({ hosts: HOSTS });
  // Registered at once: kills every process by PID and removes the namespaces, also on failure.
  t.after(() => lab.destroy());
  const file = writeClusterFile(join(lab.tmpDir, 'cluster.json'), {
    name: 'lock-lab',
    multicast: MCAST,
    nodes: range(HOSTS).map((i) => ({ id: idOf(i), host: lab.host(i).ip, port: PORT })),
  });
  const logs = new Map<number, string[]>();
  const startNode = async (i: number): Promise<ChildProcess> => {
    const dataDir = join(lab.tmpDir, `data-h${i}`);
    mkdirSync(dataDir, { recursive: true });
    const proc = lab.spawn(i, [process.execPath, GRAPEVINE_JS, 'node', '--cluster', file, '--id', idOf(i), '--data-dir', dataDir, '--mcast-interface', lab.host(i).ip, '--log-level', 'info']);
    const lines: string[] = [];
    logs.set(i, lines);
    createInterface({ input: proc.stderr!, crlfDelay: Infinity }).on('line', (l) => {
      lines.push(l);
      if (lines.length > 5_000) lines.splice(0, 1_000);
    });
    proc.stdout?.resume();
    await waitUntil(
      () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`node in host ${i} exited: ${lines.slice(-3).join(' | ')}`);
        return lines.some((l) => l.includes('"msg":"node up"'));
      },
      30_000,
      50,
      () => `no 'node up' from host ${i}: ${lines.slice(-3).join(' | ')}`,
    );
    return proc;
  };
  /** `grapevine lock ARGS --cluster FILE --id N` inside host i. */
  const lock = (i: number, args: readonly string[]): Promise<BinResult> => labRun(lab, i, GRAPEVINE_JS, ['lock', ...args, '--cluster', file, '--id', idOf(i)], CLI_TIMEOUT_MS);

  const t0 = Date.now();
  await Promise.all(range(HOSTS).map((i) => startNode(i)));
  report(`5 nodes up ${Date.now() - t0} ms after the first spawn (lab built ${Math.round(performance.now() - started)} ms after the start)`);

  const key = 'resource';
  const tokens: bigint[] = [];
  const record = (token: bigint) => {
    tokens.push(token);
    assertStrictlyIncreasing(tokens, `tokens of '${key}'`);
  };

  // ---- Before: the whole cluster; taken at node 3, released by token at node 1.
  const before = tokenOf(await lock(2, ['acquire', key, '--ttl', '5000']), 'acquire at node 3 before the partition');
  record(before);
  assertReleased(await lock(0, ['release', key, String(before)]), 'release by token at node 1 before the partition');

  // ---- Partition {1,2} | {3,4,5}.
  const cut = await partition(lab, [0, 1], [2, 3, 4]);
  const cutAt = Date.now();
  for (const i of range(HOSTS)) assert.equal((await partitionRulesOf(lab, i)).length, 2 * (i < 2 ? 3 : 2), `host ${i}: partition rules installed`);

  // The minority: node 1 waits 3 s for the key, node 2 tries a fresh key once; both exit 1.
  const WAIT_MS = 3_000;
  const [minorityWait, minorityTry] = await Promise.all([lock(0, ['acquire', key, '--ttl', '5000', '--wait', String(WAIT_MS)]), lock(1, ['acquire', 'fresh-key'])]);
  assertOneLine(minorityWait, 1, [`'${key}'`, `${WAIT_MS} ms`, 'not acquired'], 'acquire --wait at node 1 in the minority');
  assert.ok(minorityWait.durationMs >= WAIT_MS, `node 1 gave up after ${minorityWait.durationMs} ms, before its ${WAIT_MS} ms wait was over`);
  assert.ok(minorityWait.durationMs <= WAIT_MS + 6_000, `node 1 gave up ${minorityWait.durationMs} ms after it asked (wait ${WAIT_MS} ms)`);
  assertOneLine(minorityTry, 1, ["'fresh-key'", 'not acquired'], 'acquire (wait 0) of a fresh key at node 2 in the minority');
  report(`partition: the minority refused: node 1 (--wait ${WAIT_MS}) exited 1 after ${minorityWait.durationMs} ms, node 2 (wait 0, a fresh key) after ${minorityTry.durationMs} ms (process start included)`);

  // The majority: node 4 takes it; node 5 cannot while it is held; released by token at node 5; node 5 takes it.
  const onMajority = tokenOf(await lock(3, ['acquire', key, '--ttl', '8000']), 'acquire at node 4 in the majority');
  record(onMajority);
  assertOneLine(await lock(4, ['acquire', key]), 1, [`'${key}'`, 'not acquired'], 'acquire (wait 0) at node 5 while node 4 holds it');
  const rel = await lock(4, ['release', key, String(onMajority)]);
  assertReleased(rel, 'release by token at node 5 (3 of 5 grantors reachable)');
  const heldAcross = tokenOf(await lock(4, ['acquire', key, '--ttl', '15000']), 'acquire at node 5 in the majority');
  record(heldAcross);
  const heldAt = Date.now();
  report(`partition: the majority acquired (tokens ${onMajority}, ${heldAcross}); a release by token at node 5 took ${rel.durationMs} ms with 2 grantors unreachable`);

  // ---- Heal. Node 1 waits; granted only after node 5 releases.
  const partitionedMs = Date.now() - cutAt;
  await cut.heal();
  for (const i of range(HOSTS)) assert.deepEqual(await partitionRulesOf(lab, i), [], `host ${i}: partition rules removed`);
  const healAt = Date.now();
  const waiterStart = Date.now();
  const waiter = lock(0, ['acquire', key, '--ttl', '10000', '--wait', '15000']);
  let waiterDoneAt = 0;
  void waiter.then(() => (waiterDoneAt = Date.now()), () => undefined);
  // Give its proposals time to reach the grantors across the former cut, then release.
  await sleep(3_000);
  assert.equal(waiterDoneAt, 0, 'node 1 is not granted while node 5 holds the lock');
  const releaseStart = Date.now();
  assert.ok(releaseStart - heldAt < 13_000, "node 5's lease is still valid at its release");
  assertReleased(await lock(4, ['release', key, String(heldAcross)]), 'release at node 5 after the heal');
  const afterHeal = tokenOf(await waiter, 'node 1 waiting after the heal');
  assert.ok(waiterDoneAt >= releaseStart, `node 1 was granted ${releaseStart - waiterDoneAt} ms before node 5's release began`);
  record(afterHeal);
  report(`heal: partitioned for ${partitionedMs} ms; node 1's waiter (started ${waiterStart - healAt} ms after the heal) granted token ${afterHeal} ${waiterDoneAt - releaseStart} ms after node 5's release began (its exit included)`);

  // Nodes 2 and 3 in turn.
  assertReleased(await lock(1, ['release', key, String(afterHeal)]), 'release by token at node 2');
  const at2 = tokenOf(await lock(1, ['acquire', key, '--ttl', '5000', '--wait', '3000']), 'acquire at node 2 after the heal');
  record(at2);
  assertReleased(await lock(1, ['release', key, String(at2)]), 'release at node 2');
  const at3 = tokenOf(await lock(2, ['acquire', key, '--ttl', '5000', '--wait', '3000']), 'acquire at node 3 after the heal');
  record(at3);
  assertReleased(await lock(2, ['release', key, String(at3)]), 'release at node 3');
  // And the fresh key the minority could not take is a lock now.
  const fresh = tokenOf(await lock(1, ['acquire', 'fresh-key']), 'acquire of the fresh key at node 2 after the heal');
  assertReleased(await lock(1, ['release', 'fresh-key', String(fresh)]), 'release of the fresh key');

  assertStrictlyIncreasing(tokens, `tokens of '${key}' before, during and after the partition`);
  const errors = [...logs].flatMap(([i, lines]) => lines.filter((l) => /"level":(50|60)/.test(l)).map((l) => `node ${idOf(i)}: ${l}`));
  assert.deepEqual(errors, [], 'no error-level log lines');
  report(`tokens of '${key}': [${tokens.join(', ')}]; total ${Math.round((performance.now() - started) / 1000)} s`);
});
