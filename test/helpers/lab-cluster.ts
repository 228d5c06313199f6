/**
 * Real `grapevine node` processes in lab hosts, and what tests ask them.
 * The node's CLI contract (DESIGN.md section 1):
 *   grapevine node --host IP --port PORT --data-dir DIR [--log-level L]   (JSON logs on stderr)
 *   grapevine status --json --addr IP:PORT  ->  {"id","members":[...],"neighbours":[ids]}
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ringNeighbours } from '../../src/core/ring.js';
import type { Endpoint } from '../../src/core/address.js';
import type { ExitInfo, Lab } from './lab.js';
import type { MemberStatus } from '../../src/api/client.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The built CLI; GRAPEVINE_JS overrides it (e.g. to try an out-of-tree build). */
export const GRAPEVINE_JS = process.env.GRAPEVINE_JS ?? join(REPO_ROOT, 'dist', 'cli', 'grapevine.js');
const DEFAULT_MAX_LOG_LINES = 2_000;
const DEFAULT_STATUS_TIMEOUT_MS = 3_000;

export interface StartNodeOptions {
  readonly port: number;
  /** Default: <lab.tmpDir>/h<i>-<port>; reuse one to restart a node with the same identity. */
  readonly dataDir?: string;
  readonly logLevel?: string;
  /**
   * Passed as --mcast-interface when set. By default nothing is passed: the
   * issue's lab test starts nodes with --host/--port only, and the node then
   * multicasts on the interface of --host (its 10.77.0.x address).
   */
  readonly mcastInterface?: string;
  readonly extraArgs?: readonly string[];
  /** Bound on the captured stderr/stdout lines (oldest dropped first). */
  readonly maxLogLines?: number;
}

export interface LabNode {
  readonly hostIndex: number;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly stderrLines: string[];
  readonly stdoutLines: string[];
  readonly exited: Promise<ExitInfo>;
}

/** The member shape of `grapevine status --json`, as the client library reports it. */
export type { MemberStatus };

export interface NodeStatus {
  readonly id: string;
  readonly members: MemberStatus[];
  readonly neighbours: string[];
}

/** Starts `grapevine node` in host i (one process: its pid is the node, kill -9 works). */
export function startNode(lab: Lab, i: number, opts: StartNodeOptions): LabNode {
  if (!existsSync(GRAPEVINE_JS)) throw new Error(`${GRAPEVINE_JS} is missing: run \`npm run build\` before the lab tests`);
  const { ip } = lab.host(i);
  const dataDir = opts.dataDir ?? join(lab.tmpDir, `h${i}-${opts.port}`);
  mkdirSync(dataDir, { recursive: true });
  const argv = [
    process.execPath, GRAPEVINE_JS, 'node',
    '--host', ip, '--port', String(opts.port), '--data-dir', dataDir,
    '--log-level', opts.logLevel ?? 'info',
    ...(opts.mcastInterface === undefined ? [] : ['--mcast-interface', opts.mcastInterface]),
    ...(opts.extraArgs ?? []),
  ];
  const proc = lab.spawn(i, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new Error(`could not start ${argv.join(' ')} in ${lab.host(i).ns}`);
  const max = opts.maxLogLines ?? DEFAULT_MAX_LOG_LINES;
  const exited = new Promise<ExitInfo>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    hostIndex: i, proc, pid: proc.pid, host: ip, port: opts.port, dataDir,
    stderrLines: captureLines(proc.stderr, max),
    stdoutLines: captureLines(proc.stdout, max),
    exited,
  };
}

/** Stops a node: SIGTERM, then SIGKILL if it has not exited within graceMs. */
export async function stopNode(node: LabNode, graceMs = 3_000): Promise<ExitInfo> {
  if (node.proc.exitCode === null && node.proc.signalCode === null) {
    node.proc.kill('SIGTERM');
    const timer = setTimeout(() => node.proc.kill('SIGKILL'), graceMs);
    try {
      return await node.exited;
    } finally {
      clearTimeout(timer);
    }
  }
  return node.exited;
}

/** Collects a stream's lines into a bounded array (the oldest are dropped). */
function captureLines(stream: NodeJS.ReadableStream | null, max: number): string[] {
  const lines: string[] = [];
  if (!stream) return lines;
  createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
    lines.push(line);
    if (lines.length > max) lines.splice(0, lines.length - max);
  });
  return lines;
}

/** The node's JSON log records (lines that do not parse are skipped). */
export function logRecords(node: LabNode): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of node.stderrLines) {
    try {
      const v: unknown = JSON.parse(line);
      if (v && typeof v === 'object') out.push(v as Record<string, unknown>);
    } catch {
      // not a JSON log line
    }
  }
  return out;
}

/** Runs `grapevine status --json` inside host i against the node at host i's address. */
export async function statusOf(lab: Lab, i: number, port: number, timeoutMs = DEFAULT_STATUS_TIMEOUT_MS): Promise<NodeStatus> {
  const addr = `${lab.host(i).ip}:${port}`;
  const out = await lab.exec(i, [process.execPath, GRAPEVINE_JS, 'status', '--json', '--addr', addr], { timeoutMs });
  return parseStatus(out, addr);
}

export function parseStatus(out: string, addr: string): NodeStatus {
  let v: unknown;
  try {
    v = JSON.parse(out);
  } catch {
    throw new Error(`status of ${addr} is not JSON: ${out.slice(0, 200)}`);
  }
  const s = v as Partial<NodeStatus> | null;
  if (!s || typeof s.id !== 'string' || !Array.isArray(s.members) || !Array.isArray(s.neighbours)) {
    throw new Error(`status of ${addr} lacks id/members/neighbours: ${out.slice(0, 200)}`);
  }
  for (const m of s.members) {
    if (typeof m?.id !== 'string' || typeof m.host !== 'string' || typeof m.port !== 'number' || !['alive', 'suspect', 'dead'].includes(m.state) || typeof m.incarnation !== 'number') {
      throw new Error(`status of ${addr} has a malformed member: ${JSON.stringify(m)}`);
    }
  }
  return s as NodeStatus;
}

export interface WaitResult {
  readonly elapsedMs: number;
}

/**
 * Polls predicate every intervalMs until it returns true; a throw counts as
 * "not yet". Rejects after timeoutMs with the last error or describe()'s text.
 */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
  describe?: () => string | Promise<string>,
): Promise<WaitResult> {
  const start = performance.now();
  let lastError: unknown;
  for (;;) {
    try {
      if (await predicate()) return { elapsedMs: performance.now() - start };
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const elapsedMs = performance.now() - start;
    if (elapsedMs >= timeoutMs) {
      const detail = describe ? await describe() : lastError ? String(lastError) : 'predicate stayed false';
      throw new Error(`waitUntil: not true within ${timeoutMs} ms: ${detail}`);
    }
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, timeoutMs - elapsedMs))));
  }
}

/** Ids of self's ring neighbours among the live endpoints (the node's own rule from src/core/ring.ts). */
export function expectedRingNeighbours(live: readonly Endpoint[], self: Endpoint): string[] {
  return ringNeighbours(self, live).map((e) => e.id).sort();
}

export interface TcpConnection {
  readonly local: { host: string; port: number };
  readonly peer: { host: string; port: number };
}

/** Established TCP connections inside host i (`ss`), optionally those with `port` at either end. */
export async function establishedTcp(lab: Lab, i: number, port?: number): Promise<TcpConnection[]> {
  const out = await lab.exec(i, ['ss', '-H', '-t', '-n', 'state', 'established']);
  const conns: TcpConnection[] = [];
  for (const line of out.split('\n')) {
    // columns: Recv-Q Send-Q Local:Port Peer:Port
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4) continue;
    const local = splitAddr(cols[2]!);
    const peer = splitAddr(cols[3]!);
    if (!local || !peer) continue;
    if (port === undefined || local.port === port || peer.port === port) conns.push({ local, peer });
  }
  return conns;
}

function splitAddr(s: string): { host: string; port: number } | undefined {
  const at = s.lastIndexOf(':');
  if (at < 0) return undefined;
  return { host: s.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(s.slice(at + 1)) };
}
