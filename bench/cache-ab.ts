/**
 * A/B helper for the cache's CPU per SET (not part of `npm run bench`): on a
 * shared machine wall-clock rates are noise, so builds are compared by CPU
 * per operation, alternating runs. Starts a 3-node cluster from the build
 * GRAPEVINE_JS names (copy dist/ aside per build), runs redis-benchmark SET
 * (plain, then -P 16) against node 1 and prints one JSON line per run: µs of
 * CPU per SET per node (utime+stime from /proc), the rate, and the flood
 * frames per second node 2 received; then the quiet replication lag (last
 * of the 2 replicas, 500 samples) and each node's RSS after it. Usage:
 *   GRAPEVINE_JS=/tmp/old/cli/grapevine.js node --import tsx bench/cache-ab.ts old
 * Env: AB_N (SETs per plain run, default 200000), AB_NP (per -P 16 run,
 * 600000), AB_PROF_DIR (a directory: --cpu-prof for every node).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheInfo, startLocalCluster, stopCluster } from './lib/cache-cluster.js';
import { rssMiB } from './lib/host-stats.js';
import { killStarted } from './lib/procs.js';
import { runBenchmark } from './lib/redis.js';
import { measureLag } from './lib/cache-lag.js';
import { RespClient } from './lib/cache-resp.js';
import { percentile } from './lib/stats.js';

const label = process.argv[2] ?? 'run';
const N = Number(process.env.AB_N ?? 200_000);
const NP = Number(process.env.AB_NP ?? 600_000);
const dir = mkdtempSync(join(tmpdir(), 'cache-ab-'));
const profDir = process.env.AB_PROF_DIR;
const cluster = await startLocalCluster(dir, 3, profDir ? { cpuProfDir: profDir, profileNodes: [0, 1, 2] } : {});
try {
  const pids = cluster.nodes.map((n) => n.proc.pid!);
  const port = cluster.nodes[0]!.respPort;
  await runBenchmark({ port, test: 'set', requests: 50_000, keyspace: 100_000, timeoutMs: 120_000 });
  const n2 = await RespClient.open(cluster.nodes[1]!.host, cluster.nodes[1]!.respPort, 'n2', 2_000);
  const frames = async () => Number((await cacheInfo(n2)).fields.repl_frames);
  for (const [mode, pipeline, n] of [['plain', 1, N], ['p16', 16, NP]] as const) {
    const f0 = await frames();
    const r = await runBenchmark({ port, test: 'set', requests: n, keyspace: 100_000, pipeline, timeoutMs: 300_000, watchPids: pids });
    const us = pids.map((p) => ((r.cpuS[String(p)] ?? NaN) * 1e6) / n);
    const total = us.reduce((a, b) => a + b, 0);
    console.log(JSON.stringify({ label, mode, rps: r.rps, us: us.map((x) => Math.round(x * 10) / 10), total: Math.round(total * 10) / 10, framesPerSec: Math.round(((await frames()) - f0) / (n / (r.rps ?? 1))) }));
  }
  const [w, ...rs] = await Promise.all(cluster.nodes.map((x) => RespClient.open(x.host, x.respPort, x.id, 2_000)));
  const lag = await measureLag(w!, rs, { samples: 520, window: 4, timeoutMs: 2_000, keyPrefix: `lag:${process.pid}`, gapMs: [1, 3], maxDurationMs: 60_000 });
  const last = lag.samples.slice(20).map((x) => Math.max(...x.lagMs.map((v) => v ?? Infinity)));
  const rss = await Promise.all(pids.map((p) => rssMiB(p)));
  console.log(JSON.stringify({ label, mode: 'lag', p50: percentile(last, 50), p99: percentile(last, 99), rssMiB: rss }));
  for (const c of [w!, ...rs, n2]) c.close();
} finally {
  await stopCluster(cluster);
  killStarted();
  rmSync(dir, { recursive: true, force: true });
}
