// End-to-end gossip (seed 003, DESIGN.md sections 1-2) on 127.0.0.1: five
// real `grapevine node` processes from one cluster file whose `links` make a
// ring 1-2-3-4-5-1 (so a message needs two hops to reach the far side), and
// the real `gclient` / `grapevine gossip` binaries:
//   - submit prints an 11-character base62 id; get prints the text exactly;
//     list prints one line per message (newline as \n, backslash as \\);
//     watch prints "ID<TAB>TEXT" for every message stored after it started,
//     ends with 0 on SIGTERM, and with 1 and one stderr line if its node dies;
//   - every node ends up with every message, each once, with the right text;
//   - kill -9 and restart: the node's SQLite store still holds everything
//     (its 'gossip store open' line counts them before any peer is reached);
//   - a node that was down while 60 messages were submitted gets them all
//     by anti-entropy within a few seconds of coming back;
//   - 200 messages submitted at each of two nodes at once arrive everywhere
//     exactly once.
// Timed polls use the client library in-process (a probe costs ms, not a
// process start); the binaries are then asserted once per node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GrapevineClient } from '../../src/api/client.js';
import { freePort, GRAPEVINE, jsonLines, pollUntil, randomMcast, spawnNodeScript, tempDir } from '../helpers/proc.js';
import type { Proc } from '../helpers/proc.js';
import { GCLIENT, gclient, grapevine, holdingProblems, listAll, listLine, listOutputProblems, writeClusterFile } from '../helpers/gossip.js';
import { mapLimit } from '../helpers/lab-sh.js';

const IDS = ['1', '2', '3', '4', '5'];
const LINKS: [string, string][] = [['1', '2'], ['2', '3'], ['3', '4'], ['4', '5'], ['5', '1']];
const PROPAGATE_WITHIN_MS = 3_000;
const CATCH_UP_WITHIN_MS = 5_000;
const CLI_PARALLELISM = 2;

/** One in-process client per node, reconnected after any failure (nodes restart). */
class Clients {
  private readonly clients = new Map<string, GrapevineClient>();
  constructor(private readonly ports: ReadonlyMap<string, number>) {}

  async get(id: string): Promise<GrapevineClient> {
    let c = this.clients.get(id);
    if (!c) {
      c = await GrapevineClient.connect('127.0.0.1', this.ports.get(id)!, { timeoutMs: 3_000 });
      this.clients.set(id, c);
    }
    return c;
  }

  async use<T>(id: string, fn: (c: GrapevineClient) => Promise<T>): Promise<T> {
    const c = await this.get(id);
    try {
      return await fn(c);
    } catch (err) {
      this.drop(id);
      throw err;
    }
  }

  drop(id: string): void {
    this.clients.get(id)?.close();
    this.clients.delete(id);
  }

  closeAll(): void {
    for (const id of [...this.clients.keys()]) this.drop(id);
  }
}

test('gossip on 5 nodes with a static ring: gclient and grapevine gossip submit/get/list/watch, restart, catch-up, concurrency', async (t) => {
  const dir = tempDir(t, 'grapevine-gossip-e2e-');
  const mc = randomMcast();
  const ports = new Map<string, number>();
  for (const id of IDS) ports.set(id, await freePort());
  const file = writeClusterFile(join(dir, 'cluster.json'), {
    name: 'gossip-e2e',
    multicast: { group: mc.group, port: mc.port, interface: '127.0.0.1', ttl: 0 },
    nodes: IDS.map((id) => ({ id, host: '127.0.0.1', port: ports.get(id)! })),
    links: LINKS,
  });
  const at = (id: string) => ['--cluster', file, '--id', id];
  const clients = new Clients(ports);
  t.after(() => clients.closeAll());

  const nodes = new Map<string, Proc>();
  const start = async (id: string): Promise<Proc> => {
    const p = spawnNodeScript(t, `node ${id}`, GRAPEVINE, ['node', ...at(id), '--data-dir', join(dir, `data-${id}`), '--log-level', 'info']);
    await p.waitForLine('stderr', (l) => l.includes('"msg":"node up"'), 10_000, '"node up"');
    nodes.set(id, p);
    return p;
  };
  const kill9 = async (id: string): Promise<void> => {
    clients.drop(id);
    const e = await nodes.get(id)!.kill9();
    assert.equal(e.signal, 'SIGKILL');
    nodes.delete(id);
  };

  /** id -> text of every message submitted so far. */
  const expected = new Map<string, string>();
  /** Polls the nodes until each holds exactly `expected`, each once. */
  const converge = (what: string, ids: readonly string[], timeoutMs: number, since = Date.now()) =>
    pollUntil(
      what,
      async () => {
        const problems: Record<string, string[]> = {};
        await Promise.all(
          ids.map(async (id) => {
            const p = holdingProblems(await clients.use(id, listAll), expected);
            if (p.length > 0) problems[id] = p;
          }),
        );
        return { ok: Object.keys(problems).length === 0, detail: problems };
      },
      { timeoutMs, since, intervalMs: 20 },
    );
  /** `gclient --list` on every node, exactly the expected lines, each once. */
  const assertListsWithCli = async (ids: readonly string[], what: string) => {
    const results = await mapLimit(ids, CLI_PARALLELISM, (id) => gclient([...at(id), '--list'], 15_000));
    ids.forEach((id, k) => {
      const r = results[k]!;
      assert.equal(r.code, 0, `gclient --list at ${id} ${what}: ${r.stderr}`);
      assert.equal(r.stderr, '', `gclient --list at ${id} ${what}: nothing on stderr`);
      assert.deepEqual(listOutputProblems(r.stdout, expected), [], `gclient --list at ${id} ${what}`);
    });
  };

  // ---- 1. Five nodes; every static link connected.
  const t0 = Date.now();
  await Promise.all(IDS.map((id) => start(id)));
  const linked = await pollUntil(
    'every static link connected',
    async () => {
      const ss = await Promise.all(IDS.map((id) => clients.use(id, (c) => c.status())));
      const wrong = ss.flatMap((s) => {
        const want = LINKS.flatMap(([a, b]) => (a === s.id ? [b] : b === s.id ? [a] : [])).sort();
        return JSON.stringify([...s.links].sort()) === JSON.stringify(want) && JSON.stringify([...s.linksConnected].sort()) === JSON.stringify(want)
          ? []
          : [`${s.id}: links ${s.links} connected ${s.linksConnected} (want ${want})`];
      });
      return { ok: wrong.length === 0, detail: wrong };
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
  t.diagnostic(`5 nodes up and linked ${Date.now() - t0} ms after the first spawn (links ${linked.elapsedMs} ms after the last 'node up')`);

  // ---- 2. Watchers: gclient --watch at node 2 and grapevine gossip watch at node 5.
  const watchers = [
    { at: '2', proc: spawnNodeScript(t, 'gclient --watch', GCLIENT, [...at('2'), '--watch']) },
    { at: '5', proc: spawnNodeScript(t, 'grapevine gossip watch', GRAPEVINE, ['gossip', 'watch', ...at('5')]) },
  ];
  // A watcher prints only what is stored after it subscribed: submit probes until each has printed one.
  for (const w of watchers) {
    await pollUntil(
      `watcher at ${w.at} subscribed`,
      async () => {
        const text = `probe for the watcher at ${w.at} #${expected.size}`;
        const id = await clients.use(w.at, (c) => c.submit(text));
        expected.set(id, text);
        const seen = await w.proc.waitForLine('stdout', (l) => l.startsWith(`${id}\t`), 500).then(
          () => true,
          () => false,
        );
        return { ok: seen, detail: w.proc.stderr.slice(-3) };
      },
      { timeoutMs: 10_000, intervalMs: 0 },
    );
  }

  // ---- 3. Submit through both binaries at three nodes.
  const tricky = 'first line\nsecond line with a \\ backslash, a \\n that is not a newline, a\ttab and grüße ✓';
  const submissions = [
    { at: '1', text: 'Apple', run: () => gclient([...at('1'), '--message', 'Apple']) },
    { at: '3', text: 'Banana split', run: () => grapevine(['gossip', 'submit', 'Banana split', ...at('3')]) },
    { at: '4', text: tricky, run: () => gclient([...at('4'), '--message', tricky]) },
    { at: '2', text: '-starts with a dash', run: () => gclient([...at('2'), '--message=-starts with a dash']) },
  ];
  const submitted: { id: string; text: string; at: string; doneAt: number }[] = [];
  for (const s of submissions) {
    const r = await s.run();
    assert.equal(r.code, 0, `submit at ${s.at}: ${r.stderr}`);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^[0-9A-Za-z]{11}\n$/, `submit prints one base62 id: ${JSON.stringify(r.stdout)}`);
    const id = r.stdout.trim();
    assert.ok(!expected.has(id), 'ids are distinct');
    expected.set(id, s.text);
    submitted.push({ id, text: s.text, at: s.at, doneAt: Date.now() });
  }
  const spread = await converge('every message on every node', IDS, PROPAGATE_WITHIN_MS, submitted[submitted.length - 1]!.doneAt);
  t.diagnostic(`all ${expected.size} messages on all 5 nodes ${spread.elapsedMs} ms after the last submit returned`);

  // ---- 4. get: the exact text (plus one newline), from the far side of the ring.
  const apple = submitted[0]!;
  const trickyMsg = submitted[2]!;
  for (const [where, id, text, run] of [
    ['4', apple.id, 'Apple', () => gclient([...at('4'), '--msgID', apple.id])],
    ['3', apple.id, 'Apple', () => grapevine(['gossip', 'get', apple.id, ...at('3')])],
    ['1', trickyMsg.id, tricky, () => gclient([...at('1'), '--msgID', trickyMsg.id])],
    ['2', trickyMsg.id, tricky, () => grapevine(['gossip', 'get', trickyMsg.id, ...at('2')])],
  ] as const) {
    const r = await run();
    assert.equal(r.code, 0, `get ${id} at ${where}: ${r.stderr}`);
    assert.equal(r.stdout, `${text}\n`, `get ${id} at ${where} prints the text exactly`);
    assert.equal(r.stderr, '');
  }

  // ---- 5. list: gclient on every node, grapevine gossip list on one; the tricky one escaped on one line.
  await assertListsWithCli(IDS, 'after the first submissions');
  const viaGossip = await grapevine(['gossip', 'list', ...at('5')]);
  assert.equal(viaGossip.code, 0, viaGossip.stderr);
  assert.deepEqual(listOutputProblems(viaGossip.stdout, expected), []);
  assert.ok(viaGossip.stdout.split('\n').includes(listLine(tricky)));
  assert.ok(
    viaGossip.stdout.includes('first line\\nsecond line with a \\\\ backslash, a \\\\n that is not a newline, a\ttab and grüße ✓\n'),
    `the newline and backslashes are escaped: ${JSON.stringify(viaGossip.stdout)}`,
  );

  // ---- 6. The watchers printed every message stored after they started, once each, escaped; SIGTERM ends them with 0.
  for (const w of watchers) {
    for (const s of submitted) await w.proc.waitForLine('stdout', (l) => l.startsWith(`${s.id}\t`), 3_000, `${s.id} at the watcher at ${w.at}`);
    for (const s of submitted) {
      const lines = w.proc.stdout.filter((l) => l.startsWith(`${s.id}\t`));
      assert.deepEqual(lines, [`${s.id}\t${listLine(s.text)}`], `watcher at ${w.at}: ${s.id} once, escaped`);
    }
    // Nothing else: every line is one stored message (a probe or a submission), none twice.
    const ids = w.proc.stdout.map((l) => l.split('\t')[0]!);
    assert.equal(new Set(ids).size, ids.length, `watcher at ${w.at}: no message printed twice`);
    for (const l of w.proc.stdout) {
      const id = l.split('\t')[0]!;
      assert.equal(l, `${id}\t${listLine(expected.get(id) ?? '?')}`, `watcher at ${w.at}: a line of a submitted message`);
    }
    const e = await w.proc.stop('SIGTERM', 3_000);
    assert.deepEqual(e, { code: 0, signal: null }, `watcher at ${w.at} exits 0 on SIGTERM`);
    assert.deepEqual(w.proc.stderr, [], `watcher at ${w.at}: nothing on stderr`);
  }

  // ---- 7. kill -9 and restart: the store on disk still holds every message.
  //      A watcher of the killed node ends with exit 1 and one line (it does not hang or die silently).
  const orphan = spawnNodeScript(t, 'gclient --watch (node 2 dies)', GCLIENT, [...at('2'), '--watch']);
  await pollUntil(
    'the watcher of node 2 subscribed',
    async () => {
      const text = `probe for the watcher that loses node 2 #${expected.size}`;
      const id = await clients.use('2', (c) => c.submit(text));
      expected.set(id, text);
      return { ok: await orphan.waitForLine('stdout', (l) => l.startsWith(`${id}\t`), 500).then(() => true, () => false), detail: null };
    },
    { timeoutMs: 10_000, intervalMs: 0 },
  );
  await converge('the probes everywhere', IDS, PROPAGATE_WITHIN_MS);
  await kill9('2');
  const orphanExit = await Promise.race([orphan.exited, sleep(3_000).then(() => undefined)]);
  assert.deepEqual(orphanExit, { code: 1, signal: null }, 'gclient --watch exits 1 when its node goes away');
  assert.equal(orphan.stderr.length, 1, `one stderr line: ${orphan.stderr.join(' | ')}`);
  assert.match(orphan.stderr[0]!, /^gclient: node 2 closed the connection/);
  const restarted = await start('2');
  const opened = jsonLines(restarted.stderr).filter((r) => r.msg === 'gossip store open');
  assert.equal(opened.length, 1);
  assert.equal(opened[0]!.messages, expected.size, `node 2 reopened its store with all ${expected.size} messages (before any peer was reached)`);
  const after = await gclient([...at('2'), '--list']);
  assert.deepEqual(listOutputProblems(after.stdout, expected), [], 'gclient --list right after the restart');
  assert.equal((await gclient([...at('2'), '--msgID', trickyMsg.id])).stdout, `${tricky}\n`);

  // ---- 8. Node 4 down while 60 messages are submitted at nodes 1 and 2; back up, it catches up by anti-entropy.
  await kill9('4');
  const others = IDS.filter((id) => id !== '4');
  await Promise.all(
    ['1', '2'].map((origin) =>
      clients.use(origin, async (c) => {
        for (let i = 0; i < 30; i++) {
          const text = `while 4 was down: ${origin}.${i}`;
          expected.set(await c.submit(text), text);
        }
      }),
    ),
  );
  await converge('the 4 live nodes have the new messages', others, PROPAGATE_WITHIN_MS);
  await sleep(500); // let 4's neighbours notice it is gone (their redial backoff grows meanwhile)
  const restartAt = Date.now();
  const four = await start('4');
  const fourUp = Number(jsonLines(four.stderr).find((r) => r.msg === 'node up')!.time);
  const caughtUp = await converge('node 4 caught up', ['4'], CATCH_UP_WITHIN_MS, fourUp);
  t.diagnostic(`node 4 (down for 60 messages) held all ${expected.size} ${caughtUp.elapsedMs} ms after its 'node up' (${Date.now() - restartAt} ms after the restart began)`);
  await converge('everyone still exact', IDS, 2_000);

  // ---- 9. 200 messages at node 1 and 200 at node 3, at the same time: everywhere, exactly once.
  const burstAt = Date.now();
  const burst = await Promise.all(
    ['1', '3'].map((origin) =>
      clients.use(origin, (c) =>
        Promise.all(
          Array.from({ length: 200 }, async (_, i) => {
            const text = `concurrent ${origin}/${i}`;
            return [await c.submit(text), text] as const;
          }),
        ),
      ),
    ),
  );
  const acked = Date.now();
  for (const [id, text] of burst.flat()) {
    assert.ok(!expected.has(id), `id ${id} is new`);
    expected.set(id, text);
  }
  const everywhere = await converge('400 concurrent messages everywhere', IDS, PROPAGATE_WITHIN_MS + 2_000, acked);
  t.diagnostic(`400 concurrent submits acknowledged in ${acked - burstAt} ms; on all 5 nodes ${everywhere.elapsedMs} ms later (${expected.size} messages in all)`);
  await assertListsWithCli(IDS, 'after the concurrent burst');

  for (const id of IDS) assert.ok(nodes.get(id)!.running, `node ${id} still running`);
  const errors = IDS.flatMap((id) => jsonLines(nodes.get(id)!.stderr).filter((r) => typeof r.level === 'number' && r.level >= 50));
  assert.deepEqual(errors, [], 'no error-level log lines');
});
