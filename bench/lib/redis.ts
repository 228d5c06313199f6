/**
 * redis-server and redis-benchmark (Debian's redis-server and redis-tools),
 * the reference system and the load generator of the cache bench.
 *
 * The package is installed with policy-rc.d answering 101 (ensureDebianPackages),
 * so the install never starts Debian's service on 6379. The bench runs its
 * own servers: Debian's /etc/redis/redis.conf as it ships (RDB snapshots by
 * Redis' built-in schedule `save 3600 1 300 100 60 10000`, no AOF), with only
 * the address, the directory and the process handling overridden
 * (--port, --bind 127.0.0.1, --dir, --daemonize no, --pidfile/--logfile in
 * the bench's directory), plus whatever extra arguments a variant adds
 * (e.g. --appendonly yes --appendfsync everysec).
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { debVersion, ensureDebianPackages } from './debian.js';
import { procDelta, procSample } from './cache-procstat.js';
import type { ProcDelta } from './cache-procstat.js';
import { onLines, running } from './lines.js';
import { stopChild, track } from './procs.js';
import { RespClient, replyText } from './cache-resp.js';

export const DEBIAN_REDIS_CONF = '/etc/redis/redis.conf';

export interface RedisVersions {
  readonly serverPackage: string;
  readonly toolsPackage: string;
  /** `redis-server --version`. */
  readonly server: string;
  /** `redis-benchmark --version`. */
  readonly benchmark: string;
}

/** Installs redis-server and redis-tools from Debian when missing (never starting the packaged service). */
export function ensureRedis(log: (s: string) => void): RedisVersions {
  ensureDebianPackages('redis-server', ['redis-server', 'redis-tools'], log);
  ensureDebianPackages('redis-benchmark', ['redis-tools'], log);
  if (!existsSync(DEBIAN_REDIS_CONF)) throw new Error(`${DEBIAN_REDIS_CONF} is missing (the redis-server package ships it)`);
  const v = (bin: string): string => {
    try {
      return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  };
  return { serverPackage: debVersion('redis-server'), toolsPackage: debVersion('redis-tools'), server: v('redis-server'), benchmark: v('redis-benchmark') };
}

export class RedisServer {
  readonly logTail: string[] = [];

  private constructor(
    readonly name: string,
    readonly port: number,
    readonly dir: string,
    readonly args: readonly string[],
    readonly proc: ChildProcess,
  ) {
    onLines(proc, (line) => {
      this.logTail.push(line);
      if (this.logTail.length > 20) this.logTail.shift();
    });
  }

  /** Starts redis-server on 127.0.0.1:port with Debian's config and `extra` on top; resolves once it answers PING. */
  static async start(name: string, port: number, dir: string, extra: readonly string[] = []): Promise<RedisServer> {
    mkdirSync(dir, { recursive: true });
    const args = [
      DEBIAN_REDIS_CONF,
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--daemonize', 'no',
      '--pidfile', join(dir, 'redis.pid'),
      '--logfile', join(dir, 'redis.log'),
      ...extra,
    ];
    const proc = track(spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const server = new RedisServer(name, port, dir, args, proc);
    try {
      const c = await RespClient.openRetry('127.0.0.1', port, name, 15_000);
      c.close();
    } catch (err) {
      await server.stop();
      throw new Error(`${name} (redis-server ${args.join(' ')}) did not answer: ${(err as Error).message} ${server.logTail.join(' | ')}`);
    }
    return server;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return running(this.proc);
  }

  /** CONFIG GET name → value. */
  async config(name: string): Promise<string> {
    const c = await RespClient.open('127.0.0.1', this.port, this.name);
    try {
      const r = await c.call('CONFIG', 'GET', name);
      return Array.isArray(r) && r.length >= 2 ? replyText(r[1]!) : '';
    } finally {
      c.close();
    }
  }

  /** SIGTERM (redis saves its RDB then exits), SIGKILL after timeoutMs. */
  stop(timeoutMs = 10_000): Promise<void> {
    return stopChild(this.proc, 'SIGTERM', timeoutMs);
  }
}

export interface BenchmarkOptions {
  readonly host?: string;
  readonly port: number;
  /** `-t` test name (set, get), or a custom command (argv after the options), e.g. ['SET', 'key:__rand_int__', 'v']. */
  readonly test: string | readonly string[];
  readonly requests: number;
  readonly clients?: number;
  readonly keyspace?: number;
  readonly pipeline?: number;
  /** The run is killed (by PID) after this long and reported as failed. */
  readonly timeoutMs: number;
  /** Processes whose CPU time (utime + stime) over the run is reported. */
  readonly watchPids?: readonly number[];
  /** Starts the argv (default: a local child); the lab starts it inside a host. */
  readonly spawnArgv?: (argv: string[]) => ChildProcess;
}

export interface BenchmarkResult {
  readonly argv: string[];
  readonly ok: boolean;
  readonly error?: string;
  /** Requests per second as redis-benchmark reports them. */
  readonly rps: number | null;
  readonly avgMs: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  /** Spawn to exit, seconds (includes redis-benchmark's own start: CONFIG GET, connecting the clients). */
  readonly wallS: number;
  /** CPU seconds of each watched pid over the run (null when it could not be read). */
  readonly cpuS: Record<string, number | null>;
  /** Per watched pid: CPU of the process, run and run-queue wait of its main thread over the run. */
  readonly sched: Record<string, ProcDelta>;
  /** CPU seconds of redis-benchmark itself. */
  readonly benchmarkCpuS: number | null;
  readonly startedAtMs: number;
}

/** The argv of one redis-benchmark run. */
export function benchmarkArgv(o: BenchmarkOptions): string[] {
  const argv = ['redis-benchmark', '-h', o.host ?? '127.0.0.1', '-p', String(o.port), '-c', String(o.clients ?? 50), '-n', String(o.requests)];
  if (o.keyspace !== undefined) argv.push('-r', String(o.keyspace));
  if (o.pipeline !== undefined && o.pipeline > 1) argv.push('-P', String(o.pipeline));
  argv.push('--csv');
  if (typeof o.test === 'string') argv.push('-t', o.test);
  else argv.push(...o.test);
  return argv;
}

/** Runs redis-benchmark once; never throws (a failed run has ok: false and the reason). */
export async function runBenchmark(o: BenchmarkOptions): Promise<BenchmarkResult> {
  const argv = benchmarkArgv(o);
  const watch = o.watchPids ?? [];
  const s0 = await Promise.all(watch.map((p) => procSample(p)));
  const startedAtMs = Date.now();
  const t0 = performance.now();
  const proc = o.spawnArgv ? o.spawnArgv(argv) : track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  let benchCpu: number | null = null;
  // Sample the benchmark's own CPU just before it exits (after, /proc has no entry).
  const sampler = setInterval(() => {
    if (proc.pid !== undefined) void procSample(proc.pid).then((c) => (benchCpu = c?.cpuS ?? benchCpu));
  }, 200);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (running(proc)) proc.kill('SIGKILL');
  }, o.timeoutMs);
  const code = await new Promise<number | null>((resolve) => {
    if (!running(proc)) return resolve(proc.exitCode);
    proc.once('exit', (c) => resolve(c));
    proc.once('error', () => resolve(-1));
  });
  clearTimeout(timer);
  clearInterval(sampler);
  const wallS = (performance.now() - t0) / 1000;
  const s1 = await Promise.all(watch.map((p) => procSample(p)));
  const cpuS: Record<string, number | null> = {};
  const sched: Record<string, ProcDelta> = {};
  watch.forEach((p, i) => {
    sched[String(p)] = procDelta(s0[i]!, s1[i]!);
    cpuS[String(p)] = sched[String(p)]!.cpuS;
  });
  const row = parseCsv(out);
  const errorText = timedOut ? `timed out after ${o.timeoutMs} ms` : code !== 0 ? `exit status ${code}: ${(err || out).trim().split('\n').slice(-2).join(' | ').slice(0, 300)}` : row ? undefined : `no CSV row in: ${out.slice(0, 300)}`;
  return {
    argv,
    ok: errorText === undefined,
    ...(errorText ? { error: errorText } : {}),
    rps: row?.rps ?? null,
    avgMs: row?.avg ?? null,
    p50Ms: row?.p50 ?? null,
    p99Ms: row?.p99 ?? null,
    maxMs: row?.max ?? null,
    wallS: Math.round(wallS * 1000) / 1000,
    cpuS,
    sched,
    benchmarkCpuS: benchCpu,
    startedAtMs,
  };
}

interface CsvRow {
  readonly test: string;
  readonly rps: number;
  readonly avg: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** The last data row of redis-benchmark --csv: "test","rps","avg_latency_ms","min","p50","p95","p99","max". */
export function parseCsv(out: string): CsvRow | undefined {
  const rows = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('"') && !l.startsWith('"test"'))
    .map((l) => l.split('","').map((f) => f.replace(/^"|"$/g, '')));
  const r = rows[rows.length - 1];
  if (!r || r.length < 8) return undefined;
  const n = (s: string | undefined): number => Number(s);
  return { test: r[0]!, rps: n(r[1]), avg: n(r[2]), p50: n(r[4]), p99: n(r[6]), max: n(r[7]) };
}
