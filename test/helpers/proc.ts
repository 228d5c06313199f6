// Real processes for end-to-end tests: spawn a compiled binary (npm run build
// first), collect its output lines in bounded arrays, wait for a line, kill -9
// by PID, run a CLI command to completion with a timeout. Everything started
// here is killed in t.after and, as a last resort, when the test process exits.
// Also: free ports, per-test multicast channels, temp dirs, RSS, and the
// grapevine node/status wrappers the e2e tests share.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import { GrapevineClient } from '../../src/api/client.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const GRAPEVINE = join(ROOT, 'dist/cli/grapevine.js');

/** Lines kept per stream; older lines are dropped (and counted). */
const LINES_MAX_DEFAULT = 20_000;
/** Longest partial line buffered while waiting for its newline. */
const PARTIAL_LINE_MAX = 1 << 20;

type Stream = 'stdout' | 'stderr';
type LinePredicate = (line: string) => boolean;

export interface ProcExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  /** Lines seen per stream, including those dropped from the bounded arrays. */
  readonly seen = { stdout: 0, stderr: 0 };
  readonly exited: Promise<ProcExit>;
  private exitInfo: ProcExit | undefined;
  private readonly partial = { stdout: '', stderr: '' };
  private readonly watchers = new Set<{ stream: Stream; pred: LinePredicate; resolve: (line: string) => void }>();

  constructor(
    readonly label: string,
    command: string,
    args: readonly string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv; linesMax?: number; stdin?: 'ignore' | 'pipe' } = {},
  ) {
    const linesMax = options.linesMax ?? LINES_MAX_DEFAULT;
    this.child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'] });
    if (this.child.pid === undefined) throw new Error(`${label}: spawn failed`);
    this.pid = this.child.pid;
    live.add(this);
    for (const stream of ['stdout', 'stderr'] as const) {
      this.child[stream]!.setEncoding('utf8').on('data', (chunk: string) => this.onChunk(stream, chunk, linesMax));
    }
    this.exited = new Promise<ProcExit>((resolve) => {
      this.child.once('close', (code, signal) => {
        for (const stream of ['stdout', 'stderr'] as const) if (this.partial[stream]) this.onChunk(stream, '\n', linesMax);
        this.exitInfo = { code, signal };
        live.delete(this);
        resolve(this.exitInfo);
      });
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first line (already seen or future) matching `pred`; rejects on timeout or exit. */
  waitForLine(stream: Stream, pred: LinePredicate, timeoutMs: number, what = 'a matching line'): Promise<string> {
    const already = this[stream].find(pred);
    if (already !== undefined) return Promise.resolve(already);
    return new Promise<string>((resolve, reject) => {
      const watcher = {
        stream,
        pred,
        resolve: (line: string) => {
          cleanup();
          resolve(line);
        },
      };
      const fail = (why: string) => {
        cleanup();
        reject(new Error(`${this.label} (pid ${this.pid}): ${why} waiting for ${what}; last ${stream} lines:\n${this[stream].slice(-10).join('\n')}`));
      };
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      const onExit = (e: ProcExit) => fail(`exited (code ${e.code}, signal ${e.signal})`);
      void this.exited.then(onExit);
      const cleanup = () => {
        clearTimeout(timer);
        this.watchers.delete(watcher);
      };
      this.watchers.add(watcher);
    });
  }

  /** SIGKILL by PID; resolves when the process is gone. */
  async kill9(): Promise<ProcExit> {
    if (this.running) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    return this.exited;
  }

  /** Sends `signal` by PID; SIGKILL if it has not exited within `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3_000): Promise<ProcExit> {
    if (!this.running) return this.exited;
    process.kill(this.pid, signal);
    const timer = setTimeout(() => void this.kill9(), graceMs);
    const e = await this.exited;
    clearTimeout(timer);
    return e;
  }

  private onChunk(stream: Stream, chunk: string, linesMax: number): void {
    let text = this.partial[stream] + chunk;
    const parts = text.split('\n');
    text = parts.pop() ?? '';
    this.partial[stream] = text.length > PARTIAL_LINE_MAX ? text.slice(-PARTIAL_LINE_MAX) : text;
    const lines = this[stream];
    for (const line of parts) {
      this.seen[stream] += 1;
      lines.push(line);
      if (lines.length > linesMax) lines.splice(0, lines.length - linesMax);
      for (const w of [...this.watchers]) if (w.stream === stream && w.pred(line)) w.resolve(line);
    }
  }
}

const live = new Set<Proc>();
// Last resort if a test forgets (or the runner dies between tests): no orphans.
process.once('exit', () => {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Spawns `node SCRIPT ...args`; killed (-9) in t.after. */
export function spawnNodeScript(t: TestContext, label: string, script: string, args: readonly string[], options: { linesMax?: number; stdin?: 'ignore' | 'pipe' } = {}): Proc {
  const p = new Proc(label, process.execPath, [script, ...args], options);
  t.after(() => p.kill9());
  return p;
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stderr split into lines, without the trailing empty one. */
  readonly stderrLines: string[];
  readonly durationMs: number;
}

/** Runs `node dist/cli/grapevine.js ...args` to completion; SIGKILL after `timeoutMs` (then code is null). */
export async function runCli(args: readonly string[], options: { timeoutMs?: number; script?: string } = {}): Promise<CliResult> {
  const started = Date.now();
  const p = new Proc(`grapevine ${args[0] ?? ''}`, process.execPath, [options.script ?? GRAPEVINE, ...args], { linesMax: 10_000 });
  const timer = setTimeout(() => void p.kill9(), options.timeoutMs ?? 10_000);
  try {
    const e = await p.exited;
    return {
      code: e.code,
      signal: e.signal,
      stdout: p.stdout.join('\n'),
      stderr: p.stderr.join('\n'),
      stderrLines: [...p.stderr],
      durationMs: Date.now() - started,
    };
  } finally {
    clearTimeout(timer);
    await p.kill9();
  }
}

/** A TCP port on 127.0.0.1 that is free now for TCP and for UDP (the node binds its UDP twin). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
        const a = s.address() as net.AddressInfo;
        s.close(() => resolve(a.port));
      });
    });
    if (await udpFree(port)) return port;
  }
  throw new Error('no free port found');
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind({ port, address: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** A multicast group and port of this test only: 239.255.R1.R2 and a random port. */
export function randomMcast(): { group: string; port: number; arg: string } {
  const r = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
  const group = `239.255.${r(1, 254)}.${r(1, 254)}`;
  const port = r(20_000, 60_000);
  return { group, port, arg: `${group}:${port}` };
}

/** A fresh temp directory, removed in t.after. */
export function tempDir(t: TestContext, prefix = 'grapevine-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resident set size of a process in bytes (from /proc/PID/status). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/**
 * Polls `probe` until it says ok or `timeoutMs` has passed since `since`. The
 * condition counts only if the probe that saw it finished before the deadline.
 * Returns the elapsed ms and the last detail; throws with the last detail.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<{ ok: boolean; detail: T }>,
  options: { timeoutMs: number; since?: number; intervalMs?: number },
): Promise<{ elapsedMs: number; detail: T }> {
  const since = options.since ?? Date.now();
  const deadline = since + options.timeoutMs;
  let last: { ok: boolean; detail: T } | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const now = Date.now();
    if (last?.ok && lastError === undefined && now <= deadline) return { elapsedMs: now - since, detail: last.detail };
    if (now > deadline) {
      const why = lastError !== undefined ? `last probe failed: ${(lastError as Error).message}` : `last seen: ${JSON.stringify(last?.detail)}`;
      throw new Error(`${what}: not within ${options.timeoutMs} ms; ${why}`);
    }
    await sleep(options.intervalMs ?? 50);
  }
}

/** Parses the JSON log lines of a stream; other lines are skipped. */
export function jsonLines(lines: readonly string[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return out;
}

// ---- grapevine nodes ------------------------------------------------------

export interface NodeSpec {
  readonly id: string;
  readonly port: number;
  readonly dataDir: string;
  /** GROUP:PORT */
  readonly mcast: string;
  readonly extraArgs?: readonly string[];
}

export interface RunningNode {
  readonly spec: NodeSpec;
  readonly proc: Proc;
}

export function nodeArgs(spec: NodeSpec): string[] {
  return ['node', '--host', '127.0.0.1', '--port', String(spec.port), '--id', spec.id, '--data-dir', spec.dataDir, '--mcast', spec.mcast, '--mcast-interface', '127.0.0.1', '--log-level', 'info', ...(spec.extraArgs ?? [])];
}

/** Starts `grapevine node` and waits for its "node up" log line; killed (-9) in t.after. */
export async function startNode(t: TestContext, spec: NodeSpec, timeoutMs = 5_000): Promise<RunningNode> {
  const proc = spawnNodeScript(t, `node ${spec.id}`, GRAPEVINE, nodeArgs(spec));
  await proc.waitForLine('stderr', (l) => l.includes('"msg":"node up"'), timeoutMs, '"node up"');
  return { spec, proc };
}

export interface StatusJson {
  readonly id: string;
  readonly members: { id: string; host: string; port: number; state: 'alive' | 'suspect' | 'dead'; incarnation: number }[];
  readonly neighbours: string[];
  readonly connected: string[];
  readonly cluster: string;
}

/**
 * The same report through the TypeScript client library, in-process: a few
 * ms instead of a process start, for polls whose timing is asserted.
 */
export async function statusByClient(port: number, timeoutMs = 2_000): Promise<StatusJson> {
  const c = await GrapevineClient.connect('127.0.0.1', port, { timeoutMs });
  try {
    const s = await c.status();
    return { id: s.id, members: s.members.map((m) => ({ ...m })), neighbours: s.neighbours, connected: s.connected, cluster: s.cluster };
  } finally {
    c.close();
  }
}

/** `grapevine status --addr 127.0.0.1:PORT --json`, which must exit 0 with one JSON object. */
export async function statusOf(port: number, timeoutMs = 5_000): Promise<StatusJson> {
  const r = await runCli(['status', '--addr', `127.0.0.1:${port}`, '--json'], { timeoutMs });
  if (r.code !== 0) throw new Error(`status of 127.0.0.1:${port} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}
