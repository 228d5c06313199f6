/**
 * Issue 3's lab test of gossip (seed 003; DESIGN.md sections 1-2, 4): 16 real
 * `grapevine node` processes, one per network namespace (10.77.0.1-16) on one
 * bridge, driven with the real `gclient` run inside the namespaces.
 *
 *   (a) Static overlay: a cluster file whose `links` are a ring plus the
 *       opposite chord (i, i+8), so every node has exactly 3 neighbours;
 *       nodes started with --cluster FILE --id N.
 *   (b) Dynamic overlay: the same 16 nodes started with --host/--port/--id
 *       only (a cluster file without links serves gclient's --id); every node
 *       has exactly 3 overlay links (ring + a seeded matching, 16 is even)
 *       and they are the links src/core/overlay.ts computes from the members.
 *
 * In both: messages submitted with `gclient --message` at 4 nodes appear in
 * `gclient --list` on all 16; `gclient --msgID` on the node farthest (in hops
 * of the link graph) from each submitter prints the text. Then kill -9 of two
 * nodes, 3 more messages submitted at other nodes, and a restart of the two
 * with their data dirs: within 10 s of the restart all 16 hold every message,
 * none twice (then asserted once more with `gclient --list` on every node).
 *
 * Timed polls use the in-process client through lab.forward (a relay inside
 * each host: a query costs ms, where a gclient process costs ~0.3 s of CPU on
 * this 2-core machine); the real gclient is asserted once per node after each
 * convergence. Measured figures go to stderr as `gossip lab: ...` lines.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { GrapevineClient } from '../../src/api/client.js';
import type { StatusReport } from '../../src/api/client.js';
import { diameter, dynamicOverlay } from '../../src/core/overlay.js';
import { GRAPEVINE_JS, waitUntil } from '../helpers/lab-cluster.js';
import { mapLimit } from '../helpers/lab-sh.js';
import { Lab, labTestOptions, requireLab } from '../helpers/lab.js';
import type { ExitInfo, Forward } from '../helpers/lab.js';
import { GCLIENT, holdingProblems, hopsFrom, listAll, listOutputProblems, percentile, writeClusterFile } from '../helpers/gossip.js';

const HOSTS = 16;
const PORT = 7500;
const MCAST = { group: '239.255.77.93', port: 7793 };
const RESTART_BOUND_MS = 10_000;
const POLL_MS = 20;
const CLIENT_TIMEOUT_MS = 2_000;
/** A gclient process per call: two at a time is what 2 cores take. */
const CLI_PARALLELISM = 2;
const CLI_TIMEOUT_MS = 15_000;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const idOf = (host: number): string => String(host + 1);
const hostOf = (id: string): number => Number(id) - 1;

function report(line: string): void {
  process.stderr.write(`gossip lab: ${line}\n`);
}

/** Ring 1-2-...-16-1 plus the opposite chords (i, i+8): 3-regular, connected. */
function staticLinks(): [string, string][] {
  const links: [string, string][] = [];
  for (let i = 0; i < HOSTS; i++) links.push([idOf(i), idOf((i + 1) % HOSTS)]);
  for (let i = 0; i < HOSTS / 2; i++) links.push([idOf(i), idOf(i + HOSTS / 2)]);
  return links;
}

interface Running {
  readonly proc: ChildProcess;
  readonly stderrLines: string[];
  readonly exited: Promise<ExitInfo>;
  /** `time` of its 'node up' log line (epoch ms). */
  upAtMs: number;
}

/** The cluster under test: nodes, their data dirs, one in-process client per host through its relay. */
class GossipCluster {
  readonly running = new Map<number, Running>();
  readonly forwards = new Map<number, Forward>();
  private readonly clients = new Map<number, GrapevineClient>();
  /** id -> text of every message submitted. */
  readonly expected = new Map<string, string>();

  constructor(
    readonly lab: Lab,
    readonly file: string,
    /** argv after `grapevine node` for host i. */
    private readonly nodeArgs: (i: number, dataDir: string) => string[],
  ) {}

  dataDir(i: number): string {
    return join(this.lab.tmpDir, `data-h${i}`);
  }

  async openForwards(): Promise<void> {
    // One relay process per host, started before the nodes so they do not compete with them.
    await mapLimit(range(HOSTS), 4, async (i) => this.forwards.set(i, await this.lab.forward(i, PORT)));
  }

  start(i: number): void {
    const dataDir = this.dataDir(i);
    mkdirSync(dataDir, { recursive: true });
    const proc = this.lab.spawn(i, [process.execPath, GRAPEVINE_JS, 'node', ...this.nodeArgs(i, dataDir), '--log-level', 'info']);
    const stderrLines: string[] = [];
    createInterface({ input: proc.stderr!, crlfDelay: Infinity }).on('line', (l) => {
      stderrLines.push(l);
      if (stderrLines.length > 5_000) stderrLines.splice(0, 1_000);
    });
    proc.stdout?.resume();
    const exited = new Promise<ExitInfo>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.running.set(i, { proc, stderrLines, exited, upAtMs: NaN });
  }

  /** Waits for host i's 'node up' line; returns its time (epoch ms). */
  async up(i: number, timeoutMs = 30_000): Promise<number> {
    const r = this.running.get(i)!;
    let at = NaN;
    await waitUntil(
      () => {
        if (r.proc.exitCode !== null || r.proc.signalCode !== null) throw new Error(`node in host ${i} exited: ${r.stderrLines.slice(-3).join(' | ')}`);
        const line = r.stderrLines.find((l) => l.includes('"msg":"node up"'));
        if (line) at = Number((JSON.parse(line) as { time: number }).time);
        return line !== undefined;
      },
      timeoutMs,
      50,
      () => `no 'node up' from host ${i}: ${r.stderrLines.slice(-3).join(' | ')}`,
    );
    r.upAtMs = at;
    return at;
  }

  async kill9(i: number): Promise<void> {
    const r = this.running.get(i)!;
    this.drop(i);
    this.running.delete(i);
    assert.deepEqual(await this.lab.kill9(r.proc), { code: null, signal: 'SIGKILL' });
  }

  async client<T>(i: number, fn: (c: GrapevineClient) => Promise<T>): Promise<T> {
    let c = this.clients.get(i);
    if (!c) {
      const fwd = this.forwards.get(i)!;
      c = await GrapevineClient.connect(fwd.host, fwd.port, { timeoutMs: CLIENT_TIMEOUT_MS });
      this.clients.set(i, c);
    }
    try {
      return await fn(c);
    } catch (err) {
      this.drop(i);
      throw err;
    }
  }

  status(i: number): Promise<StatusReport> {
    return this.client(i, (c) => c.status());
  }

  drop(i: number): void {
    this.clients.get(i)?.close();
    this.clients.delete(i);
  }

  closeClients(): void {
    for (const i of [...this.clients.keys()]) this.drop(i);
  }

  /** Polls until every host in `hosts` lists the nodes of `dead` as dead; ms from `since`. */
  async deadEverywhere(hosts: readonly number[], dead: readonly number[], since: number, timeoutMs: number): Promise<number> {
    let wrong: string[] = [];
    await waitUntil(
      async () => {
        const ss = await Promise.all(hosts.map((i) => this.status(i)));
        wrong = ss.flatMap((st) => dead.flatMap((d) => {
          const m = st.members.find((x) => x.id === idOf(d));
          return m?.state === 'dead' ? [] : [`${st.id} sees ${idOf(d)} ${m?.state ?? 'missing'}`];
        }));
        return wrong.length === 0;
      },
      timeoutMs,
      POLL_MS * 5,
      () => wrong.slice(0, 6).join(' || '),
    );
    return Date.now() - since;
  }

  /** The real gclient, inside host i, against node i (resolved through the cluster file). */
  gclient(i: number, args: readonly string[]): Promise<string> {
    return this.lab.exec(i, [process.execPath, GCLIENT, '--cluster', this.file, '--id', idOf(i), ...args], { timeoutMs: CLI_TIMEOUT_MS });
  }

  /** Submits with gclient at host i; records the message; returns its id and when gclient returned. */
  async submit(i: number, text: string): Promise<{ id: string; doneAtMs: number }> {
    const out = await this.gclient(i, ['--message', text]);
    assert.match(out, /^[0-9A-Za-z]{11}\n$/, `gclient --message prints one id: ${JSON.stringify(out)}`);
    const id = out.trim();
    assert.ok(!this.expected.has(id), `id ${id} is new`);
    this.expected.set(id, text);
    return { id, doneAtMs: Date.now() };
  }

  /** Polls until every host in `hosts` holds message `id`; ms from `since`. */
  async spread(id: string, hosts: readonly number[], since: number, timeoutMs: number): Promise<number> {
    let lacking: number[] = [];
    await waitUntil(
      async () => {
        const have = await Promise.all(hosts.map((i) => this.client(i, (c) => c.get(id)).catch(() => undefined)));
        lacking = hosts.filter((_, k) => have[k] === undefined);
        return lacking.length === 0;
      },
      timeoutMs,
      POLL_MS,
      () => `${id} still missing on hosts ${lacking.join(',')}`,
    );
    return Date.now() - since;
  }

  /** Polls until every host in `hosts` holds exactly the expected messages, each once; resolves with the time of that round. */
  async converge(hosts: readonly number[], timeoutMs: number, what: string): Promise<number> {
    let problems: string[] = [];
    await waitUntil(
      async () => {
        const lists = await Promise.all(hosts.map((i) => this.client(i, listAll)));
        problems = hosts.flatMap((i, k) => holdingProblems(lists[k]!, this.expected).map((p) => `host ${i}: ${p}`));
        return problems.length === 0;
      },
      timeoutMs,
      POLL_MS,
      () => `${what}: ${problems.slice(0, 6).join(' || ') || 'list queries kept failing'}`,
    );
    return Date.now();
  }

  /** `gclient --list` once on every host: exactly the expected lines, each once. */
  async assertListsWithCli(what: string): Promise<void> {
    const outs = await mapLimit(range(HOSTS), CLI_PARALLELISM, (i) => this.gclient(i, ['--list']));
    const problems = outs.flatMap((out, i) => listOutputProblems(out, this.expected).map((p) => `host ${i}: ${p}`));
    assert.deepEqual(problems, [], `gclient --list on every node ${what}`);
  }

  /** Each host's overlay links (status.links), once all are connected and `check` finds nothing wrong. */
  async linksConnected(timeoutMs: number, check: (links: Map<string, string[]>) => string[], hosts: readonly number[] = range(HOSTS)): Promise<Map<string, string[]>> {
    let links = new Map<string, string[]>();
    let problems: string[] = [];
    await waitUntil(
      async () => {
        const ss = await Promise.all(hosts.map((i) => this.status(i)));
        links = new Map(ss.map((s) => [s.id, [...s.links].sort()]));
        problems = ss.flatMap((s) => (JSON.stringify([...s.linksConnected].sort()) === JSON.stringify([...s.links].sort()) ? [] : [`${s.id}: links ${s.links} connected ${s.linksConnected}`]));
        problems.push(...check(links));
        return problems.length === 0;
      },
      timeoutMs,
      POLL_MS * 5,
      () => problems.slice(0, 6).join(' || '),
    );
    return links;
  }

  errorLines(): string[] {
    return [...this.running.values()].flatMap((r) => r.stderrLines.filter((l) => /"level":(50|60)/.test(l)));
  }
}

/** The links of a map id -> neighbour ids, each once. */
function edgesOf(adj: ReadonlyMap<string, readonly string[]>): [string, string][] {
  const out: [string, string][] = [];
  for (const [a, ns] of adj) for (const b of ns) if (a < b) out.push([a, b]);
  return out;
}

/** Problems of an adjacency: asymmetric links, or a degree other than 3. */
function degree3(adj: ReadonlyMap<string, readonly string[]>): string[] {
  const out: string[] = [];
  for (const [a, ns] of adj) {
    if (ns.length !== 3) out.push(`${a} has ${ns.length} links [${ns.join(',')}]`);
    for (const b of ns) if (!adj.get(b)?.includes(a)) out.push(`${a}-${b} is not symmetric`);
  }
  return out;
}

/**
 * The scenario both overlays go through; `links` gives the link graph once
 * every node is up and connected (and asserts its shape).
 */
async function scenario(
  t: TestContext,
  cluster: GossipCluster,
  label: string,
  links: () => Promise<[string, string][]>,
  /** Once the two killed nodes are dead everywhere: what the 14 live hosts' overlay must be. */
  whileDown: (live: readonly number[]) => Promise<void>,
): Promise<void> {
  const all = range(HOSTS);
  const t0 = Date.now();
  for (const i of all) cluster.start(i);
  const ups = await Promise.all(all.map((i) => cluster.up(i)));
  const lastUp = Math.max(...ups);
  const graph = await links();
  report(`${label}: 16 nodes up ${lastUp - t0} ms after the first spawn; every link connected ${Date.now() - lastUp} ms after the last 'node up'`);

  // ---- Messages with gclient at 4 nodes; each reaches all 16.
  const submitters = [0, 5, 10, 15];
  const spreadMs: number[] = [];
  const firsts: { id: string; text: string; at: number }[] = [];
  for (const i of submitters) {
    const text = `${label}: hello from node ${idOf(i)} (${i})`;
    const { id, doneAtMs } = await cluster.submit(i, text);
    spreadMs.push(await cluster.spread(id, all, doneAtMs, 5_000));
    firsts.push({ id, text, at: i });
  }
  await cluster.converge(all, 5_000, 'all 16 hold the first messages');
  report(`${label}: from gclient --message returning until all 16 hold the message: ${spreadMs.map((ms) => `${ms} ms`).join(', ')} (polled every ${POLL_MS} ms)`);
  await cluster.assertListsWithCli('after the first messages');

  // ---- gclient --msgID on the node farthest from each submitter.
  const far: string[] = [];
  for (const m of firsts) {
    const hops = hopsFrom(idOf(m.at), graph);
    assert.equal(hops.size, HOSTS, 'the link graph is connected');
    const max = Math.max(...hops.values());
    const farthest = hostOf([...hops].find(([, d]) => d === max)![0]);
    far.push(`${idOf(m.at)}->${idOf(farthest)} (${max} hops)`);
    assert.equal(await cluster.gclient(farthest, ['--msgID', m.id]), `${m.text}\n`, `gclient --msgID ${m.id} on node ${idOf(farthest)}, ${max} hops from ${idOf(m.at)}`);
  }
  report(`${label}: gclient --msgID on the farthest node: ${far.join(', ')}`);

  // ---- kill -9 two nodes; once every other node has declared them dead
  //      (and the overlay has settled without them), submit more at other nodes.
  const victims = [3, 11]; // nodes 4 and 12
  await Promise.all(victims.map((i) => cluster.kill9(i)));
  const killedAt = Date.now();
  const live = all.filter((i) => !victims.includes(i));
  const deadMs = await cluster.deadEverywhere(live, victims, killedAt, 10_000);
  await whileDown(live);
  report(`${label}: kill -9 of nodes 4 and 12: dead everywhere after ${deadMs} ms, overlay settled after ${Date.now() - killedAt} ms`);
  const laterSubmitters = [2, 7, 12]; // nodes 3 and 13 are neighbours of the victims in the ring
  const duringMs: number[] = [];
  for (const i of laterSubmitters) {
    const { id, doneAtMs } = await cluster.submit(i, `${label}: while 4 and 12 were down, from node ${idOf(i)}`);
    duringMs.push(await cluster.spread(id, live, doneAtMs, 10_000));
  }
  await cluster.converge(live, 5_000, 'the 14 live nodes hold everything');
  report(`${label}: with 2 nodes killed, messages reached the 14 others in ${duringMs.map((ms) => `${ms} ms`).join(', ')}`);

  // ---- Restart both with their data dirs: within 10 s all 16 hold everything, none twice.
  const downMs = Date.now() - killedAt;
  const restartAt = Date.now();
  for (const i of victims) cluster.start(i);
  const restartUps = await Promise.all(victims.map((i) => cluster.up(i, RESTART_BOUND_MS)));
  const doneAt = await cluster.converge(all, RESTART_BOUND_MS - (Date.now() - restartAt), 'all 16 after the restart');
  const restartMs = doneAt - restartAt;
  report(
    `${label}: nodes 4 and 12 down ${downMs} ms, restarted: 'node up' after ${restartUps.map((u) => u - restartAt).join('/')} ms; all 16 hold all ${cluster.expected.size} messages, none twice, ${restartMs} ms after the restart (${doneAt - Math.max(...restartUps)} ms after the last 'node up')`,
  );
  assert.ok(restartMs <= RESTART_BOUND_MS, `${restartMs} ms (bound ${RESTART_BOUND_MS} ms)`);
  await cluster.assertListsWithCli('after the restart');
  assert.deepEqual(cluster.errorLines(), [], 'no error-level log lines');
  t.diagnostic(`${label}: median spread ${percentile(spreadMs, 50)} ms; restart catch-up ${restartMs} ms`);
}

async function setUp(t: TestContext, label: string, nodeArgs: (lab: Lab, i: number, dataDir: string, file: string) => string[], links?: [string, string][]) {
  requireLab();
  const lab = await Lab.create({ hosts: HOSTS });
  // Registered at once: kills every node and relay by PID and removes the namespaces, also on failure.
  t.after(() => lab.destroy());
  const file = writeClusterFile(join(lab.tmpDir, 'cluster.json'), {
    name: `gossip-lab-${label}`,
    multicast: MCAST,
    nodes: range(HOSTS).map((i) => ({ id: idOf(i), host: lab.host(i).ip, port: PORT })),
    ...(links ? { links } : {}),
  });
  const cluster = new GossipCluster(lab, file, (i, dataDir) => nodeArgs(lab, i, dataDir, file));
  t.after(() => cluster.closeClients());
  await cluster.openForwards();
  return cluster;
}

test('lab: gossip over a static 3-regular overlay (cluster file links), 16 nodes, kill -9 and restart', labTestOptions({ timeout: 75_000 }), async (t) => {
  const started = performance.now();
  const links = staticLinks();
  const want = new Map<string, string[]>();
  for (const [a, b] of links) {
    want.set(a, [...(want.get(a) ?? []), b].sort());
    want.set(b, [...(want.get(b) ?? []), a].sort());
  }
  assert.deepEqual(degree3(want), [], 'the configured graph is 3-regular');
  const cluster = await setUp(
    t,
    'static',
    // Multicast interface explicit: the node's own lab address.
    (lab, i, dataDir, file) => ['--cluster', file, '--id', idOf(i), '--data-dir', dataDir, '--mcast-interface', lab.host(i).ip],
    links,
  );
  report(`static: configured graph ring + opposite chords, diameter ${diameter(new Map([...want].map(([k, v]) => [k, new Set(v)])))}`);
  await scenario(
    t,
    cluster,
    'static',
    async () => {
      // Each node has exactly its 3 configured links, all connected.
      await cluster.linksConnected(10_000, (got) => [...want].flatMap(([id, ns]) => (JSON.stringify(got.get(id)) === JSON.stringify(ns) ? [] : [`${id}: links ${got.get(id)} (want ${ns})`])));
      return links;
    },
    async (live) => {
      // Static links stay configured while their peer is down (redialled with backoff): still 3 links each, not all connected.
      const ss = await Promise.all(live.map((i) => cluster.status(i)));
      for (const st of ss) assert.deepEqual([...st.links].sort(), want.get(st.id), `${st.id} keeps its configured links while peers are down`);
    },
  );
  report(`static: total ${Math.round((performance.now() - started) / 1000)} s`);
});

test('lab: gossip over the dynamic overlay (no links: ring + matching, degree 3), 16 nodes, kill -9 and restart', labTestOptions({ timeout: 75_000 }), async (t) => {
  const started = performance.now();
  const cluster = await setUp(t, 'dynamic', (lab, i, dataDir) => [
    '--host', lab.host(i).ip, '--port', String(PORT), '--id', idOf(i), '--data-dir', dataDir,
    '--cluster-name', 'gossip-lab-dynamic', '--mcast', `${MCAST.group}:${MCAST.port}`, '--mcast-interface', lab.host(i).ip,
  ]);
  const members = range(HOSTS).map((i) => ({ id: idOf(i), host: cluster.lab.host(i).ip, port: PORT }));
  const expectedOverlay = dynamicOverlay(members);
  const want = new Map([...expectedOverlay].map(([id, ns]) => [id, [...ns].sort()]));
  assert.deepEqual(degree3(want), [], 'the overlay of 16 members is 3-regular');
  let graph: [string, string][] = [];
  const ruleSays = (want: ReadonlyMap<string, readonly string[]>) => (adj: ReadonlyMap<string, readonly string[]>) =>
    [...want].flatMap(([id, ns]) => (JSON.stringify(adj.get(id)) === JSON.stringify(ns) ? [] : [`${id}: links ${adj.get(id)} (the rule says ${ns})`]));
  await scenario(
    t,
    cluster,
    'dynamic',
    async () => {
      // Every node sees all 16 members, has exactly 3 links, symmetric, and they are the rule's links.
      const got = await cluster.linksConnected(20_000, (adj) => [...degree3(adj), ...ruleSays(want)(adj)]);
      graph = edgesOf(got);
      report(`dynamic: every node has exactly 3 links (ring + matching), diameter ${diameter(new Map([...got].map(([k, v]) => [k, new Set(v)])))}`);
      return graph;
    },
    async (live) => {
      // The overlay re-forms over the 14 live members: 3-regular again, all connected.
      const overlay14 = dynamicOverlay(live.map((i) => members[i]!));
      const want14 = new Map([...overlay14].map(([id, ns]) => [id, [...ns].sort()]));
      assert.deepEqual(degree3(want14), [], 'the overlay of 14 members is 3-regular');
      const got = await cluster.linksConnected(10_000, (adj) => [...degree3(adj), ...ruleSays(want14)(adj)], live);
      report(`dynamic: with 14 members the overlay re-formed, 3 links each, diameter ${diameter(new Map([...got].map(([k, v]) => [k, new Set(v)])))}`);
    },
  );
  // After the restart the overlay is back to the same 3-regular graph.
  const again = await cluster.linksConnected(10_000, (adj) => [...degree3(adj), ...(JSON.stringify(edgesOf(adj)) === JSON.stringify(graph) ? [] : ['the overlay differs from before the kill'])]);
  assert.deepEqual(degree3(again), []);
  report(`dynamic: total ${Math.round((performance.now() - started) / 1000)} s`);
});
