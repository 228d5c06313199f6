/**
 * npm run bench:cache — the replicated cache's benchmark (DESIGN.md section 5).
 *
 * In one run, on one machine:
 *
 *  1. Throughput. 3 `grapevine node --resp` on 127.0.0.1 (one cluster file,
 *     full replication: every node holds every key) and two redis-servers
 *     (Debian's package and config: "default" = RDB snapshots, no AOF;
 *     "aof" = the same plus --appendonly yes --appendfsync everysec).
 *     `redis-benchmark -c 50 -r 100000 -t set|get --csv`, without and with
 *     `-P 16`, against grapevine node 1 (which replicates every SET to nodes
 *     2 and 3 while the run goes on) and against each redis-server, the
 *     systems alternating run by run, BENCH_CACHE_RUNS runs each; medians and
 *     ratios. Afterwards: do nodes 2 and 3 hold node 1's digest?
 *  2. Replication lag (bench/lib/cache-lag.ts): sequential SETs of fresh keys
 *     at node 1, nodes 2 and 3 polled with pipelined GETs; quietly and while a
 *     redis-benchmark SET load runs against node 1. Reference: the default
 *     redis-server with two replicas (`--replicaof`), measured the same way.
 *  3. Partition (lab: network namespaces): BENCH_CACHE_PARTITION_NODES nodes
 *     cut into two halves with iptables for >= 10 s while 100,000 SETs
 *     (`redis-benchmark -P 16`) land on one node per side, sharing part of
 *     the key space; heal; time until every node's INFO digest is equal;
 *     then every node's keys and values (SCAN + MGET) are compared.
 *
 * Prints a table, writes bench/results/cache-<date>.json and the `cache`
 * section of bench/RESULTS.md. Every process it starts is tracked and killed
 * by PID on the way out; the lab is destroyed on every exit path.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { fmtSteal, stealMeter } from './lib/steal.js';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { GRAPEVINE_JS } from '../test/helpers/lab-cluster.js';
import { Lab } from '../test/helpers/lab.js';
import { partition } from '../test/helpers/kv.js';
import { BACK_MSGS } from './lib/grapevine.js';
import { cacheInfo, startLabCluster, startLocalCluster, stopCluster, waitSameDigest } from './lib/cache-cluster.js';
import type { LabCacheNode, LocalCluster } from './lib/cache-cluster.js';
import { measureLag } from './lib/cache-lag.js';
import type { LagRun } from './lib/cache-lag.js';
import { summarizeProfile } from './lib/cache-prof.js';
import type { ProfileSummary } from './lib/cache-prof.js';
import { RespClient, dumpAll, info } from './lib/cache-resp.js';
import { rssMiB } from './lib/host-stats.js';
import { sleep } from './lib/lines.js';
import { machineInfo } from './lib/machine.js';
import type { MachineInfo } from './lib/machine.js';
import { freePort, killStarted, track } from './lib/procs.js';
import { RedisServer, benchmarkArgv, ensureRedis, runBenchmark } from './lib/redis.js';
import type { BenchmarkResult, RedisVersions } from './lib/redis.js';
import { writeSection } from './lib/results-md.js';
import { max, median, percentile, present, round } from './lib/stats.js';

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

const NODES = 3;
const RUNS = envInt('BENCH_CACHE_RUNS', 3, 1, 15);
/** Each measured redis-benchmark run is sized (from a pilot run) to last about this long. */
const TARGET_S = envInt('BENCH_CACHE_TARGET_S', 4, 1, 60);
const CLIENTS = envInt('BENCH_CACHE_CLIENTS', 50, 1, 1_000);
const PIPELINE = envInt('BENCH_CACHE_PIPELINE', 16, 2, 1_000);
const KEYSPACE = envInt('BENCH_CACHE_KEYSPACE', 100_000, 1);
const LAG_SAMPLES = envInt('BENCH_CACHE_LAG_SAMPLES', 1_000, 10);
const LAG_LOAD_SAMPLES = envInt('BENCH_CACHE_LAG_LOAD_SAMPLES', 1_000, 0);
const LAG_WINDOW = envInt('BENCH_CACHE_LAG_WINDOW', 4, 1, 64);
const LAG_RUNS = envInt('BENCH_CACHE_LAG_RUNS', 3, 1, 15);
/** Each run under load stops after this many seconds (or LAG_LOAD_SAMPLES samples). */
const LAG_LOAD_MAX_S = envInt('BENCH_CACHE_LAG_LOAD_MAX_S', 8, 1);
const LAG_WARMUP = 20;
const LAG_TIMEOUT_MS = 2_000;
const LAG_GAP_MS: [number, number] = [1, 3];
const PART_NODES = envInt('BENCH_CACHE_PARTITION_NODES', 4, 2, 16);
const PART_WRITES = envInt('BENCH_CACHE_PARTITION_WRITES', 100_000, 1);
const PART_S = envInt('BENCH_CACHE_PARTITION_S', 10, 1);
const PART_RUNS = envInt('BENCH_CACHE_PARTITION_RUNS', 3, 0, 9);
/** Side A writes keys 0..KEYS_A-1, side B 0..KEYS_B-1: the first KEYS_A are written on both sides. */
const PART_KEYS_A = envInt('BENCH_CACHE_PARTITION_KEYS_A', 50_000, 1);
const PART_KEYS_B = envInt('BENCH_CACHE_PARTITION_KEYS_B', 100_000, 1);
const PART_CONVERGE_TIMEOUT_S = envInt('BENCH_CACHE_CONVERGE_TIMEOUT_S', 120, 5);
/** Partition runs that would start after this many seconds of the whole bench are skipped (and reported so). */
const BUDGET_S = envInt('BENCH_CACHE_BUDGET_S', 540, 60);
const CPU_PROF = (process.env.BENCH_CACHE_CPU_PROF ?? '') === '1';
const LAB_GV_PORT = 7000;
const LAB_RESP_PORT = 6379;
const GOALS = { ratioPlain: 0.7, ratioPipelined: 0.4, lagP99Ms: 10, divergentKeys: 0 };

const T0 = Date.now();
function say(msg: string): void {
  process.stderr.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

const fmtRate = (x: number | null): string => (x === null ? 'n/a' : `${Math.round(x).toLocaleString('en-US')}/s`);
const fmtMs = (x: number | null, d = 2): string => (x === null ? 'n/a' : x === Infinity ? '∞' : `${x.toFixed(d)} ms`);
const fmtS = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(2)} s`);
const fmtX = (x: number | null): string => (x === null ? '—' : `${x.toFixed(2)}x`);

// ---------------------------------------------------------------------------
// systems under load

type SystemName = 'grapevine' | 'redis' | 'redis-aof';
type TestName = 'set' | 'get';

interface System {
  readonly name: SystemName;
  readonly port: number;
  /** Processes whose CPU counts for this system. */
  readonly pids: number[];
  readonly labels: string[];
}

interface TpRun extends BenchmarkResult {
  readonly system: SystemName;
  readonly test: TestName;
  readonly pipeline: number;
  readonly round: number;
  readonly requests: number;
  readonly load1: number;
  /** CPU seconds of the system's processes over the run, per process label. */
  readonly systemCpuS: Record<string, number | null>;
  /** CPU µs per request of all the system's processes together. */
  readonly cpuUsPerRequest: number | null;
  /** Per process label: the main thread's run-queue wait as a share of the run (CPU starvation). */
  readonly waitShareBy: Record<string, number | null>;
}

interface TpCell {
  readonly system: SystemName;
  readonly test: TestName;
  readonly pipeline: number;
  /** -n of each measured run, in run order. */
  readonly requests: number[];
  readonly runs: TpRun[];
  readonly medianRps: number | null;
  readonly medianP50Ms: number | null;
  readonly medianP99Ms: number | null;
  readonly medianCpuUsPerRequest: number | null;
  /** Median CPU µs per request of each process label. */
  readonly cpuUsPerRequestBy: Record<string, number | null>;
  /** Median share of the run the main thread of each process waited for a CPU while runnable. */
  readonly waitShareBy: Record<string, number | null>;
}

async function benchOnce(sys: System, test: TestName, pipeline: number, requests: number, round: number): Promise<TpRun> {
  const load1 = loadavg()[0]!;
  const r = await runBenchmark({ port: sys.port, test, requests, clients: CLIENTS, keyspace: KEYSPACE, pipeline, timeoutMs: 120_000 + requests, watchPids: sys.pids });
  const systemCpuS: Record<string, number | null> = {};
  const waitShareBy: Record<string, number | null> = {};
  sys.pids.forEach((p, i) => {
    systemCpuS[sys.labels[i]!] = r.cpuS[String(p)] ?? null;
    const w = r.sched[String(p)]?.waitS;
    waitShareBy[sys.labels[i]!] = w == null || r.wallS <= 0 ? null : round2(w / r.wallS);
  });
  const cpus = Object.values(systemCpuS);
  const total = cpus.every((c) => c !== null) ? cpus.reduce((a: number, b) => a + b!, 0) : null;
  return { ...r, system: sys.name, test, pipeline, round, requests, load1: round2(load1), systemCpuS, cpuUsPerRequest: total === null ? null : round2((total * 1e6) / requests), waitShareBy };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Pilot run → requests for ~TARGET_S seconds. */
function sizeFor(rps: number | null, pipeline: number): number {
  const lo = pipeline > 1 ? 20_000 : 5_000;
  if (rps === null || !(rps > 0)) return lo;
  return Math.min(5_000_000, Math.max(lo, Math.round((rps * TARGET_S) / 1_000) * 1_000));
}

async function prefill(c: RespClient, keyspace: number): Promise<void> {
  const chunk = 1_000;
  const cmds: string[][] = [];
  for (let k = 0; k < keyspace; k += chunk) {
    const cmd = ['MSET'];
    for (let j = k; j < Math.min(keyspace, k + chunk); j++) cmd.push(`key:${String(j).padStart(12, '0')}`, 'xxx');
    cmds.push(cmd);
  }
  for (let i = 0; i < cmds.length; i += 10) {
    const replies = await c.pipeline(cmds.slice(i, i + 10));
    const bad = replies.find((r) => r instanceof Error);
    if (bad) throw new Error(`${c.label}: prefill MSET failed: ${(bad as Error).message}`);
  }
}

interface Throughput {
  readonly cells: TpCell[];
  readonly pilots: TpRun[];
  readonly replication: {
    readonly sameDigest: boolean;
    readonly catchUpMs: number | null;
    readonly digests: string[];
    readonly keysHeld: number[];
    readonly nodeInfo: Record<string, string>[];
  };
  readonly prefillMs: Record<string, number>;
}

async function throughputPhase(systems: readonly System[], gvClients: RespClient[]): Promise<Throughput> {
  const configs: { test: TestName; pipeline: number }[] = [
    { test: 'set', pipeline: 1 },
    { test: 'get', pipeline: 1 },
    { test: 'set', pipeline: PIPELINE },
    { test: 'get', pipeline: PIPELINE },
  ];
  // Pilots (warm-up, and the size of the first measured run); not counted. Each
  // later run is sized from the median rate seen so far, so runs last ~TARGET_S
  // even when the first guess was off (a busy machine).
  const pilots: TpRun[] = [];
  const rates = new Map<string, number[]>();
  const seen = (key: string, r: TpRun): void => {
    if (r.ok && r.rps) rates.set(key, [...(rates.get(key) ?? []), r.rps]);
  };
  const sizeOf = (key: string, pipeline: number): number => sizeFor(median(rates.get(key) ?? []), pipeline);
  for (const cfg of configs) {
    for (const sys of systems) {
      const n = cfg.pipeline > 1 ? 20_000 : 5_000;
      const r = await benchOnce(sys, cfg.test, cfg.pipeline, n, -1);
      pilots.push(r);
      if (!r.ok) say(`  pilot ${sys.name} ${cfg.test} -P ${cfg.pipeline}: FAILED ${r.error}`);
      seen(`${sys.name}/${cfg.test}/${cfg.pipeline}`, r);
    }
  }
  say(`throughput: pilot runs done; first sizes: ${[...rates.keys()].map((k) => `${k} ${sizeOf(k, Number(k.split('/')[2]))}`).join(', ')}`);
  const runs: TpRun[] = [];
  for (let round = 0; round < RUNS; round++) {
    const order = systems.map((_, i) => systems[(i + round) % systems.length]!);
    for (const cfg of configs) {
      for (const sys of order) {
        const key = `${sys.name}/${cfg.test}/${cfg.pipeline}`;
        const r = await benchOnce(sys, cfg.test, cfg.pipeline, sizeOf(key, cfg.pipeline), round);
        runs.push(r);
        seen(key, r);
        say(`  run ${round + 1}/${RUNS} ${sys.name.padEnd(9)} ${cfg.test.toUpperCase()} -P ${String(cfg.pipeline).padEnd(2)}: ${r.ok ? fmtRate(r.rps) : `FAILED ${r.error}`} (p50 ${fmtMs(r.p50Ms, 3)}, p99 ${fmtMs(r.p99Ms, 3)}, ${r.wallS.toFixed(1)} s, ${r.cpuUsPerRequest ?? 'n/a'} CPU-µs/req, run-queue wait ${Object.values(r.waitShareBy).map((w) => (w === null ? 'n/a' : `${Math.round(w * 100)}%`)).join('/')}, load ${r.load1})`);
      }
    }
  }
  const cells: TpCell[] = [];
  for (const cfg of configs) {
    for (const sys of systems) {
      const rs = runs.filter((r) => r.system === sys.name && r.test === cfg.test && r.pipeline === cfg.pipeline);
      const ok = rs.filter((r) => r.ok);
      const by: Record<string, number | null> = {};
      const wait: Record<string, number | null> = {};
      for (const label of sys.labels) {
        by[label] = med(ok.map((r) => (r.systemCpuS[label] == null ? null : (r.systemCpuS[label]! * 1e6) / r.requests)));
        wait[label] = med(ok.map((r) => r.waitShareBy[label]));
      }
      cells.push({
        system: sys.name,
        test: cfg.test,
        pipeline: cfg.pipeline,
        requests: rs.map((r) => r.requests),
        runs: rs,
        // A failed run counts as 0/s (it did not deliver).
        medianRps: rs.length === 0 ? null : median(rs.map((r) => (r.ok ? r.rps! : 0))),
        medianP50Ms: med(ok.map((r) => r.p50Ms)),
        medianP99Ms: med(ok.map((r) => r.p99Ms)),
        medianCpuUsPerRequest: med(ok.map((r) => r.cpuUsPerRequest)),
        cpuUsPerRequestBy: by,
        waitShareBy: wait,
      });
    }
  }
  say('throughput: waiting for nodes 2 and 3 to hold node 1\'s digest');
  const w = await waitSameDigest(gvClients, 60_000, 20);
  const infos = w.infos;
  return {
    cells,
    pilots,
    replication: {
      sameDigest: w.ms !== null,
      catchUpMs: w.ms === null ? null : Math.round(w.ms),
      digests: infos.map((i) => i.digest),
      keysHeld: infos.map((i) => i.keys),
      nodeInfo: infos.map((i) => i.fields),
    },
    prefillMs: {},
  };
}

function med(xs: readonly (number | null | undefined)[]): number | null {
  const m = median(present(xs));
  return m === null ? null : round(m, 3);
}

// ---------------------------------------------------------------------------
// lag

interface LagDist {
  readonly samples: number;
  readonly missing: number;
  readonly p50Ms: number | null;
  readonly p90Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  readonly minMs: number | null;
}

type LagSystem = 'grapevine' | 'redis';
type LagCondition = 'quiet' | 'load';

interface LagResult {
  readonly system: LagSystem;
  readonly condition: LagCondition;
  readonly run: number;
  readonly window: number;
  readonly durationS: number;
  readonly setErrors: number;
  /** Per reader (node 2, node 3 / replica 1, replica 2), and the last of them. */
  readonly perReader: LagDist[];
  readonly last: LagDist;
  readonly resolutionMs: { p50: number | null; p99: number | null };
  readonly hitRttMs: { p50: number | null; p99: number | null };
  readonly setMs: { p50: number | null; p99: number | null };
  readonly load1: number;
  /** Under load: requests/s the primary handled over the sampling (its own counters), and the load's failure if any. */
  readonly loadRps?: number | null;
  readonly loadError?: string;
}

/** Medians over the runs of one system and condition. */
interface LagSet {
  readonly runs: LagResult[];
  readonly node2P50Ms: number | null;
  readonly node2P99Ms: number | null;
  readonly lastP50Ms: number | null;
  readonly lastP99Ms: number | null;
  readonly lastMaxMs: number | null;
  readonly resolutionP50Ms: number | null;
  readonly missing: number;
  readonly samples: number;
  readonly loadRps: number | null;
}

function dist(xs: readonly (number | null)[]): LagDist {
  // A sample that never arrived counts as slower than every other.
  const all = xs.map((x) => (x === null ? Infinity : x));
  const p = (q: number): number | null => {
    const v = percentile(all, q);
    return v === null ? null : v === Infinity ? Infinity : round(v, 3);
  };
  const finite = present(xs);
  return { samples: xs.length, missing: xs.filter((x) => x === null).length, p50Ms: p(50), p90Ms: p(90), p99Ms: p(99), maxMs: p(100), minMs: finite.length ? round(Math.min(...finite), 3) : null };
}

function summarizeLag(system: LagSystem, condition: LagCondition, runNo: number, run: LagRun, skip: number, load1: number): LagResult {
  const ss = run.samples.slice(skip);
  const readers = ss[0]?.lagMs.length ?? 0;
  const perReader = Array.from({ length: readers }, (_, i) => dist(ss.map((s) => s.lagMs[i] ?? null)));
  const last = dist(ss.map((s) => (s.lagMs.some((x) => x === null) ? null : Math.max(...(s.lagMs as number[])))));
  const q = (xs: (number | null)[], p: number): number | null => {
    const v = percentile(present(xs), p);
    return v === null ? null : round(v, 3);
  };
  const res = ss.flatMap((s) => s.resolutionMs);
  const rtt = ss.flatMap((s) => s.hitRttMs);
  const set = ss.map((s) => s.setMs);
  return {
    system,
    condition,
    run: runNo,
    window: LAG_WINDOW,
    durationS: round(run.durationMs / 1000, 2)!,
    setErrors: run.setErrors,
    perReader,
    last,
    resolutionMs: { p50: q(res, 50), p99: q(res, 99) },
    hitRttMs: { p50: q(rtt, 50), p99: q(rtt, 99) },
    setMs: { p50: q(set, 50), p99: q(set, 99) },
    load1: round(load1, 2)!,
  };
}

function lagSet(runs: LagResult[]): LagSet {
  // Infinity (a sample that never arrived) sorts last; the median stays honest.
  const m = (xs: (number | null | undefined)[]): number | null => {
    const v = median(xs.filter((x): x is number => typeof x === 'number'));
    return v === null ? null : v === Infinity ? Infinity : round(v, 3);
  };
  return {
    runs,
    node2P50Ms: m(runs.map((r) => r.perReader[0]?.p50Ms)),
    node2P99Ms: m(runs.map((r) => r.perReader[0]?.p99Ms)),
    lastP50Ms: m(runs.map((r) => r.last.p50Ms)),
    lastP99Ms: m(runs.map((r) => r.last.p99Ms)),
    lastMaxMs: m(runs.map((r) => r.last.maxMs)),
    resolutionP50Ms: m(runs.map((r) => r.resolutionMs.p50)),
    missing: runs.reduce((a, r) => a + r.last.missing, 0),
    samples: runs.reduce((a, r) => a + r.last.samples, 0),
    loadRps: m(runs.map((r) => r.loadRps)),
  };
}

interface LagTarget {
  readonly system: LagSystem;
  readonly port: number;
  readonly writer: RespClient;
  readonly readers: RespClient[];
  /** A counter of requests the primary handled (for the load's rate). */
  readonly counter: () => Promise<number>;
}

async function lagRun(t: LagTarget, condition: LagCondition, runNo: number): Promise<LagResult> {
  const tag = `${condition}${runNo}`;
  const opts = (samples: number, maxDurationMs: number) => ({
    samples: samples + LAG_WARMUP,
    window: LAG_WINDOW,
    timeoutMs: LAG_TIMEOUT_MS,
    keyPrefix: `lag:${t.system}:${tag}:${process.pid}`,
    gapMs: LAG_GAP_MS,
    maxDurationMs,
  });
  const load1 = loadavg()[0]!;
  if (condition === 'quiet') return summarizeLag(t.system, condition, runNo, await measureLag(t.writer, t.readers, opts(LAG_SAMPLES, 60_000)), LAG_WARMUP, load1);
  // Under load: redis-benchmark SETs (no pipelining) against the primary while sampling.
  const argv = benchmarkArgv({ port: t.port, test: 'set', requests: 50_000_000, clients: CLIENTS, keyspace: KEYSPACE, timeoutMs: 0 });
  const proc = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await sleep(1_000);
    const c0 = await t.counter();
    const t0 = performance.now();
    const run = await measureLag(t.writer, t.readers, opts(LAG_LOAD_SAMPLES, LAG_LOAD_MAX_S * 1000));
    const c1 = await t.counter();
    const loadRps = Math.round((c1 - c0) / ((performance.now() - t0) / 1000));
    const exited = proc.exitCode !== null || proc.signalCode !== null;
    return { ...summarizeLag(t.system, condition, runNo, run, LAG_WARMUP, load1), loadRps, ...(exited ? { loadError: `the load stopped early: ${err.trim().slice(0, 200)}` } : {}) };
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
}

function sayLag(r: LagResult): void {
  say(
    `  lag ${r.system.padEnd(9)} ${r.condition} run ${r.run}: node 2 p50 ${fmtMs(r.perReader[0]?.p50Ms ?? null, 3)}, p99 ${fmtMs(r.perReader[0]?.p99Ms ?? null, 3)}; last p50 ${fmtMs(r.last.p50Ms, 3)}, p99 ${fmtMs(r.last.p99Ms, 3)}, max ${fmtMs(r.last.maxMs, 3)}; ${r.last.samples} samples (${r.last.missing} missing) in ${r.durationS} s; resolution p50 ${fmtMs(r.resolutionMs.p50, 3)}${r.loadRps !== undefined ? `; load ${fmtRate(r.loadRps)}` : ''}${r.loadError ? ` (${r.loadError})` : ''}; load avg ${r.load1}`,
  );
}

interface LagPhase {
  readonly gvQuiet: LagSet;
  readonly gvLoad: LagSet | null;
  readonly redisQuiet: LagSet | null;
  readonly redisLoad: LagSet | null;
  readonly redisReplicas: number;
}

/**
 * LAG_RUNS runs per system and condition, grapevine and redis alternating
 * (the order flips every run). Reference: the Debian-defaults redis-server
 * with two replicas started for this phase (`--replicaof`, Debian config).
 */
async function lagPhase(gv: LagTarget, primary: RedisServer, dir: string, skipped: string[]): Promise<LagPhase> {
  const replicas: RedisServer[] = [];
  const clients: RespClient[] = [];
  let redis: LagTarget | null = null;
  try {
    try {
      for (let i = 0; i < 2; i++) replicas.push(await RedisServer.start(`redis replica ${i + 1}`, await freePort(), join(dir, `replica${i + 1}`), ['--replicaof', '127.0.0.1', String(primary.port)]));
      const deadline = Date.now() + 60_000;
      for (const r of replicas) {
        const c = await RespClient.open('127.0.0.1', r.port, `${r.name} reader`);
        clients.push(c);
        for (;;) {
          const m = await info(c, 'replication');
          if (m.get('master_link_status') === 'up' && m.get('master_sync_in_progress') === '0') break;
          if (Date.now() > deadline) throw new Error(`${r.name} did not sync with the primary within 60 s`);
          await sleep(100);
        }
      }
      const writer = await RespClient.open('127.0.0.1', primary.port, 'redis primary writer');
      const stats = await RespClient.open('127.0.0.1', primary.port, 'redis primary stats');
      clients.push(writer, stats);
      redis = { system: 'redis', port: primary.port, writer, readers: clients.slice(0, 2), counter: async () => Number((await info(stats, 'stats')).get('total_commands_processed')) };
    } catch (err) {
      skipped.push(`the redis replica reference for the lag (${(err as Error).message})`);
      say(`lag: no redis replicas: ${(err as Error).message}`);
    }
    const runs: LagResult[] = [];
    for (const condition of LAG_LOAD_SAMPLES > 0 ? (['quiet', 'load'] as const) : (['quiet'] as const)) {
      for (let run = 1; run <= LAG_RUNS; run++) {
        const order = [gv, ...(redis ? [redis] : [])];
        if (run % 2 === 0) order.reverse();
        for (const t of order) {
          const r = await lagRun(t, condition, run);
          runs.push(r);
          sayLag(r);
        }
      }
    }
    const pick = (s: LagSystem, c: LagCondition): LagSet | null => {
      const rs = runs.filter((r) => r.system === s && r.condition === c);
      return rs.length ? lagSet(rs) : null;
    };
    return { gvQuiet: pick('grapevine', 'quiet')!, gvLoad: pick('grapevine', 'load'), redisQuiet: pick('redis', 'quiet'), redisLoad: pick('redis', 'load'), redisReplicas: replicas.length };
  } finally {
    for (const c of clients) c.close();
    await Promise.all(replicas.map((r) => r.stop(5_000)));
  }
}

function freeLocalPort(): Promise<number> {
  return freePort();
}

// ---------------------------------------------------------------------------
// partition

interface PartitionRun {
  readonly run: number;
  readonly sides: [number[], number[]];
  readonly writes: { side: string; host: number; ok: boolean; error?: string; rps: number | null; wallS: number; keyspace: number; value: string }[];
  /** Cut → heal, seconds (>= BENCH_CACHE_PARTITION_S; longer when the writes took longer). */
  readonly partitionS: number;
  /** Keys written this run on side A / side B / both (counted from one node per side before the heal). */
  readonly writtenA: number | null;
  readonly writtenB: number | null;
  readonly conflicting: number | null;
  /** Heal → every node's INFO digest equal (and nothing pending); null: not within the timeout. */
  readonly convergeS: number | null;
  /** Heal → every node logged every other side's member alive again (node logs). */
  readonly membershipS: number | null;
  /** Event-loop stalls the nodes logged (> 2 beacon intervals): while the sides were apart, and from the heal until converged. */
  readonly stallsApart: { count: number; maxMs: number | null };
  readonly stallsAfterHeal: { count: number; maxMs: number | null };
  /** 'member suspect' / 'member dead' lines from the heal until converged (nobody was down). */
  readonly suspectsAfterHeal: number;
  readonly deadsAfterHeal: number;
  readonly digestPolls: number;
  /** How long the slowest node took to answer INFO, per poll during the convergence: median and max (ms). */
  readonly infoAnswerMs: { p50: number | null; max: number | null };
  readonly keysPerNode: number[];
  readonly divergentKeys: number;
  readonly divergentExamples: string[];
  /** Keys written on both sides that ended up with side A's / side B's value (everywhere). */
  readonly conflictWinners: { a: number; b: number } | null;
}

async function partitionPhase(lab: Lab, nodes: LabCacheNode[], budgetEndMs: number, skipped: string[]): Promise<PartitionRun[]> {
  const clients = await Promise.all(nodes.map((n) => RespClient.openRetry('127.0.0.1', n.respPort, `lab ${n.id}`, 10_000)));
  const half = Math.floor(nodes.length / 2);
  const sideA = nodes.slice(0, half).map((n) => n.hostIndex);
  const sideB = nodes.slice(half).map((n) => n.hostIndex);
  const runs: PartitionRun[] = [];
  try {
    for (let run = 1; run <= PART_RUNS; run++) {
      if (Date.now() > budgetEndMs && runs.length > 0) {
        skipped.push(`partition runs ${run}..${PART_RUNS} (the time budget of ${BUDGET_S} s was used up)`);
        break;
      }
      const pre = await waitSameDigest(clients, 60_000);
      if (pre.ms === null) say(`partition run ${run}: the nodes did not agree before the cut (${pre.infos.map((i) => i.digest).join(' ')})`);
      say(`partition run ${run}/${PART_RUNS}: cutting hosts ${sideA.join(',')} | ${sideB.join(',')} apart; ${PART_WRITES} SETs -P ${PIPELINE} on hosts ${sideA[0]} and ${sideB[0]}`);
      const cut = await partition(lab, sideA, sideB);
      const cutAt = performance.now();
      const cutWall = Date.now();
      let healed = false;
      try {
        const valueA = `A${run}-${process.pid}`;
        const valueB = `B${run}-${process.pid}`;
        const load = (host: number, keyspace: number, value: string) =>
          runBenchmark({
            host: lab.host(host).ip,
            port: LAB_RESP_PORT,
            test: ['SET', 'key:__rand_int__', value],
            requests: PART_WRITES,
            clients: CLIENTS,
            keyspace,
            pipeline: PIPELINE,
            timeoutMs: 300_000,
            spawnArgv: (argv) => lab.spawn(host, argv, { stdio: ['ignore', 'pipe', 'pipe'] }),
          });
        const [ra, rb] = await Promise.all([load(sideA[0]!, PART_KEYS_A, valueA), load(sideB[0]!, PART_KEYS_B, valueB)]);
        const writes = [
          { side: 'A', host: sideA[0]!, ok: ra.ok, ...(ra.error ? { error: ra.error } : {}), rps: ra.rps, wallS: ra.wallS, keyspace: PART_KEYS_A, value: valueA },
          { side: 'B', host: sideB[0]!, ok: rb.ok, ...(rb.error ? { error: rb.error } : {}), rps: rb.rps, wallS: rb.wallS, keyspace: PART_KEYS_B, value: valueB },
        ];
        say(`  writes done after ${((performance.now() - cutAt) / 1000).toFixed(1)} s: side A ${ra.ok ? fmtRate(ra.rps) : `FAILED ${ra.error}`}, side B ${rb.ok ? fmtRate(rb.rps) : `FAILED ${rb.error}`}`);
        // What each side wrote, from one node per side (after its side settled, before the heal).
        const ia = nodes.findIndex((n) => n.hostIndex === sideA[0]);
        const ib = nodes.findIndex((n) => n.hostIndex === sideB[0]);
        const [da, db] = await Promise.all([dumpAll(clients[ia]!), dumpAll(clients[ib]!)]);
        const onA = new Set([...da].filter(([, v]) => v === valueA).map(([k]) => k));
        const onB = new Set([...db].filter(([, v]) => v === valueB).map(([k]) => k));
        const both = new Set([...onA].filter((k) => onB.has(k)));
        const waitMs = PART_S * 1000 - (performance.now() - cutAt);
        if (waitMs > 0) await sleep(waitMs);
        await cut.heal();
        healed = true;
        const healAt = performance.now();
        const healWall = Date.now();
        const partitionS = (healAt - cutAt) / 1000;
        say(`  healed after ${partitionS.toFixed(1)} s (${onA.size} keys written on A, ${onB.size} on B, ${both.size} on both); waiting for equal digests`);
        const conv = await waitSameDigest(clients, PART_CONVERGE_TIMEOUT_S * 1000, 50);
        const convergeS = conv.ms === null ? null : conv.ms / 1000;
        const membershipS = membershipBack(nodes, sideA, sideB, healWall);
        const convergedWall = Date.now();
        const stalls = (from: number, to: number): { count: number; maxMs: number | null } => {
          const xs = nodes.flatMap((n) => n.gv.records.filter((x) => x.stalledMs !== undefined && x.time >= from && x.time <= to).map((x) => x.stalledMs!));
          return { count: xs.length, maxMs: max(xs) };
        };
        const countMsg = (msg: string): number => nodes.reduce((a, n) => a + n.gv.between(msg, healWall, convergedWall).length, 0);
        // Every node's contents, compared.
        const dumps = await Promise.all(clients.map((c) => dumpAll(c)));
        const { divergent, examples } = compareDumps(dumps, nodes.map((n) => n.id));
        let winners: { a: number; b: number } | null = null;
        if (divergent === 0) {
          winners = { a: 0, b: 0 };
          for (const k of both) {
            const v = dumps[0]!.get(k);
            if (v === valueA) winners.a += 1;
            else if (v === valueB) winners.b += 1;
          }
        }
        const r: PartitionRun = {
          run,
          sides: [sideA, sideB],
          writes,
          partitionS: round(partitionS, 2)!,
          writtenA: onA.size,
          writtenB: onB.size,
          conflicting: both.size,
          convergeS: convergeS === null ? null : round(convergeS, 3),
          membershipS: membershipS === null ? null : round(membershipS, 3),
          stallsApart: stalls(cutWall, healWall),
          stallsAfterHeal: stalls(healWall, convergedWall),
          suspectsAfterHeal: countMsg('member suspect'),
          deadsAfterHeal: countMsg('member dead'),
          digestPolls: conv.polls,
          infoAnswerMs: { p50: median(conv.pollMs), max: max(conv.pollMs) },
          keysPerNode: dumps.map((d) => d.size),
          divergentKeys: divergent,
          divergentExamples: examples,
          conflictWinners: winners,
        };
        runs.push(r);
        say(`  converged ${fmtS(r.convergeS)} after the heal (${r.digestPolls} INFO polls, slowest answer per poll p50 ${fmtMs(r.infoAnswerMs.p50, 0)}, max ${fmtMs(r.infoAnswerMs.max, 0)}; event-loop stalls logged after the heal ${r.stallsAfterHeal.count}, max ${fmtMs(r.stallsAfterHeal.maxMs, 0)}; suspect/dead lines ${r.suspectsAfterHeal}/${r.deadsAfterHeal}; membership back ${fmtS(r.membershipS)}); divergent keys ${divergent}; keys per node ${r.keysPerNode.join(', ')}${winners ? `; of the ${both.size} conflicting keys A won ${winners.a}, B won ${winners.b}` : ''}`);
      } finally {
        if (!healed) await cut.heal().catch(() => undefined);
      }
    }
  } finally {
    for (const c of clients) c.close();
  }
  return runs;
}

/** Seconds from the heal until every node logged each member of the other side back (joined/restarted/recovered), from the nodes' own log times. */
function membershipBack(nodes: readonly LabCacheNode[], sideA: readonly number[], sideB: readonly number[], healWall: number): number | null {
  let latest = healWall;
  for (const n of nodes) {
    const others = (sideA.includes(n.hostIndex) ? sideB : sideA).map((h) => nodes.find((x) => x.hostIndex === h)!.id);
    for (const m of others) {
      const t = n.gv.firstAbout(BACK_MSGS, m, healWall - 500);
      if (t === undefined) return null;
      latest = Math.max(latest, t);
    }
  }
  return (latest - healWall) / 1000;
}

function compareDumps(dumps: readonly Map<string, string | null>[], ids: readonly string[]): { divergent: number; examples: string[] } {
  const keys = new Set<string>();
  for (const d of dumps) for (const k of d.keys()) keys.add(k);
  let divergent = 0;
  const examples: string[] = [];
  for (const k of keys) {
    const vs = dumps.map((d) => d.get(k));
    if (vs.every((v) => v === vs[0])) continue;
    divergent += 1;
    if (examples.length < 5) examples.push(`${k}: ${vs.map((v, i) => `${ids[i]}=${v === undefined ? '(absent)' : JSON.stringify(v)}`).join(' ')}`);
  }
  return { divergent, examples };
}

// ---------------------------------------------------------------------------
// report

interface Row {
  readonly metric: string;
  readonly ours: string;
  readonly ref: string;
  readonly ratio: string;
  readonly ref2: string;
  readonly ratio2: string;
  readonly goal: string;
}

function goalText(met: boolean | null, text: string): string {
  return `${text}${met === null ? ' — not measured' : met ? ' — met' : ' — MISSED'}`;
}

function ratioOf(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 || !Number.isFinite(a) || !Number.isFinite(b) ? null : a / b;
}

interface Results {
  readonly tp: Throughput;
  readonly lag: LagPhase;
  readonly partition: PartitionRun[];
  readonly partitionSkipped: string | null;
}

function rowsOf(r: Results): Row[] {
  const rows: Row[] = [];
  const cell = (s: SystemName, t: TestName, p: number) => r.tp.cells.find((c) => c.system === s && c.test === t && c.pipeline === p)!;
  for (const p of [1, PIPELINE]) {
    for (const t of ['set', 'get'] as const) {
      const g = cell('grapevine', t, p).medianRps;
      const rd = cell('redis', t, p).medianRps;
      const ra = cell('redis-aof', t, p).medianRps;
      const q = ratioOf(g, rd);
      const limit = p === 1 ? GOALS.ratioPlain : GOALS.ratioPipelined;
      rows.push({
        metric: `${t.toUpperCase()}/s -c ${CLIENTS}${p > 1 ? ` -P ${p}` : ''}, median of ${RUNS}`,
        ours: fmtRate(g),
        ref: fmtRate(rd),
        ratio: fmtX(q),
        ref2: fmtRate(ra),
        ratio2: fmtX(ratioOf(g, ra)),
        goal: goalText(q === null ? null : q >= limit, `>= ${limit}x redis`),
      });
    }
  }
  for (const p of [1, PIPELINE]) {
    for (const t of ['set', 'get'] as const) {
      const g = cell('grapevine', t, p).medianP99Ms;
      const rd = cell('redis', t, p).medianP99Ms;
      const ra = cell('redis-aof', t, p).medianP99Ms;
      rows.push({ metric: `${t.toUpperCase()} p99 latency${p > 1 ? ` -P ${p}` : ''} (redis-benchmark), median`, ours: fmtMs(g, 3), ref: fmtMs(rd, 3), ratio: fmtX(ratioOf(g, rd)), ref2: fmtMs(ra, 3), ratio2: fmtX(ratioOf(g, ra)), goal: '' });
    }
  }
  for (const p of [1, PIPELINE]) {
    for (const t of ['set', 'get'] as const) {
      const g = cell('grapevine', t, p).medianCpuUsPerRequest;
      const rd = cell('redis', t, p).medianCpuUsPerRequest;
      const ra = cell('redis-aof', t, p).medianCpuUsPerRequest;
      const f = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(1)} µs`);
      rows.push({ metric: `${t.toUpperCase()} CPU per request${p > 1 ? ` -P ${p}` : ''} (grapevine: 3 nodes), median`, ours: f(g), ref: f(rd), ratio: fmtX(ratioOf(g, rd)), ref2: f(ra), ratio2: fmtX(ratioOf(g, ra)), goal: '' });
    }
  }
  const rep = r.tp.replication;
  rows.push({ metric: 'nodes 2, 3 hold node 1\'s digest after the runs', ours: rep.sameDigest ? `yes (${fmtMs(rep.catchUpMs, 0)})` : 'NO', ref: '—', ratio: '—', ref2: '—', ratio2: '—', goal: '' });
  const lagRows = (label: string, g: LagSet | null, rd: LagSet | null, goal: boolean): void => {
    if (!g) return;
    const add = (metric: string, a: number | null, b: number | null, withGoal: boolean): void => {
      rows.push({ metric, ours: fmtMs(a, 3), ref: fmtMs(b, 3), ratio: fmtX(a !== null && b !== null && a > 0 && b > 0 ? ratioOf(a, b) : null), ref2: '—', ratio2: '—', goal: withGoal ? goalText(a === null ? null : a <= GOALS.lagP99Ms, `<= ${GOALS.lagP99Ms} ms`) : '' });
    };
    const n = `median of ${g.runs.length}`;
    add(`lag ${label}: node 2 p50, ${n}`, g.node2P50Ms, rd?.node2P50Ms ?? null, false);
    add(`lag ${label}: node 2 p99, ${n}`, g.node2P99Ms, rd?.node2P99Ms ?? null, false);
    add(`lag ${label}: last of nodes 2, 3 p50, ${n}`, g.lastP50Ms, rd?.lastP50Ms ?? null, false);
    add(`lag ${label}: last of nodes 2, 3 p99, ${n}`, g.lastP99Ms, rd?.lastP99Ms ?? null, goal);
    add(`lag ${label}: last of nodes 2, 3 max, ${n}`, g.lastMaxMs, rd?.lastMaxMs ?? null, false);
  };
  lagRows('(quiet)', r.lag.gvQuiet, r.lag.redisQuiet, true);
  lagRows('(under a SET load)', r.lag.gvLoad, r.lag.redisLoad, false);
  const pr = r.partition;
  const conv = pr.map((x) => (x.convergeS === null ? Infinity : x.convergeS));
  const mConv = median(conv);
  rows.push({ metric: `converge after a ${PART_S} s+ partition (heal → equal digests), median of ${pr.length}`, ours: pr.length ? (mConv === Infinity ? 'never' : fmtS(mConv)) : 'n/a', ref: 'n/a', ratio: '—', ref2: 'n/a', ratio2: '—', goal: '' });
  rows.push({ metric: 'converge after the partition, worst run', ours: pr.length ? (max(conv) === Infinity ? 'never' : fmtS(max(conv))) : 'n/a', ref: 'n/a', ratio: '—', ref2: 'n/a', ratio2: '—', goal: '' });
  rows.push({ metric: 'longest event-loop stall a node logged, heal → converged, worst run', ours: pr.length ? fmtMs(max(present(pr.map((x) => x.stallsAfterHeal.maxMs))) ?? 0, 0) : 'n/a', ref: 'n/a', ratio: '—', ref2: 'n/a', ratio2: '—', goal: '' });
  rows.push({ metric: "'member dead' lines after the heal (nobody was down), all runs", ours: pr.length ? String(pr.reduce((a, x) => a + x.deadsAfterHeal, 0)) : 'n/a', ref: 'n/a', ratio: '—', ref2: 'n/a', ratio2: '—', goal: '' });
  const div = pr.map((x) => x.divergentKeys);
  rows.push({ metric: 'divergent keys after the heal, worst run', ours: pr.length ? String(max(div)) : 'n/a', ref: 'n/a', ratio: '—', ref2: 'n/a', ratio2: '—', goal: goalText(pr.length ? max(div)! <= GOALS.divergentKeys : null, '0') });
  return rows;
}

function textTable(rows: readonly Row[], refName: string, ref2Name: string): string {
  const head: Row = { metric: 'metric', ours: 'grapevine', ref: refName, ratio: 'ours/ref', ref2: ref2Name, ratio2: 'ours/ref2', goal: 'goal (grapevine)' };
  const all = [head, ...rows];
  const w = (k: keyof Row): number => Math.max(...all.map((r) => r[k].length));
  const line = (r: Row): string => `${r.metric.padEnd(w('metric'))}  ${r.ours.padStart(w('ours'))}  ${r.ref.padStart(w('ref'))}  ${r.ratio.padStart(w('ratio'))}  ${r.ref2.padStart(w('ref2'))}  ${r.ratio2.padStart(w('ratio2'))}  ${r.goal}`;
  return [line(head), '-'.repeat(line(head).length), ...rows.map(line)].join('\n');
}

function mdTable(rows: readonly Row[], refName: string, ref2Name: string): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| metric | grapevine | ${refName} | ours/ref | ${ref2Name} | ours/ref2 | goal (grapevine) |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows.map((r) => `| ${esc(r.metric)} | ${r.ours} | ${r.ref} | ${r.ratio} | ${r.ref2} | ${r.ratio2} | ${r.goal} |`),
  ].join('\n');
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

/** The newest .ts under src/ against dist/cli/grapevine.js: is the build older than the source? */
function buildState(): { distMtime: string; newestSrc: string; newestSrcMtime: string; stale: boolean } {
  const dist = statSync(GRAPEVINE_JS).mtimeMs;
  let newest = 0;
  let newestPath = '';
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const m = statSync(p).mtimeMs;
        if (m > newest) {
          newest = m;
          newestPath = p.slice(REPO.length);
        }
      }
    }
  };
  walk(join(REPO, 'src'));
  return { distMtime: new Date(dist).toISOString(), newestSrc: newestPath, newestSrcMtime: new Date(newest).toISOString(), stale: newest > dist };
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!existsSync(GRAPEVINE_JS)) throw new Error(`${GRAPEVINE_JS} is missing: run \`npm run build\` first`);
  const build = buildState();
  if (build.stale) say(`note: dist/ (${build.distMtime}) is older than ${build.newestSrc} (${build.newestSrcMtime}); \`npm run build\` for fresh binaries`);
  const versions: RedisVersions = ensureRedis(say);
  const machine: MachineInfo = machineInfo(`redis-server ${versions.serverPackage} (Debian package; ${versions.server})`);
  const source = sourceState();
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(' ');
  say(`machine: ${machine.nproc} CPUs, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}; ${machine.serf}; grapevine ${source}`);
  const dir = mkdtempSync(join(tmpdir(), 'gv-cachebench-'));
  const profDir = CPU_PROF ? join(dir, 'prof') : undefined;
  const skipped: string[] = [];
  let cluster: LocalCluster | undefined;
  const servers: RedisServer[] = [];
  const gvClients: RespClient[] = [];
  let results: Results;
  let redisSettings: Record<string, Record<string, string>> = {};
  const redisPersistence: Record<string, Record<string, string>> = {};
  let rss: Record<string, number | null> = {};
  let profile: ProfileSummary | null = null;
  const phases: { phase: string; atS: number; load1: number; stealPctBefore: number | null }[] = [];
  const stealSince = stealMeter();
  const phase = (name: string): void => {
    // The steal share is that of the stretch since the previous mark, i.e. of the phase just ended.
    phases.push({ phase: name, atS: round((Date.now() - T0) / 1000, 1)!, load1: round(loadavg()[0]!, 2)!, stealPctBefore: stealSince() });
    const steal = phases[phases.length - 1]!.stealPctBefore;
    if (steal !== null && steal >= 5) say(`note: the host stole ${steal.toFixed(1)} % of this machine's CPU time since the last mark (figures of that stretch are slowed)`);
  };
  try {
    phase('start');
    say(`starting ${NODES} grapevine nodes on 127.0.0.1 and 2 redis-servers`);
    cluster = await startLocalCluster(join(dir, 'gv'), NODES, profDir ? { cpuProfDir: profDir } : {});
    const redis = await RedisServer.start('redis (Debian defaults)', await freeLocalPort(), join(dir, 'redis'));
    servers.push(redis);
    const redisAof = await RedisServer.start('redis (AOF everysec)', await freeLocalPort(), join(dir, 'redis-aof'), ['--appendonly', 'yes', '--appendfsync', 'everysec']);
    servers.push(redisAof);
    redisSettings = {};
    for (const s of servers) {
      redisSettings[s.name] = { save: await s.config('save'), appendonly: await s.config('appendonly'), appendfsync: await s.config('appendfsync') };
    }
    say(`redis settings: ${JSON.stringify(redisSettings)}`);
    for (const n of cluster.nodes) gvClients.push(await RespClient.openRetry(n.host, n.respPort, n.id, 10_000));
    const systems: System[] = [
      { name: 'grapevine', port: cluster.nodes[0]!.respPort, pids: cluster.nodes.map((n) => n.proc.pid!), labels: cluster.nodes.map((n) => n.id) },
      { name: 'redis', port: redis.port, pids: [redis.pid], labels: ['redis-server'] },
      { name: 'redis-aof', port: redisAof.port, pids: [redisAof.pid], labels: ['redis-server'] },
    ];
    say(`prefilling ${KEYSPACE} keys (MSET) on each system`);
    const prefillMs: Record<string, number> = {};
    for (const [name, port] of [['grapevine', systems[0]!.port], ['redis', redis.port], ['redis-aof', redisAof.port]] as const) {
      const c = await RespClient.open('127.0.0.1', port, name);
      const t = performance.now();
      await prefill(c, KEYSPACE);
      prefillMs[name] = Math.round(performance.now() - t);
      c.close();
    }
    const pw = await waitSameDigest(gvClients, 60_000);
    say(`prefill: ${JSON.stringify(prefillMs)} ms; grapevine nodes agree ${pw.ms === null ? 'NOT within 60 s' : `${Math.round(pw.ms)} ms after`}`);

    phase('throughput');
    say(`throughput: ${RUNS} runs per system, test and pipelining, ~${TARGET_S} s each`);
    const tp0 = await throughputPhase(systems, gvClients);
    const tp: Throughput = { ...tp0, prefillMs };
    say(`throughput: nodes agree after the runs: ${tp.replication.sameDigest ? `yes, ${tp.replication.catchUpMs} ms after the last run` : 'NO'} (digests ${tp.replication.digests.join(' ')}, keys ${tp.replication.keysHeld.join(' ')})`);

    // What the redis-servers' persistence did during the throughput runs (snapshots by the save schedule, AOF rewrites).
    for (const s of servers) {
      const c = await RespClient.open('127.0.0.1', s.port, s.name);
      try {
        const m = await info(c);
        redisPersistence[s.name] = Object.fromEntries(['rdb_saves', 'total_forks', 'aof_rewrites', 'rdb_last_bgsave_status', 'aof_last_write_status'].map((k) => [k, m.get(k) ?? 'n/a']));
      } finally {
        c.close();
      }
    }
    say(`redis persistence during the runs: ${JSON.stringify(redisPersistence)}`);
    phase('lag');
    say(`lag: ${LAG_RUNS} runs per system of ${LAG_SAMPLES} sequential SETs (quiet) and up to ${LAG_LOAD_SAMPLES} / ${LAG_LOAD_MAX_S} s under a SET load; readers keep ${LAG_WINDOW} GETs in flight`);
    const gvWriter = await RespClient.open('127.0.0.1', systems[0]!.port, 'n1 writer');
    const gvReaders = [await RespClient.open('127.0.0.1', cluster.nodes[1]!.respPort, 'n2 reader'), await RespClient.open('127.0.0.1', cluster.nodes[2]!.respPort, 'n3 reader')];
    let lag: LagPhase;
    try {
      const gvTarget: LagTarget = { system: 'grapevine', port: systems[0]!.port, writer: gvWriter, readers: gvReaders, counter: async () => Number((await cacheInfo(gvClients[0]!)).fields.repl_puts ?? 0) };
      lag = await lagPhase(gvTarget, redis, dir, skipped);
    } finally {
      gvWriter.close();
      for (const c of gvReaders) c.close();
    }
    rss = {};
    for (const n of cluster.nodes) rss[n.id] = round(await rssMiB(n.proc.pid!), 1);
    for (const s of servers) rss[s.name] = round(await rssMiB(s.pid), 1);
    await waitSameDigest(gvClients, 30_000);
    for (const c of gvClients.splice(0)) c.close();
    await stopCluster(cluster);
    await Promise.all(servers.map((s) => s.stop()));
    if (profDir) {
      const files = existsSync(profDir) ? readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')) : [];
      if (files[0]) profile = summarizeProfile(join(profDir, files[0]));
    }

    phase('partition');
    let partitionRuns: PartitionRun[] = [];
    let partitionSkipped: string | null = null;
    const can = Lab.canRun();
    if (PART_RUNS === 0) partitionSkipped = 'BENCH_CACHE_PARTITION_RUNS=0';
    else if (!can.ok) partitionSkipped = `the lab cannot run: ${can.reason}`;
    else {
      say(`partition: building a ${PART_NODES}-host lab`);
      const lab = await Lab.create({ hosts: PART_NODES, prefix: 'gvcache' });
      try {
        const nodes = await startLabCluster(lab, LAB_GV_PORT, LAB_RESP_PORT);
        say(`partition: ${nodes.length} nodes up and linked`);
        partitionRuns = await partitionPhase(lab, nodes, T0 + BUDGET_S * 1000, skipped);
      } finally {
        say('destroying the lab');
        await lab.destroy();
      }
    }
    if (partitionSkipped) skipped.push(`partition: ${partitionSkipped}`);
    phase('end');
    results = { tp, lag, partition: partitionRuns, partitionSkipped };
  } finally {
    for (const c of gvClients) c.close();
    if (cluster) await stopCluster(cluster).catch(() => undefined);
    await Promise.all(servers.map((s) => s.stop(3_000).catch(() => undefined)));
    killStarted();
    rmSync(dir, { recursive: true, force: true });
  }

  const runMinutes = (Date.now() - T0) / 60_000;
  const date = new Date().toISOString();
  const rows = rowsOf(results);
  const refName = 'redis (Debian defaults: RDB, no AOF)';
  const ref2Name = 'redis (AOF everysec)';
  process.stdout.write(`\nCache benchmark, ${date}\n\n${textTable(rows, refName, ref2Name)}\n\n`);
  const stamp = date.replace(/:/g, '').replace(/\.\d+Z$/, 'Z');
  const jsonRel = `bench/results/cache-${stamp}.json`;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const raw = {
    bench: 'cache',
    date,
    runMinutes: round(runMinutes, 2),
    machine,
    redis: versions,
    redisSettings,
    redisPersistence,
    grapevineSource: source,
    build,
    loadAverageAtStart: loadAtStart,
    phases,
    settings: {
      nodes: NODES,
      runs: RUNS,
      targetS: TARGET_S,
      clients: CLIENTS,
      pipeline: PIPELINE,
      keyspace: KEYSPACE,
      lagSamples: LAG_SAMPLES,
      lagLoadSamples: LAG_LOAD_SAMPLES,
      lagWindow: LAG_WINDOW,
      lagRuns: LAG_RUNS,
      lagLoadMaxS: LAG_LOAD_MAX_S,
      lagWarmup: LAG_WARMUP,
      lagTimeoutMs: LAG_TIMEOUT_MS,
      lagGapMs: LAG_GAP_MS,
      partitionNodes: PART_NODES,
      partitionWrites: PART_WRITES,
      partitionS: PART_S,
      partitionRuns: PART_RUNS,
      partitionKeysA: PART_KEYS_A,
      partitionKeysB: PART_KEYS_B,
      budgetS: BUDGET_S,
    },
    goals: GOALS,
    skipped,
    rssMiB: rss,
    cpuProfile: profile,
    throughput: results.tp,
    lag: results.lag,
    partition: results.partition,
    table: rows,
  };
  writeFileSync(join(REPO, jsonRel), `${JSON.stringify(raw, null, 2)}\n`);
  writeSection(RESULTS_MD, 'cache', markdown({ date, runMinutes, machine, versions, redisSettings, redisPersistence, source, build, loadAtStart, phases, rows, refName, ref2Name, results, jsonRel, skipped, rss, profile }));
  say(`wrote ${jsonRel} and bench/RESULTS.md`);
}

interface MdInput {
  readonly date: string;
  readonly runMinutes: number;
  readonly machine: MachineInfo;
  readonly versions: RedisVersions;
  readonly redisSettings: Record<string, Record<string, string>>;
  readonly redisPersistence: Record<string, Record<string, string>>;
  readonly source: string;
  readonly build: ReturnType<typeof buildState>;
  readonly loadAtStart: string;
  readonly phases: { phase: string; atS: number; load1: number; stealPctBefore: number | null }[];
  readonly rows: Row[];
  readonly refName: string;
  readonly ref2Name: string;
  readonly results: Results;
  readonly jsonRel: string;
  readonly skipped: string[];
  readonly rss: Record<string, number | null>;
  readonly profile: ProfileSummary | null;
}

function markdown(m: MdInput): string {
  const r = m.results;
  const misses = m.rows.filter((x) => x.goal.includes('MISSED') || x.goal.includes('not measured')).map((x) => `- ${x.goal.includes('MISSED') ? 'MISSED' : 'NOT MEASURED'}: ${x.metric}: ${x.ours} (goal ${x.goal.replace(/ — .*/, '')}; redis ${x.ref})`);
  const cell = (s: SystemName, t: TestName, p: number) => r.tp.cells.find((c) => c.system === s && c.test === t && c.pipeline === p)!;
  const perRun = (s: SystemName, t: TestName, p: number): string =>
    cell(s, t, p)
      .runs.map((x) => (x.ok ? Math.round(x.rps!).toLocaleString('en-US') : 'failed'))
      .join(', ');
  const cpuLine = (t: TestName, p: number): string => {
    const g = cell('grapevine', t, p);
    const by = Object.entries(g.cpuUsPerRequestBy)
      .map(([k, v]) => `${k} ${v === null ? 'n/a' : v.toFixed(1)}`)
      .join(', ');
    return `${t.toUpperCase()}${p > 1 ? ` -P ${p}` : ''}: grapevine ${g.medianCpuUsPerRequest ?? 'n/a'} (${by}), redis ${cell('redis', t, p).medianCpuUsPerRequest ?? 'n/a'}, redis AOF ${cell('redis-aof', t, p).medianCpuUsPerRequest ?? 'n/a'}`;
  };
  const pct = (x: number | null | undefined): string => (x == null ? 'n/a' : `${Math.round(x * 100)} %`);
  const waitLine = (t: TestName, p: number): string => {
    const g = cell('grapevine', t, p);
    return `${t.toUpperCase()}${p > 1 ? ` -P ${p}` : ''}: grapevine ${Object.entries(g.waitShareBy).map(([k, v]) => `${k} ${pct(v)}`).join(', ')}; redis ${pct(cell('redis', t, p).waitShareBy['redis-server'])}; AOF ${pct(cell('redis-aof', t, p).waitShareBy['redis-server'])}`;
  };
  const lagRunText = (x: LagResult): string =>
    `run ${x.run}: ${x.last.samples} samples in ${x.durationS} s (${x.last.missing} never arrived within ${LAG_TIMEOUT_MS} ms, ${x.setErrors} SET errors), per reader p50/p99/max ${x.perReader.map((d) => `${fmtMs(d.p50Ms, 3)}/${fmtMs(d.p99Ms, 3)}/${fmtMs(d.maxMs, 3)}`).join(' and ')}, last p90 ${fmtMs(x.last.p90Ms, 3)}; resolution p50 ${fmtMs(x.resolutionMs.p50, 3)}, p99 ${fmtMs(x.resolutionMs.p99, 3)}; hit GET round trip p50 ${fmtMs(x.hitRttMs.p50, 3)}; the SET p50 ${fmtMs(x.setMs.p50, 3)}, p99 ${fmtMs(x.setMs.p99, 3)}${x.loadRps !== undefined ? `; load ${fmtRate(x.loadRps ?? null)} on the primary${x.loadError ? ` (${x.loadError})` : ''}` : ''}; load average ${x.load1}`;
  const lagLine = (x: LagSet | null, what: string): string => (x ? `- ${what}: ${x.runs.map(lagRunText).join('; ')}.` : `- ${what}: not measured.`);
  const pr = r.partition;
  const partLines = pr
    .map(
      (x) =>
        `- run ${x.run}: partition ${x.partitionS.toFixed(1)} s; writes side A ${x.writes[0]!.ok ? fmtRate(x.writes[0]!.rps) : `FAILED (${x.writes[0]!.error})`} (${x.writes[0]!.wallS.toFixed(1)} s), side B ${x.writes[1]!.ok ? fmtRate(x.writes[1]!.rps) : `FAILED (${x.writes[1]!.error})`} (${x.writes[1]!.wallS.toFixed(1)} s); keys written on A ${x.writtenA}, on B ${x.writtenB}, on both ${x.conflicting}` +
        `${x.conflictWinners ? ` (A's value won ${x.conflictWinners.a}, B's ${x.conflictWinners.b})` : ''}; converged ${fmtS(x.convergeS)} after the heal (${x.digestPolls} INFO polls; the slowest node answered INFO in ${fmtMs(x.infoAnswerMs.p50, 0)} median, ${fmtMs(x.infoAnswerMs.max, 0)} at worst, which bounds the resolution); the nodes logged ${x.stallsAfterHeal.count} event-loop stalls (> 400 ms) from the heal until converged, longest ${fmtMs(x.stallsAfterHeal.maxMs, 0)} (${x.stallsApart.count} while apart, longest ${fmtMs(x.stallsApart.maxMs, 0)}), and ${x.suspectsAfterHeal} 'member suspect' / ${x.deadsAfterHeal} 'member dead' lines after the heal; membership back after ${fmtS(x.membershipS)}; keys per node ${x.keysPerNode.join(', ')}; divergent keys ${x.divergentKeys}${x.divergentExamples.length ? ` (e.g. ${x.divergentExamples.join('; ')})` : ''}`,
    )
    .join('\n');
  const rep = r.tp.replication;
  const prof = m.profile;
  return `## Cache (RESP) — \`bench:cache\`

\`npm run bench:cache\` — ${m.date}, ${m.runMinutes.toFixed(1)} min. Machine: ${m.machine.nproc} CPUs (${m.machine.cpuModel}), ${m.machine.memoryGiB} GiB RAM,
Linux ${m.machine.kernel}, Node ${m.machine.node}; ${m.machine.serf}; redis-benchmark from redis-tools ${m.versions.toolsPackage}.
grapevine ${m.source}; dist/ built ${m.build.distMtime}${m.build.stale ? `, older than ${m.build.newestSrc} (${m.build.newestSrcMtime})` : ''}. Load average at the start ${m.loadAtStart}; 1-min load at each phase (${m.phases.map((p) => p.phase).join(' / ')}): ${m.phases.map((p) => p.load1.toFixed(1)).join(' / ')}; host steal (CPU time the hypervisor gave to other machines) between these marks: ${fmtSteal(m.phases.slice(1).map((p) => p.stealPctBefore))} % — other work shares the ${m.machine.nproc} CPUs, so figures are medians and ratios are taken against redis measured in the same run, runs alternating.
Raw figures: \`${m.jsonRel}\`.

${mdTable(m.rows, m.refName, m.ref2Name)}

${misses.length > 0 ? `Goals missed or not measured:\n${misses.join('\n')}` : 'Every goal was met in this run.'}
${m.skipped.length > 0 ? `\nNot done: ${m.skipped.join('; ')}.\n` : ''}
Per run (req/s, in run order): ${(['set', 'get'] as const)
    .flatMap((t) => [1, PIPELINE].map((p) => `${t.toUpperCase()}${p > 1 ? ` -P ${p}` : ''} — grapevine ${perRun('grapevine', t, p)}; redis ${perRun('redis', t, p)}; AOF ${perRun('redis-aof', t, p)}`))
    .join('. ')}.
Requests (-n) per run, sized from the rates seen so far to last ~${TARGET_S} s, and the runs' durations: ${r.tp.cells.map((c) => `${c.system} ${c.test}${c.pipeline > 1 ? ` -P ${c.pipeline}` : ''} ${c.runs.map((x) => `${x.requests.toLocaleString('en-US')} (${x.wallS.toFixed(1)} s)`).join(', ')}`).join('; ')}.
CPU µs per request, all of the system's processes (grapevine: nodes 1–3 — node 1 answers, 2 and 3 apply the replicated SETs): ${[1, PIPELINE].flatMap((p) => (['set', 'get'] as const).map((t) => cpuLine(t, p))).join('; ')}.
Run-queue wait (the main thread runnable but without a CPU, share of the run, median — CPU starvation by everything else on the machine, our own processes included): ${[1, PIPELINE].flatMap((p) => (['set', 'get'] as const).map((t) => waitLine(t, p))).join('; ')}.
Replication during the runs: nodes 2 and 3 ${rep.sameDigest ? `held node 1's digest ${rep.catchUpMs} ms after the last run` : '**did not** hold node 1\'s digest within 60 s'} (digests ${rep.digests.join(', ')}; keys ${rep.keysHeld.join(', ')}).
redis persistence by the end of the throughput runs (since start, prefill included): ${Object.entries(m.redisPersistence).map(([k, v]) => `${k}: ${Object.entries(v).map(([a, b]) => `${a} ${b}`).join(', ')}`).join('; ')}.
RSS at the end of the 127.0.0.1 phases: ${Object.entries(m.rss).map(([k, v]) => `${k} ${v ?? 'n/a'} MiB`).join(', ')}.
Lag per run (per reader p50/p99/max; "resolution" = arrival gap between the last GET that missed and the first that hit):
${lagLine(r.lag.gvQuiet, 'grapevine, quiet')}
${lagLine(r.lag.gvLoad, 'grapevine, under load')}
${lagLine(r.lag.redisQuiet, 'redis replicas, quiet')}
${lagLine(r.lag.redisLoad, 'redis replicas, under load')}
${pr.length ? `Partition runs (${PART_NODES} lab hosts, sides ${pr[0]!.sides.map((s) => s.join(',')).join(' | ')}):\n${partLines}` : `Partition: not run (${r.partitionSkipped ?? 'see above'}).`}
${prof ? `\nCPU profile of node 1 over the 127.0.0.1 phases (--cpu-prof, ${prof.totalMs} ms sampled): ${prof.buckets.map((b) => `${b.name} ${b.pct}%`).join(', ')}.\n` : ''}
How it was measured:
- **Systems.** grapevine: ${NODES} \`grapevine node --cluster FILE --id nK --resp PORT\` on 127.0.0.1 (dist/ build; one cluster file, no
  \`replicas\`: every node holds every key; ring + chord overlay, i.e. every pair linked; multicast on 127.0.0.1 only, TTL 0).
  Each SET is committed to SQLite (WAL, synchronous=NORMAL, group commit per event-loop turn) at node 1 before its reply and
  then flooded to nodes 2 and 3, which commit it too. redis: Debian's redis-server with \`/etc/redis/redis.conf\` as shipped
  (${JSON.stringify(m.redisSettings[Object.keys(m.redisSettings)[0]!] ?? {})}: RDB snapshots on Redis' default schedule, no AOF),
  overriding only --port, --bind 127.0.0.1, --dir (a scratch directory), --daemonize no, --pidfile and --logfile; a second
  instance adds \`--appendonly yes --appendfsync everysec\` (${JSON.stringify(m.redisSettings[Object.keys(m.redisSettings)[1]!] ?? {})}), closer to grapevine's
  write-before-reply. The package was installed (if missing) under policy-rc.d = 101, so Debian's own service never started.
  All three systems ran side by side (idle when not under test); each was prefilled with the ${KEYSPACE.toLocaleString('en-US')} keys
  \`key:000000000000\`… (value \`xxx\`, as redis-benchmark's) by MSET, so every GET hits and every SET overwrites.
- **Throughput.** \`${['redis-benchmark', '-p PORT', `-c ${CLIENTS}`, '-n N', `-r ${KEYSPACE}`, '[-P 16]', '--csv', '-t set|get'].join(' ')}\`: SET and GET as
  separate invocations, so each gets its own N (sized to last ~${TARGET_S} s from the median rate of a pilot run per system, test
  and pipelining — not counted — and of the runs before it). ${RUNS} rounds; in each, every test and pipelining setting ran against the three systems in turn (the order
  rotating from round to round). The figure is redis-benchmark's requests/s; medians over the rounds; a failed run counts as 0.
  CPU = utime + stime from /proc of the system's processes over the run (a guest's CPU time also grows when the VM host is busy).
- **Lag.** ${LAG_RUNS} runs per system and condition, grapevine and redis alternating; per run ${LAG_SAMPLES} sequential SETs of fresh keys at node 1 (${LAG_WARMUP} warm-up samples dropped), each after the previous one was
  seen by both readers plus ${LAG_GAP_MS[0]}–${LAG_GAP_MS[1]} ms; from the moment a SET is sent, one persistent RESP connection per reader
  (node 2, node 3) keeps ${LAG_WINDOW} GETs of the key in flight until the new value comes back. Lag = arrival of that reply − arrival of the
  SET's reply (one performance clock in the bench process, stamped when the bytes arrive); "last" = the later of the two readers;
  a sample that never arrived within ${LAG_TIMEOUT_MS} ms counts as slower than all. It can be slightly negative: node 1 floods the
  change in the same turn as it writes the reply. The uncertainty of one sample is the arrival gap between the last GET that
  missed and the first that hit (resolution, above). Under load: the same while \`redis-benchmark -c ${CLIENTS} -r ${KEYSPACE} -t set\`
  (no pipelining) runs against node 1 (up to ${LAG_LOAD_SAMPLES} samples or ${LAG_LOAD_MAX_S} s per run). Reference: the Debian-defaults redis-server with two
  replicas (\`--replicaof\`, Debian config), same code, same readers.
- **Partition.** ${PART_NODES} lab hosts (network namespaces on one bridge, 10.77.0.x), one \`grapevine node --resp ${LAB_RESP_PORT}\` each (defaults:
  multicast discovery, ring + chord overlay, full replication). The halves are cut apart with iptables DROP rules between
  them inside each host (test/helpers/kv.ts \`partition\`); ${PART_WRITES.toLocaleString('en-US')} \`SET key:__rand_int__ VALUE\` with \`-c ${CLIENTS} -P ${PIPELINE}\`
  against the first node of each side, inside its host: side A over keys 0..${PART_KEYS_A - 1} (-r ${PART_KEYS_A}), side B over 0..${PART_KEYS_B - 1}
  (-r ${PART_KEYS_B}), each side with its own value, so the keys written on both sides conflict. Before the heal one node per side is
  dumped (what each side wrote); the heal comes at ${PART_S} s after the cut or once the writes and those dumps are done, whichever is
  later. Convergence = heal → every node's INFO \`digest\` equal and \`pending_writes\` 0 (INFO of all nodes every 50 ms through the
  lab relay). Then every node's keys and values (SCAN + MGET) are compared: a key is divergent when some node lacks it or holds
  another value. Membership back = the nodes' own log lines (member joined/recovered) after the heal.
`;
}

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  killStarted();
  process.exitCode = 1;
});
