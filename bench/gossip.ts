/**
 * npm run bench:gossip — issue 3's gossip benchmark.
 *
 * Builds a 16-host lab (test/helpers/lab.ts) and measures, in the same run:
 *
 *   grapevine (16 `grapevine node`, dynamic overlay: ring + chord, degree 3)
 *     1. latency from submit until the last of the 16 nodes has stored the
 *        message, over BENCH_GOSSIP_MESSAGES (default 1,000) messages
 *        submitted at 4 nodes in turn, one every BENCH_GOSSIP_PROBE_SPACING_MS
 *        (default 40 ms); also without watches, and with the earlier
 *        relay-watch instrument (see "How arrival is observed");
 *     2. sustained submit throughput with every node storing: many
 *        concurrent submits from several clients at several nodes, counted
 *        until every node holds all of them; per run it also prints (and keeps
 *        in the JSON) each node's CPU-ms per message, the acknowledgement
 *        latency, and how the nodes' gossip counters grew (a 'stats' line each
 *        node logs on SIGUSR2 before and after: duplicate copies, drops at the
 *        write-queue bound, anti-entropy requests and messages sent / held back
 *        / fetched, group commits and messages per commit, id merges);
 *     3. re-sync: a node killed with -9 misses BENCH_GOSSIP_RESYNC_MESSAGES
 *        (default 10,000) messages, is restarted with its data dir, and is
 *        timed until it holds them all;
 *     4. delivery with 5 % loss on every host: (message, node) pairs stored
 *        within 5 s of the last submit;
 *   serf (16 agents, user events with -coalesce=false)
 *     1. the same latency, and 4. the same delivery ratio.
 *
 * Prints a table, rewrites the "gossip" section of bench/RESULTS.md and writes
 * the raw figures to bench/results/gossip-<date>.json. The lab is destroyed on
 * every exit path (the Lab class also does it on SIGINT/SIGTERM/exit).
 *
 * How arrival is observed:
 *  - grapevine, the headline (since 2026-11-22): a probe process in every
 *    host (bench/lib/gossip-probe.mjs: a plain Node process with the compiled
 *    client, started with `ip netns exec` like the lab relay) `watch`es its
 *    node over the host's own address; the node sends the event right after
 *    the group commit that stored the message. The probe stamps each event
 *    as soon as its frame is read (the bytes are decoded after the run)
 *    with CLOCK_MONOTONIC (process.hrtime.bigint(): one kernel clock for every
 *    namespace, ns resolution, never stepped) and keeps the stamps in memory
 *    (niceness BENCH_GOSSIP_PROBE_NICE, default -10: a stamp then waits less
 *    for a CPU behind the 16 busy nodes; measured stamp − node-side received_ms
 *    median 3.9 ms at -10, 7.4 ms at 0, two runs on a loaded machine);
 *    the bench collects them in one piece after the run. The probes at the
 *    submit hosts also submit, on a fixed schedule (message k at
 *    start + (k + WARMUP)·spacing, in turn at SUBMIT_HOSTS), stamping just
 *    before `submit` with the same clock (open loop: a stall delays, and
 *    counts, every message due during it). So no relay and no process of the
 *    bench sits between a node and its stamp, and a watch event costs one
 *    wake-up of one small process.
 *    Why: until then the 16 watches (and the submits) reached the bench
 *    through the lab relay (node → relay process in the host → unix socket →
 *    a 127.0.0.1 forward in this process → its client), and each message was
 *    sent once the previous had reached all 16 (+ 5–15 ms). Every watch event
 *    cost two more process wake-ups, one in this single-threaded process that
 *    also ran all 16 streams and the submits, on the same 2 CPUs as the nodes
 *    (measured: 17.5 node CPU-ms per message with those watches, 6.6
 *    without): the instrument inflated the tail it measured. That run is
 *    kept (BENCH_GOSSIP_RELAY_WATCH=on, the default; "earlier instrument"
 *    rows) so the two can be compared in one run.
 *    What watching still costs (2026-11-22, a 2-CPU machine loaded by other
 *    labs, load 12–27): the 16 probes 4.4–5.2 CPU-ms per message (6.3–7.7
 *    while they decoded every event); in the run that measured both
 *    instruments, nodes + probes 19.5 CPU-ms per message against nodes +
 *    relays + bench 27.0, and 11.6 with no watch at all. Node-side p50 with
 *    the probes stayed above the no-watch run's (e.g. 17 vs 9 ms): 16 extra
 *    process wake-ups per message on 2 CPUs slow the wave itself, so the
 *    headline is an upper bound and the no-watch node-side figure the floor.
 *    Open loop versus the earlier closed loop: on that machine the probes'
 *    p99 was often far above the relay run's (223–1649 ms against 130–520),
 *    because overload episodes of a few seconds now count for every message
 *    due during them. On a quieter stretch (load 3–13), three full runs:
 *    probes p50/p99 9.3/30.2, 8.0/21.7, 8.2/20.2 ms (node-side 8/23, 6/16,
 *    7/16) against the relay watches 17.4/42.3, 11.8/27.1, 11.0/24.1 ms, and
 *    no watch at all node-side 8/20, 5/11, 5/11; one hop (stamp minus the
 *    sender's stamp) p50 1.6–2.1 ms, p99 8–11 ms; the last node 3 hops away
 *    at p50, 5–6 at p99; the origin's commit + event p50 1.1–1.2 ms.
 *    Since 2026-11-22 (session 6) the probe's watch is a raw socket of its
 *    own (net.connect with `onread`: one reused read buffer, no stream
 *    machinery and no frame object per event; the probe sends the client
 *    Hello and the watch request itself). What is stamped is unchanged: the
 *    read that completed each event frame, taken first thing in the read
 *    callback (a few tens of µs earlier than the client's stream and frame
 *    decoder could). Probe CPU per event, 8 local nodes × 500 events, four
 *    A/B pairs on a loaded machine (load 11-24): 0.25-0.27 ms before (median
 *    0.27), 0.13-0.18 after (median 0.17); in the lab, 16 probes, loaded
 *    runs of the same day: 3.2-5.6 CPU-ms per message before, 2.6-3.3 after.
 *    The nodes' JIT is still warming during the latency phases (session 6,
 *    perf on the 16 node processes, loaded machine): V8's background
 *    TurboFan compiles were 11-28 % of the nodes' CPU in the first probe run
 *    after start, 9-17 % two minutes later, 2 % after about four; at 25
 *    messages/s the hot paths cross V8's thresholds one by one (about 220
 *    functions optimized per node, few deopts). Consecutive probe runs in one
 *    lab (BENCH_GOSSIP_PROBE_RUNS=3) went 17.1 → 14.0 → 12.7 node CPU-ms per
 *    message. So the order of the phases matters: the relay-watch run
 *    (default on) warms the nodes before the probe run.
 *  - grapevine, node-side cross-checks (no bench process involved): every
 *    node's SQLite store records received_ms; max over nodes minus the
 *    origin's created_ms (both wall clock, shared by the namespaces; 1 ms
 *    resolution), for the probes' messages, the relay-watch run's, and a run
 *    without any watch (one message every QUIET_SPACING_MS, through the relay).
 *  - serf: every agent runs with -log-level=info; its event loop logs
 *    `agent: Received event: user-event: NAME` when it takes the event from
 *    serf, before any handler runs. The bench stamps those lines on arrival
 *    (serf's own log times have 1 s resolution). The clock starts at the
 *    ORIGIN agent's own line (the moment serf accepted the event), not at
 *    the spawn of `serf event` (which costs a process start); the figure from
 *    the spawn is kept too. Each agent also runs `-event-handler user=SCRIPT`
 *    that appends `date +%s%N`, the name and the payload to a file per agent:
 *    reported separately (serf runs handlers one at a time, after the log line).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fmtSteal, stealMeter } from './lib/steal.js';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { GrapevineClient } from '../src/api/client.js';
import { GRAPEVINE_JS } from '../test/helpers/lab-cluster.js';
import { Lab } from '../test/helpers/lab.js';
import type { Forward } from '../test/helpers/lab.js';
import { listNamespaces } from '../test/helpers/lab-ns.js';
import { startGv } from './lib/grapevine.js';
import { monoMs, startProbes } from './lib/gossip-probes.js';
import type { Probe } from './lib/gossip-probes.js';
import type { GvNode, GvRecord } from './lib/grapevine.js';
import { receivedTimes, storedCount } from './lib/gossip-db.js';
import { cpuSeconds, rssMiB } from './lib/host-stats.js';
import { sleep, waitFor } from './lib/lines.js';
import { machineInfo } from './lib/machine.js';
import type { MachineInfo } from './lib/machine.js';
import { writeSection } from './lib/results-md.js';
import { enableMdns, ensureSerf, startSerf, writeUserEventHandlerScript } from './lib/serf.js';
import type { SerfAgent } from './lib/serf.js';
import { max, mean, median, min, percentile, present, round } from './lib/stats.js';
import { mdTable, row, textTable } from './lib/table.js';
import type { Row } from './lib/table.js';

const N = 16;
const GV_PORT = 7000;
const LOSS = 0.05;
/** Latency and delivery messages are submitted at these hosts in turn. */
const SUBMIT_HOSTS = [0, 5, 10, 15];
const RESYNC_HOST = 7;
const WARMUP = 20;
const GAP_MIN_MS = 5;
const GAP_JITTER_MS = 10;
const ARRIVAL_TIMEOUT_MS = 10_000;
const GOALS = { p99Ms: 20, speedupP99: 20, throughputPerS: 5_000, resyncS: 2, delivery: 1 };

const REPO = fileURLToPath(new URL('../', import.meta.url));
const RESULTS_MD = join(REPO, 'bench', 'RESULTS.md');
const RESULTS_DIR = join(REPO, 'bench', 'results');

function envInt(name: string, dflt: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < minimum || v > maximum) throw new Error(`${name} must be an integer in ${minimum}..${maximum}, got '${raw}'`);
  return v;
}

const MESSAGES = envInt('BENCH_GOSSIP_MESSAGES', 1_000, 1);
const SERF_MESSAGES = envInt('BENCH_GOSSIP_SERF_MESSAGES', MESSAGES, 1);
const TP_MESSAGES = envInt('BENCH_GOSSIP_THROUGHPUT_MESSAGES', 20_000, 1);
const TP_CLIENTS = envInt('BENCH_GOSSIP_THROUGHPUT_CLIENTS', 8, 1, N - 1);
const TP_WINDOW = envInt('BENCH_GOSSIP_THROUGHPUT_WINDOW', 32, 1, 1_000);
const TP_RUNS = envInt('BENCH_GOSSIP_THROUGHPUT_RUNS', 3, 1, 9);
const RESYNC_MESSAGES = envInt('BENCH_GOSSIP_RESYNC_MESSAGES', 10_000, 1);
const RESYNC_RUNS = envInt('BENCH_GOSSIP_RESYNC_RUNS', 3, 1, 9);
const LOSS_MESSAGES = envInt('BENCH_GOSSIP_LOSS_MESSAGES', 1_000, 1);
const LOSS_RATE = envInt('BENCH_GOSSIP_LOSS_RATE', 20, 1, 1_000);
const LOSS_WINDOW_S = envInt('BENCH_GOSSIP_LOSS_WINDOW_S', 5, 1);
const EVENTUAL_S = envInt('BENCH_GOSSIP_EVENTUAL_S', 30, 0);
/** Spacing of the latency run without watches (node-side timing only). */
const QUIET_SPACING_MS = envInt('BENCH_GOSSIP_QUIET_SPACING_MS', 40, 5);
/** Spacing of the headline latency run (probes in the hosts); the same as the run without watches unless set. */
const PROBE_SPACING_MS = envInt('BENCH_GOSSIP_PROBE_SPACING_MS', QUIET_SPACING_MS, 5);
/** The earlier instrument (watches through the lab relay into this process), kept for comparison. */
const RELAY_WATCH = (process.env.BENCH_GOSSIP_RELAY_WATCH ?? 'on') !== 'off';
/** Niceness of the probes (negative: scheduled ahead of the nodes, so a stamp waits less for a CPU). */
const PROBE_NICE = envInt('BENCH_GOSSIP_PROBE_NICE', -10, -20, 19);
/** Bytes of each message text / serf payload (serf refuses name + payload over 512 bytes). */
const PAYLOAD_BYTES = envInt('BENCH_GOSSIP_PAYLOAD_BYTES', 100, 24, 400);
const RUN_SERF = (process.env.BENCH_GOSSIP_SERF ?? 'on') !== 'off';
/**
 * Quick looks at latency (BENCH_GOSSIP_LATENCY_ONLY=on): only the idle CPU, the
 * probe run BENCH_GOSSIP_PROBE_RUNS times in the same lab, and the run without
 * watches; figures are printed (and kept in bench/results/gossip-latency-*.json),
 * bench/RESULTS.md is not touched.
 */
const LATENCY_ONLY = (process.env.BENCH_GOSSIP_LATENCY_ONLY ?? 'off') === 'on';
const PROBE_RUNS = envInt('BENCH_GOSSIP_PROBE_RUNS', 1, 1, 9);

/** Hosts the throughput clients submit at: spread over the ring, never the re-sync victim. */
const TP_HOSTS = ((): number[] => {
  const candidates = Array.from({ length: N }, (_, i) => i).filter((i) => i !== RESYNC_HOST);
  return Array.from({ length: TP_CLIENTS }, (_, j) => candidates[Math.floor((j * candidates.length) / TP_CLIENTS)]!);
})();

const T0 = Date.now();
function say(msg: string): void {
  process.stderr.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

/** Wall-clock epoch ms with sub-ms resolution. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

async function sleepUntil(t: number): Promise<void> {
  const d = t - now();
  if (d > 0) await sleep(d);
}

/** The message text (grapevine) / payload (serf): unique, PAYLOAD_BYTES long. */
function text(tag: string, k: number): string {
  const head = `${tag}-${k}-`;
  return head + 'x'.repeat(Math.max(0, PAYLOAD_BYTES - head.length));
}

// ---------------------------------------------------------------------------
// grapevine: nodes, clients through the lab relay, arrival bookkeeping

const clients = new Set<GrapevineClient>();

async function connect(fwd: Forward, timeoutMs = 20_000): Promise<GrapevineClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const c = await GrapevineClient.connect(fwd.host, fwd.port, { timeoutMs: 10_000 });
      clients.add(c);
      return c;
    } catch (err) {
      if (Date.now() >= deadline) throw new Error(`cannot reach the node at ${fwd.target} within ${timeoutMs} ms: ${(err as Error).message}`);
      await sleep(10);
    }
  }
}

function closeClient(c: GrapevineClient): void {
  c.close();
  clients.delete(c);
}

interface GvCluster {
  readonly nodes: GvNode[];
  readonly fwds: Forward[];
  readonly dataDirs: string[];
}

async function startGvCluster(lab: Lab): Promise<GvCluster> {
  const dataDirs = lab.hosts.map((h) => join(lab.tmpDir, `gv-h${h.index}`));
  const nodes = lab.hosts.map((h) => startGv(lab, h.index, GV_PORT, dataDirs[h.index]!));
  const fwds = await Promise.all(lab.hosts.map((h) => lab.forward(h.index, GV_PORT)));
  const cluster = { nodes, fwds, dataDirs };
  if (!(await waitFor(() => nodes.every((n) => n.fullAt(N) !== undefined), 60_000))) {
    throw new Error(`grapevine: only ${nodes.filter((n) => n.fullAt(N) !== undefined).length}/${N} nodes saw all ${N} alive within 60 s`);
  }
  await waitOverlay(cluster, lab.hosts.map((h) => h.index), 30_000);
  return cluster;
}

/** Until every listed node sees all alive and has every overlay link connected, twice in a row. */
async function waitOverlay(cluster: GvCluster, hosts: readonly number[], timeoutMs: number): Promise<void> {
  const cs = await Promise.all(hosts.map((i) => connect(cluster.fwds[i]!)));
  const deadline = Date.now() + timeoutMs;
  let good = 0;
  let last = '';
  try {
    while (good < 2) {
      const ss = await Promise.all(cs.map((c) => c.status()));
      const ok = ss.every((s) => s.members.filter((m) => m.state === 'alive').length === N && s.links.length >= 3 && s.linksConnected.length === s.links.length);
      good = ok ? good + 1 : 0;
      last = ss.map((s) => `${s.id}: ${s.linksConnected.length}/${s.links.length} links`).join(', ');
      if (Date.now() > deadline) throw new Error(`grapevine overlay not complete within ${timeoutMs} ms: ${last}`);
      await sleep(200);
    }
  } finally {
    cs.forEach(closeClient);
  }
}

/** Per message id, when each node's watch reported it (bench clock, epoch ms). */
class Arrivals {
  private readonly at = new Map<string, Float64Array>();
  private readonly counts = new Map<string, number>();
  private readonly waiters = new Map<string, () => void>();

  constructor(private readonly nodes: number) {}

  record(id: string, node: number, t: number): void {
    let a = this.at.get(id);
    if (!a) {
      a = new Float64Array(this.nodes).fill(Number.NaN);
      this.at.set(id, a);
    }
    if (!Number.isNaN(a[node]!)) return;
    a[node] = t;
    const c = (this.counts.get(id) ?? 0) + 1;
    this.counts.set(id, c);
    if (c >= this.nodes) this.waiters.get(id)?.();
  }

  count(id: string): number {
    return this.counts.get(id) ?? 0;
  }

  /** Arrival times by node index (NaN: not arrived). */
  times(id: string): Float64Array {
    return this.at.get(id) ?? new Float64Array(this.nodes).fill(Number.NaN);
  }

  /** Resolves true once every node has reported id, false after timeoutMs. */
  waitAll(id: string, timeoutMs: number): Promise<boolean> {
    if (this.count(id) >= this.nodes) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve(false);
      }, timeoutMs);
      this.waiters.set(id, () => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(true);
      });
    });
  }
}

async function watchAll(cluster: GvCluster): Promise<{ watchers: GrapevineClient[]; arrivals: Arrivals }> {
  const arrivals = new Arrivals(N);
  const watchers = await Promise.all(
    cluster.fwds.map(async (fwd, i) => {
      const c = await connect(fwd);
      await c.watch((m) => arrivals.record(m.id, i, now()));
      return c;
    }),
  );
  return { watchers, arrivals };
}

// ---------------------------------------------------------------------------
// Figures

interface Dist {
  readonly n: number;
  /** Samples that never completed (counted as slower than all others in the percentiles). */
  readonly missing: number;
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly max: number | null;
  readonly mean: number | null;
}

/** ms figures; null samples are misses and count as +Infinity in the percentiles. */
function dist(xs: readonly (number | null)[], digits = 2): Dist {
  const full = xs.map((x) => (x === null ? Number.POSITIVE_INFINITY : x));
  const got = present(xs);
  const fin = (x: number | null): number | null => (x === null || !Number.isFinite(x) ? null : round(x, digits));
  return {
    n: xs.length,
    missing: xs.length - got.length,
    p50: fin(percentile(full, 50)),
    p90: fin(percentile(full, 90)),
    p99: fin(percentile(full, 99)),
    max: fin(max(full)),
    mean: round(mean(got), digits),
  };
}

interface GvLatency {
  readonly messages: number;
  readonly submitFailures: number;
  /** A `get` of an unknown id through the relay: what the relay adds to a round trip. */
  readonly relayRoundTripMs: Dist;
  /** Submit → the submit call resolved (stored at the origin), through the relay. */
  readonly ackMs: Dist;
  /** Submit → the last of the 16 watches reported it (the headline figure). */
  readonly lastMs: Dist;
  /** Submit → the first node other than the origin reported it. */
  readonly firstOtherMs: Dist;
  /** Submit → each node other than the origin reported it, over all (message, node) pairs. */
  readonly pairMs: Dist;
  /** Node-side: max over nodes of received_ms minus the origin's created_ms. */
  readonly nodeSideLastMs: Dist;
  /** CPU of the 16 node processes with nothing submitted, % of one CPU per node. */
  readonly idleCpuPerNodePct: number | null;
  /** CPU of the 16 node processes per message in this phase, minus their idle share (cluster-wide ms). */
  readonly nodeCpuMsPerMessage: number | null;
  /** CPU of this process per message (it ran the 16 watch streams and the submits). */
  readonly benchCpuMsPerMessage: number;
  /** CPU of the lab's relay processes per message (every watch event and submit passes one). */
  readonly relayCpuMsPerMessage: number | null;
  readonly samples: { k: number; host: number; ackMs: number; lastMs: number | null; nodeSideLastMs: number | null }[];
}

/** CPU seconds of the node processes (null if one is gone). */
async function nodesCpu(cluster: GvCluster): Promise<number | null> {
  const xs = await Promise.all(cluster.nodes.map((n) => cpuSeconds(n.pid)));
  return xs.some((x) => x === null) ? null : (xs as number[]).reduce((a, b) => a + b, 0);
}

/** The nodes' CPU (cluster-wide ms) per message while f runs, minus what they use idle. */
async function cpuPerMessage<T>(cluster: GvCluster, idleCpuPerS: number | null, messages: number, f: () => Promise<T>): Promise<{ result: T; msPerMessage: number | null }> {
  const c0 = await nodesCpu(cluster);
  const t0 = Date.now();
  const result = await f();
  const c1 = await nodesCpu(cluster);
  const seconds = (Date.now() - t0) / 1000;
  const ms = c0 === null || c1 === null || idleCpuPerS === null ? null : ((c1 - c0 - idleCpuPerS * seconds) * 1000) / messages;
  return { result, msPerMessage: round(ms, 2) };
}

async function gvIdleCpuPerS(cluster: GvCluster): Promise<number | null> {
  const c0 = await nodesCpu(cluster);
  const t0 = Date.now();
  await sleep(5_000);
  const c1 = await nodesCpu(cluster);
  return c0 === null || c1 === null ? null : (c1 - c0) / ((Date.now() - t0) / 1000);
}

async function gvLatency(lab: Lab, cluster: GvCluster, idleCpuPerS: number | null): Promise<GvLatency> {
  const { watchers, arrivals } = await watchAll(cluster);
  const submitters = await Promise.all(SUBMIT_HOSTS.map((h) => connect(cluster.fwds[h]!)));
  const rtts: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = now();
    await submitters[0]!.get('00000000000');
    rtts.push(now() - t);
  }
  say(`  relay round trip (get of an unknown id): p50 ${median(rtts)!.toFixed(2)} ms`);
  const since = Date.now() - 1;
  const samples: { k: number; host: number; id: string; createdAt: number; ackMs: number; lastMs: number | null; firstOtherMs: number | null }[] = [];
  let failures = 0;
  const pairs: (number | null)[] = [];
  let c0: number | null = null;
  let cpuFrom = Date.now();
  let bench0 = process.cpuUsage();
  const relays = relayPids(lab);
  let r0: number | null = null;
  for (let k = -WARMUP; k < MESSAGES; k++) {
    if (k === 0) {
      c0 = await nodesCpu(cluster);
      cpuFrom = Date.now();
      bench0 = process.cpuUsage();
      r0 = await sumCpu(relays);
    }
    const slot = (k + WARMUP) % SUBMIT_HOSTS.length;
    const host = SUBMIT_HOSTS[slot]!;
    const t0 = now();
    let id: string;
    try {
      id = await submitters[slot]!.submit(text(k < 0 ? 'warm' : 'lat', k));
    } catch (err) {
      failures += 1;
      say(`  submit ${k} at host ${host} failed: ${(err as Error).message}`);
      continue;
    }
    const ackMs = now() - t0;
    const all = await arrivals.waitAll(id, ARRIVAL_TIMEOUT_MS);
    const ts = [...arrivals.times(id)];
    const others = present(ts.filter((_, i) => i !== host));
    if (k >= 0) {
      samples.push({ k, host, id, createdAt: t0, ackMs, lastMs: all ? max(ts)! - t0 : null, firstOtherMs: others.length > 0 ? min(others)! - t0 : null });
      ts.forEach((t, i) => i !== host && pairs.push(Number.isNaN(t) ? null : t - t0));
    }
    if (k >= 0 && (k + 1) % 250 === 0) say(`  grapevine latency: ${k + 1}/${MESSAGES}, p50 so far ${dist(samples.map((s) => s.lastMs)).p50} ms`);
    await sleep(GAP_MIN_MS + Math.random() * GAP_JITTER_MS);
  }
  const c1 = await nodesCpu(cluster);
  const benchCpu = process.cpuUsage(bench0);
  const r1 = await sumCpu(relays);
  const loopS = (Date.now() - cpuFrom) / 1000;
  const cpuMs = c0 === null || c1 === null || idleCpuPerS === null ? null : ((c1 - c0 - idleCpuPerS * loopS) * 1000) / MESSAGES;
  watchers.forEach(closeClient);
  submitters.forEach(closeClient);

  const stores = cluster.dataDirs.map((d) => receivedTimes(d, since));
  const nodeSide = samples.map((s) => {
    const rs = stores.map((st) => st.get(s.id));
    if (rs.some((r) => r === undefined)) return null;
    return max(rs.map((r) => r!.receivedMs))! - rs[0]!.createdMs;
  });
  return {
    messages: MESSAGES,
    submitFailures: failures,
    relayRoundTripMs: dist(rtts, 3),
    ackMs: dist(samples.map((s) => s.ackMs)),
    lastMs: dist(samples.map((s) => s.lastMs)),
    firstOtherMs: dist(samples.map((s) => s.firstOtherMs)),
    pairMs: dist(pairs),
    nodeSideLastMs: dist(nodeSide, 0),
    idleCpuPerNodePct: idleCpuPerS === null ? null : round((idleCpuPerS / N) * 100, 2),
    nodeCpuMsPerMessage: round(cpuMs, 2),
    benchCpuMsPerMessage: round((benchCpu.user + benchCpu.system) / 1000 / MESSAGES, 3)!,
    relayCpuMsPerMessage: r0 === null || r1 === null || relays.length === 0 ? null : round(((r1 - r0) * 1000) / MESSAGES, 2),
    samples: samples.map((s, i) => ({ k: s.k, host: s.host, ackMs: round(s.ackMs, 3)!, lastMs: round(s.lastMs, 3), nodeSideLastMs: nodeSide[i] ?? null })),
  };
}

interface GvQuietLatency {
  readonly messages: number;
  readonly spacingMs: number;
  readonly submitFailures: number;
  /** Node-side only (no watches): origin created_ms → the last node's received_ms. */
  readonly nodeSideLastMs: Dist;
  readonly nodeCpuMsPerMessage: number | null;
}

/**
 * The same latency without the 16 watches: every watch event costs a wakeup of
 * a relay process and of the bench, on the same 2 CPUs as the nodes. Messages
 * go out every `spacingMs` (well above the latency), timed by the stores alone.
 */
async function gvLatencyQuiet(cluster: GvCluster, idleCpuPerS: number | null): Promise<GvQuietLatency> {
  const submitters = await Promise.all(SUBMIT_HOSTS.map((h) => connect(cluster.fwds[h]!)));
  const ids: string[] = [];
  let failures = 0;
  const since = Date.now() - 1;
  const { msPerMessage } = await cpuPerMessage(cluster, idleCpuPerS, MESSAGES, async () => {
    const start = now() + 20;
    for (let k = 0; k < MESSAGES; k++) {
      await sleepUntil(start + k * QUIET_SPACING_MS);
      try {
        ids.push(await submitters[k % SUBMIT_HOSTS.length]!.submit(text('quiet', k)));
      } catch {
        failures += 1;
      }
    }
    await sleep(1_000);
  });
  submitters.forEach(closeClient);
  const stores = cluster.dataDirs.map((d) => receivedTimes(d, since));
  const lasts = ids.map((id) => {
    const rs = stores.map((st) => st.get(id));
    if (rs.some((r) => r === undefined)) return null;
    return max(rs.map((r) => r!.receivedMs))! - rs[0]!.createdMs;
  });
  for (let i = 0; i < failures; i++) lasts.push(null);
  return { messages: MESSAGES, spacingMs: QUIET_SPACING_MS, submitFailures: failures, nodeSideLastMs: dist(lasts, 0), nodeCpuMsPerMessage: msPerMessage };
}

interface GvProbeLatency {
  readonly messages: number;
  readonly spacingMs: number;
  readonly submitFailures: number;
  /** Submit call → acknowledged (stored at the origin), in the origin's probe: no relay. */
  readonly ackMs: Dist;
  /** Submit → the origin's own watch event. */
  readonly originEventMs: Dist;
  /** Submit → the last of the 16 probes' watch events (the headline figure). */
  readonly lastMs: Dist;
  /** Submit → the first node other than the origin. */
  readonly firstOtherMs: Dist;
  /** Submit → each node other than the origin, over all (message, node) pairs. */
  readonly pairMs: Dist;
  /** Node-side for the same messages: max over nodes of received_ms minus the origin's created_ms. */
  readonly nodeSideLastMs: Dist;
  /** Per (message, node other than the origin): its stamp minus the stamp of the node it got the message from. */
  readonly hopMs: Dist;
  /** Hops on the path the last node got each message over (the overlay's diameter is the floor). */
  readonly lastNodeHops: Dist;
  /** Cluster-wide CPU-ms per message on top of idle: the 16 nodes, and the 16 probes. */
  readonly nodeCpuMsPerMessage: number | null;
  readonly probeCpuMsPerMessage: number | null;
  /** CPU of the 16 node processes with nothing submitted, % of one CPU per node. */
  readonly idleCpuPerNodePct: number | null;
  /** CPU of this process during the phase (it only waits). */
  readonly benchCpuMsPerMessage: number;
  /** Per message: submit → each node's watch event (index = host; null: never), and the host each node got it from (-1: none). */
  readonly samples: { k: number; host: number; ackMs: number; lastMs: number | null; nodeSideLastMs: number | null; arrivalsMs: (number | null)[]; fromHost: number[] }[];
}

/** PIDs of this lab's relay processes (their command line names the relay socket in the lab's tmp dir). */
function relayPids(lab: Lab): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(join(lab.tmpDir, 'relay-h'))) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function sumCpu(pids: readonly number[]): Promise<number | null> {
  const xs = await Promise.all(pids.map((p) => cpuSeconds(p)));
  return xs.some((x) => x === null) ? null : (xs as number[]).reduce((a, b) => a + b, 0);
}

/** Node-side: per id, max over the stores of received_ms minus the origin's created_ms (null: not on every node). */
function nodeSideLast(cluster: GvCluster, sinceMs: number, ids: readonly (string | null)[]): (number | null)[] {
  const stores = cluster.dataDirs.map((d) => receivedTimes(d, sinceMs));
  return ids.map((id) => {
    if (id === null) return null;
    const rs = stores.map((st) => st.get(id));
    if (rs.some((r) => r === undefined)) return null;
    return max(rs.map((r) => r!.receivedMs))! - rs[0]!.createdMs;
  });
}

/**
 * The headline latency: a probe process in every host (bench/lib/gossip-probe.mjs)
 * watches its node directly and keeps CLOCK_MONOTONIC stamps in memory; the
 * probes at the submit hosts also submit, on a shared schedule (message k at
 * start + (k + WARMUP)·spacing, in turn at SUBMIT_HOSTS), stamping the submit
 * with the same clock. Nothing reaches this process until the end.
 */
async function gvLatencyProbes(lab: Lab, cluster: GvCluster, idleCpuPerS: number | null): Promise<GvProbeLatency> {
  const probes: Probe[] = await startProbes(lab, lab.hosts.map((h) => h.index), GV_PORT, PROBE_NICE);
  try {
    await sleep(500);
    const total = WARMUP + MESSAGES;
    const since = Date.now() - 1;
    const nodePids = cluster.nodes.map((n) => n.pid);
    const probePids = probes.map((p) => p.pid);
    const [n0, p0] = await Promise.all([sumCpu(nodePids), sumCpu(probePids)]);
    const bench0 = process.cpuUsage();
    const tWall0 = Date.now();
    const start = monoMs() + 300;
    const step = SUBMIT_HOSTS.length;
    await Promise.all(
      SUBMIT_HOSTS.map((h, slot) => {
        const count = Math.ceil((total - slot) / step);
        return probes[h]!.submit(start + slot * PROBE_SPACING_MS, PROBE_SPACING_MS, slot - WARMUP, count, step, PAYLOAD_BYTES, total * PROBE_SPACING_MS + 60_000);
      }),
    );
    // Then wait for every probe to have seen every message (or the arrival timeout).
    const deadline = Date.now() + ARRIVAL_TIMEOUT_MS;
    await sleep(Math.max(100, 2 * PROBE_SPACING_MS));
    while (Date.now() < deadline && (await Promise.all(probes.map((p) => p.count()))).some((c) => c < total)) await sleep(100);
    const seconds = (Date.now() - tWall0) / 1000;
    const [n1, p1] = await Promise.all([sumCpu(nodePids), sumCpu(probePids)]);
    const benchCpu = process.cpuUsage(bench0);
    const dumps = await Promise.all(probes.map((p) => p.dump()));

    const at = new Map<string, Float64Array>();
    /** Per id and host: the host it came from (the last other node on its path; -1: none, the origin). */
    const from = new Map<string, Int16Array>();
    const hostOf = new Map(dumps.map((d, i) => [d.node, i]));
    dumps.forEach((d, i) => {
      for (const [id, t, path] of d.events) {
        let a = at.get(id);
        let f = from.get(id);
        if (!a || !f) {
          at.set(id, (a = new Float64Array(N).fill(Number.NaN)));
          from.set(id, (f = new Int16Array(N).fill(-1)));
        }
        if (!Number.isNaN(a[i]!)) continue;
        a[i] = t;
        const prev = path.split(' ').filter((p) => p !== '' && p !== d.node).pop();
        f[i] = prev === undefined ? -1 : (hostOf.get(prev) ?? -1);
      }
    });
    const subs = SUBMIT_HOSTS.flatMap((h) => dumps[h]!.submits.map(([k, id, t, ack]) => ({ k, host: h, id, t, ack }))).filter((s) => s.k >= 0);
    subs.sort((a, b) => a.k - b.k);
    const pairs: (number | null)[] = [];
    const rows = subs.map((s) => {
      const ts = s.id === null ? null : [...(at.get(s.id) ?? new Float64Array(N).fill(Number.NaN))];
      if (ts) ts.forEach((t, i) => i !== s.host && pairs.push(Number.isNaN(t) ? null : t - s.t));
      const others = ts ? present(ts.filter((t, i) => i !== s.host && !Number.isNaN(t))) : [];
      return {
        ...s,
        arrivalsMs: ts ? ts.map((t) => (Number.isNaN(t) ? null : round(t - s.t, 2))) : [],
        fromHost: s.id === null ? [] : [...(from.get(s.id) ?? [])],
        lastMs: ts && ts.every((t) => !Number.isNaN(t)) ? max(ts)! - s.t : null,
        originMs: ts && !Number.isNaN(ts[s.host]!) ? ts[s.host]! - s.t : null,
        firstOtherMs: others.length > 0 ? min(others)! - s.t : null,
      };
    });
    const nodeSide = nodeSideLast(cluster, since, rows.map((r) => r.id));
    const hops: number[] = [];
    const lastHops: (number | null)[] = [];
    for (const r of rows) {
      const a = r.arrivalsMs;
      if (a.length !== N || a.some((t) => t === null)) continue;
      r.fromHost.forEach((f, i) => i !== r.host && f >= 0 && hops.push(a[i]! - a[f]!));
      let i = a.indexOf(max(a as number[])!);
      let depth = 0;
      while (i !== r.host && i >= 0 && depth <= N) {
        i = r.fromHost[i]!;
        depth += 1;
      }
      lastHops.push(i === r.host ? depth : null);
    }
    const perMsg = (a: number | null, b: number | null, idle: number): number | null => (a === null || b === null ? null : round(((b - a - idle * seconds) * 1000) / MESSAGES, 2));
    return {
      messages: MESSAGES,
      spacingMs: PROBE_SPACING_MS,
      submitFailures: rows.filter((r) => r.id === null).length,
      ackMs: dist(rows.map((r) => r.ack)),
      originEventMs: dist(rows.map((r) => r.originMs)),
      lastMs: dist(rows.map((r) => r.lastMs)),
      firstOtherMs: dist(rows.map((r) => r.firstOtherMs)),
      pairMs: dist(pairs),
      nodeSideLastMs: dist(nodeSide, 0),
      hopMs: dist(hops),
      lastNodeHops: dist(lastHops, 0),
      nodeCpuMsPerMessage: idleCpuPerS === null ? null : perMsg(n0, n1, idleCpuPerS),
      probeCpuMsPerMessage: perMsg(p0, p1, 0),
      idleCpuPerNodePct: idleCpuPerS === null ? null : round((idleCpuPerS / N) * 100, 2),
      benchCpuMsPerMessage: round((benchCpu.user + benchCpu.system) / 1000 / MESSAGES, 3)!,
      samples: rows.map((r, i) => ({ k: r.k, host: r.host, ackMs: round(r.ack, 3)!, lastMs: round(r.lastMs, 3), nodeSideLastMs: nodeSide[i] ?? null, arrivalsMs: r.arrivalsMs, fromHost: r.fromHost })),
    };
  } finally {
    probes.forEach((p) => p.quit());
  }
}

interface Throughput {
  readonly messages: number;
  readonly accepted: number;
  readonly submitErrors: number;
  readonly clients: number;
  readonly window: number;
  readonly submitHosts: number[];
  /** First submit → every node polled holding all (the headline figure). */
  readonly allStoredS: number | null;
  readonly perSecond: number | null;
  /** First submit → the last submit acknowledged by its origin. */
  readonly ackedS: number;
  readonly ackedPerSecond: number;
  /** Node-side: the last received_ms of the phase's messages over all nodes, minus the first submit. */
  readonly nodeSideAllStoredS: number | null;
  readonly nodeSidePerSecond: number | null;
  /** Per node: first submit → polled holding all. */
  readonly perNodeS: (number | null)[];
  readonly target: number;
  /** CPU seconds of the node processes during the phase (until all stored), and per 1,000 messages. */
  readonly nodeCpuS: number | null;
  readonly nodeCpuMsPerMessage: number | null;
  readonly benchCpuS: number;
  /** Sums over the nodes of their gossip counters' growth during the run (from 'stats' lines, SIGUSR2), and per-node CPU-ms per message. */
  readonly counters?: Record<string, number>;
  readonly perNodeCpuMsPerMessage?: (number | null)[];
  readonly ackMs?: Dist;
}

/** Every live node's 'stats' line (SIGUSR2). */
async function statsOf(cluster: GvCluster, live: readonly number[]): Promise<(GvRecord | undefined)[]> {
  return Promise.all(live.map((i) => cluster.nodes[i]!.stats()));
}

function counterGrowth(a: readonly (GvRecord | undefined)[], b: readonly (GvRecord | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < a.length; i++) {
    const x = a[i]?.gossip;
    const y = b[i]?.gossip;
    if (!x || !y) continue;
    for (const [k, v] of Object.entries(y)) out[k] = (out[k] ?? 0) + v - (x[k] ?? 0);
  }
  return out;
}

/** Polls status().messages of the given clients until each reaches target; per client the time it did (epoch ms) or null. */
async function pollUntil(cs: readonly GrapevineClient[], target: number, timeoutMs: number, intervalMs: number): Promise<(number | null)[]> {
  const done: (number | null)[] = cs.map(() => null);
  const deadline = Date.now() + timeoutMs;
  while (done.some((d) => d === null) && Date.now() < deadline) {
    await Promise.all(
      cs.map(async (c, i) => {
        if (done[i] !== null) return;
        try {
          if ((await c.status()).messages >= target) done[i] = now();
        } catch {
          // a slow answer: ask again
        }
      }),
    );
    if (done.some((d) => d === null)) await sleep(intervalMs);
  }
  return done;
}

/** Until every listed node holds the same count; returns it. */
async function settledCount(cs: readonly GrapevineClient[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(cs.map((c) => c.status().then((s) => s.messages)));
    if (counts.every((c) => c === counts[0])) return counts[0]!;
    if (Date.now() > deadline) throw new Error(`grapevine: counts did not settle within ${timeoutMs} ms: ${counts.join(' ')}`);
    await sleep(100);
  }
}

async function gvThroughput(cluster: GvCluster, count: number, live: readonly number[], submitHosts: readonly number[], tag: string): Promise<Throughput> {
  const pollers = await Promise.all(live.map((i) => connect(cluster.fwds[i]!)));
  const base = await settledCount(pollers, 60_000);
  const submitters = await Promise.all(submitHosts.map((h) => connect(cluster.fwds[h]!)));
  const pids = live.map((i) => cluster.nodes[i]!.pid);
  const stats0 = await statsOf(cluster, live);
  const cpu0 = present(await Promise.all(pids.map((p) => cpuSeconds(p))));
  const bench0 = process.cpuUsage();
  const acks: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError = '';
  const t0 = now();
  const since = Math.floor(t0) - 1;
  await Promise.all(
    submitters.flatMap((c) =>
      Array.from({ length: TP_WINDOW }, async () => {
        while (next < count) {
          const k = next++;
          try {
            const ts = now();
            await c.submit(text(tag, k));
            acks.push(now() - ts);
          } catch (err) {
            errors += 1;
            firstError ||= (err as Error).message;
          }
        }
      }),
    ),
  );
  const tAcked = now();
  const accepted = count - errors;
  if (errors > 0) say(`  ${errors} submits failed (first: ${firstError})`);
  const target = base + accepted;
  const done = await pollUntil(pollers, target, 120_000, 20);
  const cpu1 = present(await Promise.all(pids.map((p) => cpuSeconds(p))));
  const benchCpu = process.cpuUsage(bench0);
  const stats1 = await statsOf(cluster, live);
  const counters = counterGrowth(stats0, stats1);
  const perNodeCpuMsPerMessage = cpu0.length === pids.length && cpu1.length === pids.length ? cpu1.map((c, i) => round(((c - cpu0[i]!) * 1000) / (count - errors), 3)) : [];
  submitters.forEach(closeClient);
  pollers.forEach(closeClient);
  const allDone = done.every((d) => d !== null) ? max(done as number[])! : null;
  const lastReceived = live.map((i) => {
    const times = [...receivedTimes(cluster.dataDirs[i]!, since).values()].map((r) => r.receivedMs);
    return times.length >= accepted ? max(times) : null;
  });
  const nodeSideAll = lastReceived.every((t) => t !== null) ? max(lastReceived as number[])! - t0 : null;
  const nodeCpu = cpu0.length === pids.length && cpu1.length === pids.length ? cpu1.reduce((a, b) => a + b, 0) - cpu0.reduce((a, b) => a + b, 0) : null;
  const allStoredS = allDone === null ? null : (allDone - t0) / 1000;
  return {
    messages: count,
    accepted,
    submitErrors: errors,
    clients: submitHosts.length,
    window: TP_WINDOW,
    submitHosts: [...submitHosts],
    allStoredS: round(allStoredS),
    perSecond: allStoredS === null ? null : Math.round(accepted / allStoredS),
    ackedS: round((tAcked - t0) / 1000)!,
    ackedPerSecond: Math.round(accepted / ((tAcked - t0) / 1000)),
    nodeSideAllStoredS: round(nodeSideAll === null ? null : nodeSideAll / 1000),
    nodeSidePerSecond: nodeSideAll === null ? null : Math.round(accepted / (nodeSideAll / 1000)),
    perNodeS: done.map((d) => (d === null ? null : round((d - t0) / 1000))),
    target,
    nodeCpuS: round(nodeCpu, 2),
    nodeCpuMsPerMessage: nodeCpu === null ? null : round((nodeCpu * 1000) / accepted, 3),
    benchCpuS: round((benchCpu.user + benchCpu.system) / 1e6, 2)!,
    counters,
    perNodeCpuMsPerMessage,
    ackMs: dist(acks),
  };
}

interface Resync {
  readonly host: number;
  readonly victim: string;
  readonly heldBefore: number;
  readonly target: number;
  readonly missed: number;
  /** The 15 others: the missed messages submitted and stored everywhere (a throughput run of its own). */
  readonly submitPhase: Throughput;
  /** 'node starting' (logged once the TCP port is bound) → status().messages reached the total (the headline figure). */
  readonly fromNodeStartingS: number | null;
  /** Spawn of the process → the same. */
  readonly fromSpawnS: number | null;
  /** Spawn → 'node starting' (Node.js start-up, data dir, identity). */
  readonly spawnToStartingS: number | null;
  /** 'node starting' → 'gossip store open' (loads the bookkeeping of every held message). */
  readonly storeOpenS: number | null;
  /** Node-side: the last received_ms of the re-synced messages minus 'node starting'. */
  readonly nodeSideFromNodeStartingS: number | null;
  readonly pollIntervalMs: number;
}

async function gvResync(lab: Lab, cluster: GvCluster): Promise<Resync> {
  const host = RESYNC_HOST;
  const victimNode = cluster.nodes[host]!;
  const victim = victimNode.id ?? '?';
  const others = lab.hosts.map((h) => h.index).filter((i) => i !== host);
  const tKill = Date.now();
  await lab.kill9(victimNode.proc);
  const seen = await waitFor(() => others.every((i) => cluster.nodes[i]!.firstAbout(['member dead'], victim, tKill) !== undefined), 15_000);
  say(`  killed ${victim} (host ${host}); ${seen ? 'all 15 others say dead' : 'NOT all others said dead within 15 s'} after ${((Date.now() - tKill) / 1000).toFixed(2)} s`);
  const heldBefore = storedCount(cluster.dataDirs[host]!);
  const submitPhase = await gvThroughput(cluster, RESYNC_MESSAGES, others, TP_HOSTS.filter((h) => h !== host), 'rs');
  const target = submitPhase.target;
  say(`  ${submitPhase.accepted} submitted and stored on the 15 others in ${submitPhase.allStoredS} s; the victim holds ${heldBefore}, the others ${target}`);
  await sleep(1_000);
  const tSpawn = Date.now();
  const node = startGv(lab, host, GV_PORT, cluster.dataDirs[host]!);
  cluster.nodes[host] = node;
  const pollIntervalMs = 20;
  const c = await connect(cluster.fwds[host]!, 30_000);
  let tDone: number | null = null;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      if ((await c.status()).messages >= target) {
        tDone = Date.now();
        break;
      }
    } catch {
      // busy re-syncing: ask again
    }
    await sleep(pollIntervalMs);
  }
  closeClient(c);
  const started = node.startedAt ?? null;
  const storeOpen = node.records.find((r) => r.msg === 'gossip store open')?.time ?? null;
  const received = [...receivedTimes(cluster.dataDirs[host]!, 0).values()].map((r) => r.receivedMs).filter((t) => t >= tSpawn);
  const lastReceived = received.length >= target - heldBefore ? max(received) : null;
  const s = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : round((a - b) / 1000));
  // Let its neighbours see it back before anything else runs.
  await waitOverlay(cluster, lab.hosts.map((h) => h.index), 30_000);
  return {
    host,
    victim,
    heldBefore,
    target,
    missed: target - heldBefore,
    submitPhase,
    fromNodeStartingS: s(tDone, started),
    fromSpawnS: s(tDone, tSpawn),
    spawnToStartingS: s(started, tSpawn),
    storeOpenS: s(storeOpen, started),
    nodeSideFromNodeStartingS: s(lastReceived, started),
    pollIntervalMs,
  };
}

interface Delivery {
  readonly messages: number;
  readonly nodes: number;
  readonly rate: number;
  readonly loss: number;
  readonly windowS: number;
  readonly submitFailures: number;
  /** (message, node) pairs stored within the window after the last acknowledged submit, of messages × nodes. */
  readonly withinWindow: number;
  readonly ratio: number;
  /** The same after up to EVENTUAL_S more seconds. */
  readonly eventually: number;
  readonly eventualRatio: number;
  readonly eventualWaitS: number;
  /** Messages that missed at least one node within the window. */
  readonly messagesIncomplete: number;
  /** Cross-check (grapevine: node-side received_ms; serf: the event handlers' timestamps). */
  readonly crossCheckWithinWindow: number | null;
  readonly crossCheckRatio: number | null;
  /** Submit (acknowledged) → last node, for the messages that reached all within the window. */
  readonly lastMs: Dist;
}

interface Submitted {
  readonly key: string;
  readonly ackAt: number;
  readonly sentAt: number;
}

function deliveryFigures(
  messages: number,
  submitted: readonly Submitted[],
  failures: number,
  deadline: number,
  arrival: (key: string, node: number) => number | undefined,
  crossCheck: ((key: string, node: number) => number | undefined) | null,
): Omit<Delivery, 'eventually' | 'eventualRatio' | 'eventualWaitS'> {
  let within = 0;
  let cross = 0;
  let incomplete = 0;
  const lasts: (number | null)[] = [];
  for (const s of submitted) {
    let got = 0;
    let last = 0;
    for (let i = 0; i < N; i++) {
      const t = arrival(s.key, i);
      if (t !== undefined && t <= deadline) {
        got += 1;
        last = Math.max(last, t);
      }
      const c = crossCheck?.(s.key, i);
      if (c !== undefined && c <= deadline) cross += 1;
    }
    within += got;
    if (got < N) incomplete += 1;
    lasts.push(got === N ? last - s.sentAt : null);
  }
  const pairs = messages * N;
  return {
    messages,
    nodes: N,
    rate: LOSS_RATE,
    loss: LOSS,
    windowS: LOSS_WINDOW_S,
    submitFailures: failures,
    withinWindow: within,
    ratio: round(within / pairs, 6)!,
    messagesIncomplete: incomplete + failures,
    crossCheckWithinWindow: crossCheck ? cross : null,
    crossCheckRatio: crossCheck ? round(cross / pairs, 6) : null,
    lastMs: dist(lasts, 1),
  };
}

function countWithin(submitted: readonly Submitted[], arrival: (key: string, node: number) => number | undefined, until: number): number {
  let n = 0;
  for (const s of submitted) for (let i = 0; i < N; i++) if ((arrival(s.key, i) ?? Infinity) <= until) n += 1;
  return n;
}

/** Submits `messages` at `rate`/s round-robin over SUBMIT_HOSTS; resolves with what was acknowledged. */
async function paced(messages: number, submit: (k: number, slot: number) => Promise<string>): Promise<{ submitted: Submitted[]; failures: number }> {
  const interval = 1000 / LOSS_RATE;
  const start = now() + 50;
  const submitted: Submitted[] = [];
  let failures = 0;
  const inFlight: Promise<void>[] = [];
  for (let k = 0; k < messages; k++) {
    await sleepUntil(start + k * interval);
    const sentAt = now();
    inFlight.push(
      submit(k, k % SUBMIT_HOSTS.length).then(
        (key) => {
          submitted.push({ key, sentAt, ackAt: now() });
        },
        () => {
          failures += 1;
        },
      ),
    );
  }
  await Promise.all(inFlight);
  return { submitted, failures };
}

async function waitEventually(submitted: readonly Submitted[], arrival: (key: string, node: number) => number | undefined): Promise<{ count: number; waitedS: number }> {
  const t = Date.now();
  const complete = (): boolean => countWithin(submitted, arrival, Infinity) === submitted.length * N;
  await waitFor(complete, EVENTUAL_S * 1000, 200);
  return { count: countWithin(submitted, arrival, Infinity), waitedS: round((Date.now() - t) / 1000, 1)! };
}

async function withLoss<T>(lab: Lab, f: () => Promise<T>): Promise<T> {
  for (const h of lab.hosts) await lab.addLoss(h.index, LOSS);
  try {
    await sleep(2_000);
    return await f();
  } finally {
    for (const h of lab.hosts) await lab.clearLoss(h.index);
  }
}

async function gvDelivery(lab: Lab, cluster: GvCluster): Promise<Delivery> {
  return withLoss(lab, async () => {
    const { watchers, arrivals } = await watchAll(cluster);
    const submitters = await Promise.all(SUBMIT_HOSTS.map((h) => connect(cluster.fwds[h]!)));
    const since = Date.now() - 1;
    const { submitted, failures } = await paced(LOSS_MESSAGES, (k, slot) => submitters[slot]!.submit(text('loss', k)));
    const lastAck = max(submitted.map((s) => s.ackAt)) ?? now();
    const deadline = lastAck + LOSS_WINDOW_S * 1000;
    await sleepUntil(deadline + 50);
    const arrival = (id: string, i: number): number | undefined => {
      const t = arrivals.times(id)[i]!;
      return Number.isNaN(t) ? undefined : t;
    };
    const stores = cluster.dataDirs.map((d) => receivedTimes(d, since));
    // received_ms has 1 ms resolution: count a message received in the deadline's millisecond.
    const nodeSide = (id: string, i: number): number | undefined => stores[i]!.get(id)?.receivedMs;
    const figures = deliveryFigures(LOSS_MESSAGES, submitted, failures, Math.ceil(deadline), arrival, nodeSide);
    const ev = await waitEventually(submitted, arrival);
    watchers.forEach(closeClient);
    submitters.forEach(closeClient);
    return { ...figures, eventually: ev.count, eventualRatio: round(ev.count / (LOSS_MESSAGES * N), 6)!, eventualWaitS: ev.waitedS };
  });
}

// ---------------------------------------------------------------------------
// serf

async function startSerfCluster(lab: Lab): Promise<SerfAgent[]> {
  const script = writeUserEventHandlerScript(join(lab.tmpDir, 'serf-user-handler.sh'));
  const agents = lab.hosts.map((h) => startSerf(lab, h.index, `s${h.index}`, script, join(lab.tmpDir, `serf-h${h.index}.events`), { handlerEvents: 'user' }));
  if (!(await waitFor(() => agents.every((a) => a.fullAt(N) !== undefined), 60_000))) {
    throw new Error(`serf: only ${agents.filter((a) => a.fullAt(N) !== undefined).length}/${N} agents saw all ${N} members within 60 s`);
  }
  await sleep(3_000);
  return agents;
}

function serfEvent(lab: Lab, host: number, name: string, payload: string): Promise<string> {
  return lab.exec(host, ['serf', 'event', '-rpc-addr=127.0.0.1:7373', '-coalesce=false', name, payload], { timeoutMs: 20_000 });
}

interface SerfLatency {
  readonly messages: number;
  readonly submitFailures: number;
  /** The origin agent's log line → the last agent's log line (the headline figure). */
  readonly lastMs: Dist;
  /** The origin's log line → each other agent's, over all (event, agent) pairs. */
  readonly pairMs: Dist;
  /** Spawn of `serf event` → the last agent's log line. */
  readonly fromCliSpawnMs: Dist;
  /** Spawn of `serf event` → it exited (the RPC acknowledged). */
  readonly cliMs: Dist;
  /** Event handlers: the origin's `date +%s%N` → the last agent's. */
  readonly handlerLastMs: Dist;
  readonly samples: { k: number; host: number; lastMs: number | null; fromCliSpawnMs: number | null; handlerLastMs: number | null }[];
}

async function serfLatency(lab: Lab, agents: readonly SerfAgent[]): Promise<SerfLatency> {
  const samples: { k: number; host: number; name: string; lastMs: number | null; fromCliSpawnMs: number | null; cliMs: number }[] = [];
  let failures = 0;
  const pairs: (number | null)[] = [];
  for (let k = -WARMUP; k < SERF_MESSAGES; k++) {
    const slot = (k + WARMUP) % SUBMIT_HOSTS.length;
    const host = SUBMIT_HOSTS[slot]!;
    const name = k < 0 ? `warm${-k}` : `lat${k}`;
    const t0 = now();
    try {
      await serfEvent(lab, host, name, text(k < 0 ? 'warm' : 'lat', k));
    } catch (err) {
      failures += 1;
      say(`  serf event ${name} at host ${host} failed: ${(err as Error).message.split('\n')[0]}`);
      continue;
    }
    const cliMs = now() - t0;
    const all = await waitFor(() => agents.every((a) => a.userEvents.has(name)), ARRIVAL_TIMEOUT_MS, 2);
    const origin = agents[host]!.userEvents.get(name);
    const last = all ? max(agents.map((a) => a.userEvents.get(name)!)) : null;
    if (k >= 0) {
      samples.push({ k, host, name, lastMs: last !== null && origin !== undefined ? last - origin : null, fromCliSpawnMs: last !== null ? last - t0 : null, cliMs });
      agents.forEach((a, i) => {
        const t = a.userEvents.get(name);
        if (i !== host) pairs.push(t === undefined || origin === undefined ? null : t - origin);
      });
    }
    if (k >= 0 && (k + 1) % 100 === 0) say(`  serf latency: ${k + 1}/${SERF_MESSAGES}, p50 so far ${dist(samples.map((s) => s.lastMs)).p50} ms`);
    await sleep(GAP_MIN_MS + Math.random() * GAP_JITTER_MS);
  }
  await sleep(2_000); // handlers run after the log line, one at a time
  const handlers = agents.map((a) => a.userHandlerTimes());
  const handlerLast = samples.map((s) => {
    const ts = handlers.map((h) => h.get(s.name));
    const origin = ts[s.host];
    if (origin === undefined || ts.some((t) => t === undefined)) return null;
    return max(ts as number[])! - origin;
  });
  return {
    messages: SERF_MESSAGES,
    submitFailures: failures,
    lastMs: dist(samples.map((s) => s.lastMs), 1),
    pairMs: dist(pairs, 1),
    fromCliSpawnMs: dist(samples.map((s) => s.fromCliSpawnMs), 1),
    cliMs: dist(samples.map((s) => s.cliMs), 1),
    handlerLastMs: dist(handlerLast, 1),
    samples: samples.map((s, i) => ({ k: s.k, host: s.host, lastMs: s.lastMs, fromCliSpawnMs: round(s.fromCliSpawnMs, 1), handlerLastMs: round(handlerLast[i] ?? null, 1) })),
  };
}

async function serfDelivery(lab: Lab, agents: readonly SerfAgent[]): Promise<Delivery> {
  return withLoss(lab, async () => {
    const { submitted, failures } = await paced(LOSS_MESSAGES, async (k, slot) => {
      const name = `loss${k}`;
      await serfEvent(lab, SUBMIT_HOSTS[slot]!, name, text('loss', k));
      return name;
    });
    const lastAck = max(submitted.map((s) => s.ackAt)) ?? now();
    const deadline = lastAck + LOSS_WINDOW_S * 1000;
    await sleepUntil(deadline + 2_000); // handlers run after the log lines
    const arrival = (name: string, i: number): number | undefined => agents[i]!.userEvents.get(name);
    const handlers = agents.map((a) => a.userHandlerTimes());
    const figures = deliveryFigures(LOSS_MESSAGES, submitted, failures, deadline, arrival, (name, i) => handlers[i]!.get(name));
    const ev = await waitEventually(submitted, arrival);
    return { ...figures, eventually: ev.count, eventualRatio: round(ev.count / (LOSS_MESSAGES * N), 6)!, eventualWaitS: ev.waitedS };
  });
}

// ---------------------------------------------------------------------------
// Report

function fmtMs(x: number | null): string {
  if (x === null) return 'n/a';
  return `${x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)} ms`;
}

function fmtS(x: number | null): string {
  return x === null ? 'n/a' : `${x.toFixed(3)} s`;
}

function fmtRate(x: number | null): string {
  return x === null ? 'n/a' : `${Math.round(x).toLocaleString('en-US')} msg/s`;
}

function fmtPct(x: number | null): string {
  return x === null ? 'n/a' : `${(x * 100).toFixed(x === 1 ? 0 : 2)} %`;
}

function fmtX(x: number | null): string {
  return x === null ? 'n/a' : `${x.toFixed(1)}×`;
}

interface GvResult {
  /** The headline: probes in the hosts. */
  readonly latency: GvProbeLatency;
  /** The earlier instrument (null: BENCH_GOSSIP_RELAY_WATCH=off). */
  readonly relayWatch: GvLatency | null;
  readonly quiet: GvQuietLatency;
  /** The median of throughputRuns by rate. */
  readonly throughput: Throughput;
  readonly throughputRuns: Throughput[];
  /** The median of resyncRuns. */
  readonly resync: Resync;
  readonly resyncRuns: Resync[];
  readonly delivery: Delivery;
  readonly rssAfterMiB: (number | null)[];
}

interface SerfResult {
  readonly latency: SerfLatency;
  readonly delivery: Delivery;
}

function rows(gv: GvResult, sf: SerfResult | null): Row[] {
  const l = gv.latency;
  const speedup = sf && sf.latency.lastMs.p99 !== null && l.lastMs.p99 ? sf.latency.lastMs.p99 / l.lastMs.p99 : null;
  const speedup50 = sf && sf.latency.lastMs.p50 !== null && l.lastMs.p50 ? sf.latency.lastMs.p50 / l.lastMs.p50 : null;
  const rw = gv.relayWatch;
  const tp = gv.throughput;
  const rs = gv.resync;
  return [
    row(`latency submit → stored on all ${N}, p50 (${l.messages} msgs; serf ${sf?.latency.messages ?? 0})`, l.lastMs.p50, sf?.latency.lastMs.p50 ?? null, fmtMs),
    row(`latency submit → stored on all ${N}, p99`, l.lastMs.p99, sf?.latency.lastMs.p99 ?? null, fmtMs, { limit: GOALS.p99Ms, text: '<= 20 ms' }),
    row(`latency submit → stored on all ${N}, max`, l.lastMs.max, sf?.latency.lastMs.max ?? null, fmtMs),
    row(`latency submit → stored on one node, p50 over (message, node) pairs`, l.pairMs.p50, sf?.latency.pairMs.p50 ?? null, fmtMs),
    row(`latency submit → stored on one node, p99 over (message, node) pairs`, l.pairMs.p99, sf?.latency.pairMs.p99 ?? null, fmtMs),
    row(`  speed-up at p99 (serf p99 / grapevine p99)`, speedup, null, fmtX, { limit: GOALS.speedupP99, text: '>= 20×', atLeast: true }),
    row(`  speed-up at p50`, speedup50, null, fmtX),
    row(`  grapevine node-side, same messages (origin created_ms → last received_ms), p50`, l.nodeSideLastMs.p50, null, fmtMs),
    row(`  grapevine node-side, p99`, l.nodeSideLastMs.p99, null, fmtMs),
    row(`  grapevine without watches, node-side, p50 (every ${gv.quiet.spacingMs} ms)`, gv.quiet.nodeSideLastMs.p50, null, fmtMs),
    row(`  grapevine without watches, node-side, p99`, gv.quiet.nodeSideLastMs.p99, null, fmtMs),
    row(`  grapevine, earlier instrument (watches through the relay into the bench), p50`, rw?.lastMs.p50 ?? null, null, fmtMs),
    row(`  grapevine, earlier instrument, p99`, rw?.lastMs.p99 ?? null, null, fmtMs),
    row(`  grapevine, earlier instrument, node-side p99`, rw?.nodeSideLastMs.p99 ?? null, null, fmtMs),
    row(`  serf event handlers (date +%s%N, origin → last), p50`, null, sf?.latency.handlerLastMs.p50 ?? null, fmtMs),
    row(`  serf event handlers, p99`, null, sf?.latency.handlerLastMs.p99 ?? null, fmtMs),
    row(`  serf from the spawn of \`serf event\`, p99`, null, sf?.latency.fromCliSpawnMs.p99 ?? null, fmtMs),
    row(`sustained throughput, all ${N} storing (${tp.accepted} msgs, ${tp.clients} clients × ${tp.window} in flight), median of ${gv.throughputRuns.length}`, tp.perSecond, null, fmtRate, { limit: GOALS.throughputPerS, text: '>= 5,000 msg/s', atLeast: true }),
    row(`  best of ${gv.throughputRuns.length}`, max(present(gv.throughputRuns.map((t) => t.perSecond))), null, fmtRate, { limit: GOALS.throughputPerS, text: '>= 5,000 msg/s', atLeast: true }),
    row(`  node-side (last received_ms)`, tp.nodeSidePerSecond, null, fmtRate),
    row(`  acknowledged by the origins`, tp.ackedPerSecond, null, fmtRate),
    row(`re-sync of ${rs.missed} missed msgs ('node starting' → holds all), median of ${gv.resyncRuns.length}`, rs.fromNodeStartingS, null, fmtS, { limit: GOALS.resyncS, text: '< 2 s', strict: true }),
    row(`  worst of ${gv.resyncRuns.length}`, gv.resyncRuns.some((x) => x.fromNodeStartingS === null) ? null : max(gv.resyncRuns.map((x) => x.fromNodeStartingS!)), null, fmtS, { limit: GOALS.resyncS, text: '< 2 s', strict: true }),
    row(`  from the process spawn`, rs.fromSpawnS, null, fmtS),
    row(`  node-side (last received_ms − 'node starting')`, rs.nodeSideFromNodeStartingS, null, fmtS),
    row(`delivery within ${LOSS_WINDOW_S} s of the last submit, ${LOSS * 100} % loss (${gv.delivery.messages} msgs × ${N})`, gv.delivery.ratio, sf?.delivery.ratio ?? null, fmtPct, { limit: GOALS.delivery, text: '100 %', atLeast: true }),
    row(`  cross-check (grapevine: node-side received_ms; serf: handlers)`, gv.delivery.crossCheckRatio, sf?.delivery.crossCheckRatio ?? null, fmtPct),
    row(`  delivered eventually (up to ${EVENTUAL_S} s more)`, gv.delivery.eventualRatio, sf?.delivery.eventualRatio ?? null, fmtPct),
    row(`  submit → last node under loss, p99 (complete messages)`, gv.delivery.lastMs.p99, sf?.delivery.lastMs.p99 ?? null, fmtMs),
  ];
}

function sourceState(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.slice(3));
    return dirty.length === 0 ? `commit ${head}` : `commit ${head} with uncommitted changes in ${dirty.join(', ')}`;
  } catch {
    return 'unknown source state';
  }
}

function markdown(date: string, runMinutes: number, machine: MachineInfo, context: string, rs: readonly Row[], gv: GvResult, sf: SerfResult | null, jsonPath: string): string {
  const misses = rs.filter((r) => r.goal.includes('MISSED') || r.goal.includes('not measured')).map((r) => `- ${r.goal.includes('MISSED') ? 'MISSED' : 'NOT MEASURED'}: ${r.metric.trim()}: ${r.ours} (goal ${r.goal.replace(/ — .*/, '')})`);
  const l = gv.latency;
  const tp = gv.throughput;
  const rw = gv.relayWatch;
  const rs1 = gv.resync;
  const d = gv.delivery;
  const missing = (x: Dist): string => (x.missing > 0 ? ` (${x.missing} never complete within ${ARRIVAL_TIMEOUT_MS / 1000} s)` : '');
  return `## Gossip (issue 3)

\`npm run bench:gossip\` — ${date}, ${runMinutes.toFixed(1)} min. Machine: ${machine.nproc} CPUs (${machine.cpuModel}),
${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}, ${machine.serf}; ${context}.
16 hosts of the lab (network namespaces on one bridge): 16 \`grapevine node\` (dynamic overlay: ring + chord, degree 3,
defaults) and, afterwards, 16 \`serf agent\` (LAN profile, \`-discover\`, user events with \`-coalesce=false\`).
Messages / payloads of ${PAYLOAD_BYTES} bytes. Raw figures: \`${jsonPath}\`.

${mdTable(rs)}

${misses.length > 0 ? `Goals missed or not measured:\n${misses.join('\n')}` : 'Every goal of issue 3 was met in this run.'}

Details: grapevine latency (probes) p90 ${fmtMs(l.lastMs.p90)}, mean ${fmtMs(l.lastMs.mean)}${missing(l.lastMs)}; submit acknowledged by the origin
(no relay) p50 ${fmtMs(l.ackMs.p50)}, p99 ${fmtMs(l.ackMs.p99)}; the origin's own watch event p50 ${fmtMs(l.originEventMs.p50)}; first other node p50 ${fmtMs(l.firstOtherMs.p50)};
one hop (a node's stamp minus that of the node it got the message from) p50 ${fmtMs(l.hopMs.p50)}, p90 ${fmtMs(l.hopMs.p90)}, p99 ${fmtMs(l.hopMs.p99)};
hops on the last node's path p50 ${l.lastNodeHops.p50 ?? 'n/a'}, p99 ${l.lastNodeHops.p99 ?? 'n/a'}, max ${l.lastNodeHops.max ?? 'n/a'}; submit failures ${l.submitFailures}.${rw ? ` Earlier instrument in the same run: p50 ${fmtMs(rw.lastMs.p50)}, p90 ${fmtMs(rw.lastMs.p90)}, p99 ${fmtMs(rw.lastMs.p99)}${missing(rw.lastMs)}, node-side p50 ${fmtMs(rw.nodeSideLastMs.p50)},
p99 ${fmtMs(rw.nodeSideLastMs.p99)}; relay round trip p50 ${fmtMs(rw.relayRoundTripMs.p50)}; submit acknowledged through the relay p50 ${fmtMs(rw.ackMs.p50)}.` : ' The earlier instrument was not run (BENCH_GOSSIP_RELAY_WATCH=off).'}
CPU: with nothing submitted each node uses ${l.idleCpuPerNodePct ?? 'n/a'} % of a CPU (beacons); one message at a time costs the 16 nodes
${l.nodeCpuMsPerMessage ?? 'n/a'} CPU-ms per message on top with the probes' watches (the probes themselves ${l.probeCpuMsPerMessage ?? 'n/a'} CPU-ms, the bench
${l.benchCpuMsPerMessage} CPU-ms), ${gv.quiet.nodeCpuMsPerMessage ?? 'n/a'} without watches${rw ? `, ${rw.nodeCpuMsPerMessage ?? 'n/a'} with the relay watches (the bench ${rw.benchCpuMsPerMessage} CPU-ms and the ${N} relays ${rw.relayCpuMsPerMessage ?? 'n/a'} CPU-ms on top)` : ''}, against
${tp.nodeCpuMsPerMessage ?? 'n/a'} CPU-ms when messages come in bulk (throughput run): each hop of a lone message wakes a process (every copy a
node receives, ~2 per node, arrives on its own), and 16 processes share ${machine.nproc} CPUs, so a message's wave through the cluster is CPU-bound.
${sf ? `serf latency p90 ${fmtMs(sf.latency.lastMs.p90)}, mean ${fmtMs(sf.latency.lastMs.mean)}${missing(sf.latency.lastMs)}; \`serf event\` (process start + RPC) p50 ${fmtMs(sf.latency.cliMs.p50)}; from its spawn p50 ${fmtMs(sf.latency.fromCliSpawnMs.p50)}; failures ${sf.latency.submitFailures}.` : 'serf was not run (BENCH_GOSSIP_SERF=off).'}
Throughput runs: ${gv.throughputRuns.map((t) => `${fmtRate(t.perSecond)} (${t.nodeCpuMsPerMessage ?? 'n/a'} node CPU-ms/msg)`).join(', ')}. Median run: ${tp.accepted} of ${tp.messages} submits accepted, acknowledged after ${fmtS(tp.ackedS)}, all ${N} nodes held all after ${fmtS(tp.allStoredS)}
(per node: fastest ${fmtS(min(present(tp.perNodeS)))}, slowest ${fmtS(max(present(tp.perNodeS)))}); the 16 node processes used ${tp.nodeCpuS ?? 'n/a'} CPU-s
(${tp.nodeCpuMsPerMessage ?? 'n/a'} CPU-ms per message cluster-wide${tp.nodeCpuMsPerMessage ? `: ${machine.nproc} CPUs allow at most ~${Math.round((machine.nproc * 1000) / tp.nodeCpuMsPerMessage).toLocaleString('en-US')} msg/s at that cost` : ''}), the bench process ${tp.benchCpuS} CPU-s.
Re-sync runs ('node starting' → holds all; node-side; messages held when killed): ${gv.resyncRuns.map((x) => `${fmtS(x.fromNodeStartingS)} (${fmtS(x.nodeSideFromNodeStartingS)}; ${x.heldBefore})`).join(', ')}.
Median run: node ${rs1.victim} (host ${rs1.host}) held ${rs1.heldBefore} when killed; ${rs1.submitPhase.accepted} were submitted at the 15 others
(stored everywhere after ${fmtS(rs1.submitPhase.allStoredS)}, ${fmtRate(rs1.submitPhase.perSecond)}); after the restart: spawn → 'node starting'
${fmtS(rs1.spawnToStartingS)}, 'node starting' → 'gossip store open' ${fmtS(rs1.storeOpenS)}, → all ${rs1.target} held ${fmtS(rs1.fromNodeStartingS)} (polled every ${rs1.pollIntervalMs} ms).
Delivery under loss: grapevine ${d.withinWindow}/${d.messages * N} pairs within the window, ${d.messagesIncomplete} messages incomplete, ${d.submitFailures} submit failures;
eventually ${d.eventually}/${d.messages * N} (waited ${d.eventualWaitS} s).${sf ? ` serf ${sf.delivery.withinWindow}/${sf.delivery.messages * N} pairs within the window, ${sf.delivery.messagesIncomplete} events incomplete, ${sf.delivery.submitFailures} \`serf event\` failures; eventually ${sf.delivery.eventually}/${sf.delivery.messages * N} (waited ${sf.delivery.eventualWaitS} s).` : ''}
RSS of the grapevine nodes after all phases: median ${median(present(gv.rssAfterMiB))?.toFixed(1) ?? 'n/a'} MiB, max ${max(present(gv.rssAfterMiB))?.toFixed(1) ?? 'n/a'} MiB.

How it was measured:
- **Latency.** grapevine (the headline): ${l.messages} messages on a fixed schedule, one every ${l.spacingMs} ms, in turn at hosts
  ${SUBMIT_HOSTS.join(', ')}, after ${WARMUP} warm-up messages that are not counted. A probe process runs inside every host's namespace
  (bench/lib/gossip-probe.mjs, the compiled client, started with \`ip netns exec\` like the lab relay): it \`watch\`es its node
  over the host's own address (the node sends the event right after the SQLite group commit that stored the message) and
  stamps each event as soon as its frame is read (bytes decoded after the run) with CLOCK_MONOTONIC (\`process.hrtime.bigint()\`: one kernel clock shared by every namespace, ns
  resolution, never stepped). The probes run at niceness ${PROBE_NICE} so that, when a node and its probe are both runnable, the
  stamp waits less for a CPU (the probe's own work per event is one read and a push; its CPU is reported below). The probes at the submit hosts also submit, stamping just before \`submit\` with the same
  clock. The stamps stay in the probes and reach the bench in one piece after the run, so a watch event costs one wake-up
  of one small process and nothing else. Latency = the last of the 16 stamps minus the submit stamp; a message that never
  reaches all counts as slower than every other in the percentiles (nearest rank). The schedule is open-loop: it does not
  wait for a message to reach all before the next, so a stall of the machine delays every message due during it and each
  of them counts (waves overlap only when one takes longer than ${l.spacingMs} ms); the earlier instrument's closed loop sent
  nothing during a stall, which hides those messages from its percentiles. Why this changed (2026-11-22): the
  earlier instrument (still run, "earlier instrument" rows) \`watch\`ed all 16 nodes from the bench process through the
  lab relay (node → relay process in the host → unix socket → a 127.0.0.1 forward in the bench → the bench's client),
  submitted through the relay too, and waited for each message to reach all before the next (plus ${GAP_MIN_MS}–${GAP_MIN_MS + GAP_JITTER_MS} ms):
  every watch event cost two more process wake-ups, one of them in the single-threaded bench that handled all 16 streams,
  on the same ${machine.nproc} CPUs as the nodes, so the instrument inflated the very tail it measured. Node-side cross-check
  (no process of the bench involved): max over the 16 stores of received_ms (taken just before the commit) minus the
  origin's created_ms (wall clock, 1 ms resolution, shared by the namespaces). A second run of ${gv.quiet.messages} messages without any
  watch (one every ${gv.quiet.spacingMs} ms, submitted through the relay, each after the previous was acknowledged) is timed by the
  stores alone: the gap between its node-side figures and the probes' run is what 16 watch streams cost the nodes.
  serf: ${sf?.latency.messages ?? 0} user events, one at a time, each after the previous reached all ${N} agents (or ${ARRIVAL_TIMEOUT_MS / 1000} s
  passed) plus ${GAP_MIN_MS}–${GAP_MIN_MS + GAP_JITTER_MS} ms, ${WARMUP} warm-up events first: \`serf event -coalesce=false NAME PAYLOAD\` in the origin's host (\`ip netns exec\`); arrival = the agent's log line
  \`agent: Received event: user-event: NAME\` (its event loop logs it when serf hands the event over, before any handler),
  stamped on arrival in the bench (serf's own log times have 1 s resolution); the clock starts at the origin agent's own line,
  which leaves out the start of the \`serf event\` process (kept separately: "from the spawn"). Each agent also runs
  \`-event-handler user=SCRIPT\`, which appends \`date +%s%N\`, the name and the payload to a file per agent; serf runs handlers
  one at a time after the log line. No pacing beyond one event at a time was needed: serf's user-event limits are 512 bytes
  for name + payload (${PAYLOAD_BYTES}-byte payloads here) and a Lamport-time window of 512 recent events, which one-at-a-time
  sending never approaches.
- **Throughput.** ${gv.throughputRuns.length} runs, each of ${tp.messages} messages from ${tp.clients} clients (one per node at hosts ${tp.submitHosts.join(', ')}), each keeping
  ${tp.window} submits in flight; the rate is accepted messages ÷ (first submit → the moment every node answered
  \`status().messages\` >= the total; polled every 20 ms once all submits were acknowledged). Node-side: the last received_ms
  of the phase's messages over all stores. Node CPU = utime + stime of the 16 node processes from /proc over the run (a
  guest's CPU time also grows when the VM's host is busy, so it varies between runs).
- **Re-sync.** ${gv.resyncRuns.length} runs (before the throughput runs, so the stores are small): kill -9 of the node at host ${rs1.host}; once the 15 others marked it dead, ${rs1.submitPhase.messages} messages were
  submitted at the others (as in the throughput run) and stored everywhere; then the node was restarted with its data dir and
  \`status().messages\` polled through the relay every ${rs1.pollIntervalMs} ms until it held as many as the others. The headline starts
  at its 'node starting' log line (TCP port bound; the Node.js start-up before it is shown separately).
- **Delivery under loss.** iptables drops ${LOSS * 100} % of the packets in and out of every host's eth0 (both directions, every protocol;
  the bench's relays reach the nodes over each host's loopback, which is not affected). ${d.messages} messages per system at
  ${LOSS_RATE}/s, in turn at hosts ${SUBMIT_HOSTS.join(', ')}; a (message, node) pair counts when the node stored it by ${LOSS_WINDOW_S} s after the last
  submit was acknowledged (grapevine: watch arrival through the relay, as the earlier latency instrument — at 20 messages/s its cost does not matter for a 5 s window; serf: the agent's log line). "Eventually" waits up to ${EVENTUAL_S} s more.
  grapevine nodes run over TCP (a lost segment is retransmitted) with digest anti-entropy every 2 s; serf's user events are
  UDP gossip, retransmitted a bounded number of times, plus its 30 s push-pull.
`;
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const can = Lab.canRun();
  if (!can.ok) throw new Error(`the gossip bench needs the lab: ${can.reason}`);
  if (!existsSync(GRAPEVINE_JS)) throw new Error(`${GRAPEVINE_JS} is missing: run \`npm run build\` first`);
  const serfInfo = RUN_SERF ? ensureSerf(say) : { version: 'not run', debVersion: 'not run' };
  const machine = machineInfo(RUN_SERF ? `serf ${serfInfo.debVersion} (Debian package; \`serf version\`: ${serfInfo.version})` : 'serf not run');
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(' ');
  const source = sourceState();
  say(`machine: ${machine.nproc} CPUs, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}, ${machine.serf}; grapevine ${source}`);
  say(`building a ${N}-host lab`);
  const lab = await Lab.create({ hosts: N, prefix: 'gvbench' });
  /** Before each phase: other labs on the machine (concurrent tests share the 2 CPUs) and the 1-min load average. */
  const phases: { phase: string; otherLabs: number; load1: number; stealPctBefore: number | null }[] = [];
  const stealSince = stealMeter();
  const countOtherLabs = async (phase: string): Promise<void> => {
    const others = (await listNamespaces()).filter((ns) => ns.endsWith('-br') && !ns.startsWith(lab.run)).length;
    // The steal share is that of the stretch since the previous mark, i.e. of the phase just ended.
    phases.push({ phase, otherLabs: others, load1: round(loadavg()[0]!, 2)!, stealPctBefore: stealSince() });
    if (others > 0) say(`note: ${others} other lab(s) exist on this machine (concurrent tests share the CPUs)`);
    const steal = phases[phases.length - 1]!.stealPctBefore;
    if (steal !== null && steal >= 5) say(`note: the host stole ${steal.toFixed(1)} % of this machine's CPU time since the last mark (figures of that stretch are slowed)`);
  };
  let gv: GvResult;
  let sf: SerfResult | null = null;
  try {
    await countOtherLabs('start');
    say('grapevine: starting 16 nodes');
    const cluster = await startGvCluster(lab);
    say(`grapevine: latency over ${MESSAGES} messages`);
    const idleCpuPerS = await gvIdleCpuPerS(cluster);
    if (LATENCY_ONLY) {
      await latencyOnly(cluster, idleCpuPerS, lab, countOtherLabs);
      return;
    }
    let relayWatch: GvLatency | null = null;
    if (RELAY_WATCH) {
      await countOtherLabs('grapevine latency, relay watches');
      say(`grapevine: latency with the earlier instrument (16 watches through the lab relay into the bench), ${MESSAGES} messages`);
      relayWatch = await gvLatency(lab, cluster, idleCpuPerS);
      say(`grapevine latency (relay watches): p50 ${fmtMs(relayWatch.lastMs.p50)}, p99 ${fmtMs(relayWatch.lastMs.p99)} (node-side p50 ${fmtMs(relayWatch.nodeSideLastMs.p50)}, p99 ${fmtMs(relayWatch.nodeSideLastMs.p99)}); CPU-ms per message: nodes ${relayWatch.nodeCpuMsPerMessage}, relays ${relayWatch.relayCpuMsPerMessage}, bench ${relayWatch.benchCpuMsPerMessage}`);
    }
    await countOtherLabs('grapevine latency, probes');
    say(`grapevine: latency with a probe in every host, ${MESSAGES} messages every ${PROBE_SPACING_MS} ms`);
    const latency = await gvLatencyProbes(lab, cluster, idleCpuPerS);
    say(`grapevine latency (probes): p50 ${fmtMs(latency.lastMs.p50)}, p99 ${fmtMs(latency.lastMs.p99)} (node-side p50 ${fmtMs(latency.nodeSideLastMs.p50)}, p99 ${fmtMs(latency.nodeSideLastMs.p99)}); CPU-ms per message: nodes ${latency.nodeCpuMsPerMessage}, probes ${latency.probeCpuMsPerMessage}`);
    await countOtherLabs('grapevine latency, no watches');
    say(`grapevine: latency without watches (node-side timing), ${MESSAGES} messages every ${QUIET_SPACING_MS} ms`);
    const quiet = await gvLatencyQuiet(cluster, idleCpuPerS);
    say(`grapevine latency without watches: node-side p50 ${fmtMs(quiet.nodeSideLastMs.p50)}, p99 ${fmtMs(quiet.nodeSideLastMs.p99)}; ${quiet.nodeCpuMsPerMessage} CPU-ms per message cluster-wide`);
    await countOtherLabs('grapevine re-sync');
    const resyncRuns: Resync[] = [];
    for (let r = 1; r <= RESYNC_RUNS; r++) {
      say(`grapevine: re-sync run ${r}/${RESYNC_RUNS}, ${RESYNC_MESSAGES} missed messages`);
      const x = await gvResync(lab, cluster);
      resyncRuns.push(x);
      say(`grapevine re-sync: ${fmtS(x.fromNodeStartingS)} from 'node starting' (${fmtS(x.fromSpawnS)} from the spawn; node-side ${fmtS(x.nodeSideFromNodeStartingS)}); it held ${x.heldBefore}`);
    }
    // The median run (one that never completed counts as the slowest).
    const resync = [...resyncRuns].sort((a, b) => (a.fromNodeStartingS ?? Infinity) - (b.fromNodeStartingS ?? Infinity))[Math.floor(resyncRuns.length / 2)]!;
    await countOtherLabs('grapevine throughput');
    const throughputRuns: Throughput[] = [];
    for (let r = 1; r <= TP_RUNS; r++) {
      say(`grapevine: throughput run ${r}/${TP_RUNS}, ${TP_MESSAGES} messages from ${TP_HOSTS.length} clients × ${TP_WINDOW}`);
      const t = await gvThroughput(cluster, TP_MESSAGES, lab.hosts.map((h) => h.index), TP_HOSTS, `tp${r}`);
      throughputRuns.push(t);
      say(`grapevine throughput: ${fmtRate(t.perSecond)} (all stored after ${fmtS(t.allStoredS)}; acknowledged ${fmtRate(t.ackedPerSecond)}; node-side ${fmtRate(t.nodeSidePerSecond)}; ${t.nodeCpuMsPerMessage} node CPU-ms per message)`);
      say(`  counters ${JSON.stringify(t.counters)}; ack ms p50 ${t.ackMs?.p50} p99 ${t.ackMs?.p99}; bench CPU ${t.benchCpuS} s; per-node CPU-ms/msg ${JSON.stringify(t.perNodeCpuMsPerMessage)}`);
    }
    // The median run by rate (a run that never completed counts as the slowest).
    const throughput = [...throughputRuns].sort((a, b) => (a.perSecond ?? -1) - (b.perSecond ?? -1))[Math.floor(throughputRuns.length / 2)]!;
    await countOtherLabs('grapevine delivery');
    say(`grapevine: delivery with ${LOSS * 100} % loss, ${LOSS_MESSAGES} messages at ${LOSS_RATE}/s`);
    const delivery = await gvDelivery(lab, cluster);
    say(`grapevine delivery: ${fmtPct(delivery.ratio)} within ${LOSS_WINDOW_S} s (node-side ${fmtPct(delivery.crossCheckRatio)}), eventually ${fmtPct(delivery.eventualRatio)}`);
    const rssAfterMiB = await Promise.all(cluster.nodes.map((n) => rssMiB(n.pid)));
    gv = { latency, relayWatch, quiet, throughput, throughputRuns, resync, resyncRuns, delivery, rssAfterMiB: rssAfterMiB.map((r) => round(r, 1)) };
    for (const c of [...clients]) closeClient(c);
    await Promise.all(cluster.nodes.map((n) => lab.kill9(n.proc)));

    if (RUN_SERF) {
      await countOtherLabs('serf start');
      for (const h of lab.hosts) await enableMdns(lab, h.index);
      say('serf: starting 16 agents');
      const agents = await startSerfCluster(lab);
      say(`serf: latency over ${SERF_MESSAGES} user events`);
      const sLatency = await serfLatency(lab, agents);
      say(`serf latency: p50 ${fmtMs(sLatency.lastMs.p50)}, p99 ${fmtMs(sLatency.lastMs.p99)} (handlers p50 ${fmtMs(sLatency.handlerLastMs.p50)}, p99 ${fmtMs(sLatency.handlerLastMs.p99)})`);
      await countOtherLabs('serf delivery');
      say(`serf: delivery with ${LOSS * 100} % loss, ${LOSS_MESSAGES} user events at ${LOSS_RATE}/s`);
      const sDelivery = await serfDelivery(lab, agents);
      say(`serf delivery: ${fmtPct(sDelivery.ratio)} within ${LOSS_WINDOW_S} s (handlers ${fmtPct(sDelivery.crossCheckRatio)}), eventually ${fmtPct(sDelivery.eventualRatio)}`);
      // Under loss, iptables' OUTPUT drops make serf log 'sendto: operation not permitted': expected, not shown.
      for (const a of agents) {
        const other = a.errors.filter((e) => !e.includes('operation not permitted'));
        if (other.length > 0) say(`  serf ${a.name} logged errors, e.g. ${other[0]}`);
      }
      sf = { latency: sLatency, delivery: sDelivery };
      await Promise.all(agents.map((a) => lab.kill9(a.proc)));
    }
    await countOtherLabs('end');
  } finally {
    for (const c of [...clients]) closeClient(c);
    say('destroying the lab');
    await lab.destroy();
  }

  const runMinutes = (Date.now() - T0) / 60_000;
  const date = new Date().toISOString();
  const rs = rows(gv, sf);
  process.stdout.write(`\nGossip benchmark (issue 3), ${date}\n\n${textTable(rs)}\n\n`);

  const stamp = date.replace(/:/g, '').replace(/\.\d+Z$/, 'Z');
  const jsonRel = `bench/results/gossip-${stamp}.json`;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const raw = {
    bench: 'gossip',
    issue: 3,
    date,
    runMinutes: round(runMinutes, 2),
    machine,
    grapevineSource: source,
    serfVersionOutput: serfInfo.version,
    loadAverageAtStart: loadAtStart,
    phases,
    settings: {
      nodes: N,
      messages: MESSAGES,
      serfMessages: SERF_MESSAGES,
      warmup: WARMUP,
      gapMs: [GAP_MIN_MS, GAP_MIN_MS + GAP_JITTER_MS],
      submitHosts: SUBMIT_HOSTS,
      throughputMessages: TP_MESSAGES,
      throughputClients: TP_HOSTS.length,
      throughputWindow: TP_WINDOW,
      throughputRuns: TP_RUNS,
      throughputHosts: TP_HOSTS,
      resyncHost: RESYNC_HOST,
      resyncMessages: RESYNC_MESSAGES,
      resyncRuns: RESYNC_RUNS,
      loss: LOSS,
      lossMessages: LOSS_MESSAGES,
      lossRatePerS: LOSS_RATE,
      lossWindowS: LOSS_WINDOW_S,
      eventualS: EVENTUAL_S,
      payloadBytes: PAYLOAD_BYTES,
      quietSpacingMs: QUIET_SPACING_MS,
      probeSpacingMs: PROBE_SPACING_MS,
      probeNice: PROBE_NICE,
      relayWatch: RELAY_WATCH,
      serf: RUN_SERF,
    },
    goals: GOALS,
    grapevine: gv,
    serf: sf,
    table: rs,
  };
  writeFileSync(join(REPO, jsonRel), `${JSON.stringify(raw, null, 2)}\n`);
  const context = `grapevine ${source}; load average at the start ${loadAtStart}; before each phase (${phases.map((p) => p.phase).join(' / ')}): other labs ${phases.map((p) => p.otherLabs).join(' / ')}, 1-min load ${phases.map((p) => p.load1.toFixed(1)).join(' / ')} (16 busy nodes alone make ~16); host steal (CPU time the hypervisor gave to other machines) during each stretch between these marks: ${fmtSteal(phases.slice(1).map((p) => p.stealPctBefore))} %`;
  writeSection(RESULTS_MD, 'gossip', markdown(date, runMinutes, machine, context, rs, gv, sf, jsonRel));
  say(`wrote ${jsonRel} and bench/RESULTS.md`);
}

/** BENCH_GOSSIP_LATENCY_ONLY=on: the probe run PROBE_RUNS times, then the run without watches; printed, not written to RESULTS.md. */
async function latencyOnly(cluster: GvCluster, idleCpuPerS: number | null, lab: Lab, countOtherLabs: (phase: string) => Promise<void>): Promise<void> {
  const runs: GvProbeLatency[] = [];
  for (let r = 1; r <= PROBE_RUNS; r++) {
    await countOtherLabs(`probes ${r}`);
    const l = await gvLatencyProbes(lab, cluster, idleCpuPerS);
    runs.push(l);
    say(`probes ${r}/${PROBE_RUNS}: p50 ${fmtMs(l.lastMs.p50)}, p99 ${fmtMs(l.lastMs.p99)}, max ${fmtMs(l.lastMs.max)} (node-side p50 ${fmtMs(l.nodeSideLastMs.p50)}, p99 ${fmtMs(l.nodeSideLastMs.p99)}; hop p50 ${fmtMs(l.hopMs.p50)}, p99 ${fmtMs(l.hopMs.p99)}); CPU-ms per message: nodes ${l.nodeCpuMsPerMessage}, probes ${l.probeCpuMsPerMessage}; idle ${l.idleCpuPerNodePct} % per node; load1 ${loadavg()[0]!.toFixed(1)}`);
  }
  await countOtherLabs('no watches');
  const quiet = await gvLatencyQuiet(cluster, idleCpuPerS);
  say(`no watches: node-side p50 ${fmtMs(quiet.nodeSideLastMs.p50)}, p99 ${fmtMs(quiet.nodeSideLastMs.p99)}; nodes ${quiet.nodeCpuMsPerMessage} CPU-ms per message; load1 ${loadavg()[0]!.toFixed(1)}`);
  const p99s = runs.map((l) => l.lastMs.p99 ?? Infinity);
  say(`probe p99 median of ${runs.length}: ${fmtMs(median(p99s))}; node CPU-ms/msg median ${median(present(runs.map((l) => l.nodeCpuMsPerMessage)))}; probe CPU-ms/msg median ${median(present(runs.map((l) => l.probeCpuMsPerMessage)))}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/:/g, '').replace(/\.\d+Z$/, 'Z');
  writeFileSync(join(RESULTS_DIR, `gossip-latency-${stamp}.json`), `${JSON.stringify({ runs: runs.map((l) => ({ ...l, samples: undefined })), quiet }, null, 2)}\n`);
}

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
