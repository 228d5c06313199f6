// Shared by the gossip e2e and lab tests: exact-output runs of the binaries,
// cluster files, and "does this node hold exactly these messages, each once".
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GossipMessage, GrapevineClient } from '../../src/api/client.js';
import { ROOT } from './proc.js';

export const GCLIENT = join(ROOT, 'dist/cli/gclient.js');
export const GRAPEVINE_BIN = join(ROOT, 'dist/cli/grapevine.js');

export interface BinResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Exactly as written (trailing newline included). */
  readonly stdout: string;
  readonly stderr: string;
  readonly stderrLines: string[];
  readonly durationMs: number;
}

/** Runs `node SCRIPT ...args` to completion with exact stdout/stderr; SIGKILL after timeoutMs. */
export function runBin(script: string, args: readonly string[], timeoutMs = 10_000): Promise<BinResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
        stderrLines: stderr.split('\n').filter((l, i, a) => !(l === '' && i === a.length - 1)),
        durationMs: Date.now() - started,
      });
    });
  });
}

export const gclient = (args: readonly string[], timeoutMs?: number) => runBin(GCLIENT, args, timeoutMs);
export const grapevine = (args: readonly string[], timeoutMs?: number) => runBin(GRAPEVINE_BIN, args, timeoutMs);

export interface ClusterSpec {
  readonly name?: string;
  readonly multicast?: { group: string; port: number; interface?: string; ttl?: number };
  readonly nodes: readonly { id: string; host: string; port: number }[];
  readonly links?: readonly (readonly [string, string])[];
  /** Copies of each cache key (consistent hashing). */
  readonly replicas?: number;
}

export function writeClusterFile(path: string, spec: ClusterSpec): string {
  writeFileSync(path, `${JSON.stringify(spec, null, 2)}\n`);
  return path;
}

/** How `gclient --list` prints a message: one line, a newline as \n, a backslash as \\ (DESIGN.md section 1). */
export function listLine(text: string): string {
  let out = '';
  for (const ch of text) out += ch === '\\' ? '\\\\' : ch === '\n' ? '\\n' : ch;
  return out;
}

/** Every message a node holds, through the client library (all pages). */
export async function listAll(client: GrapevineClient, pageSize = 1_000): Promise<GossipMessage[]> {
  const out: GossipMessage[] = [];
  for await (const m of client.list(pageSize)) out.push(m);
  return out;
}

/**
 * What is wrong with a node's messages if it must hold exactly `expected`
 * (id -> text), each once; empty when right.
 */
export function holdingProblems(held: readonly { id: string; text: string }[], expected: ReadonlyMap<string, string>): string[] {
  const seen = new Map<string, number>();
  const out: string[] = [];
  for (const m of held) {
    seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    const want = expected.get(m.id);
    if (want === undefined) out.push(`unexpected ${m.id}`);
    else if (want !== m.text) out.push(`${m.id} has text ${JSON.stringify(m.text.slice(0, 40))}`);
  }
  for (const [id, n] of seen) if (n > 1) out.push(`${id} listed ${n} times`);
  const missing = [...expected.keys()].filter((id) => !seen.has(id));
  if (missing.length > 0) out.push(`${missing.length} missing (e.g. ${missing.slice(0, 3).join(', ')})`);
  return out;
}

/**
 * The same for `gclient --list` output (one line per message, escaped):
 * the lines must be exactly the expected texts' lines, each once.
 */
export function listOutputProblems(stdout: string, expected: ReadonlyMap<string, string>): string[] {
  if (expected.size === 0) return stdout === '' ? [] : [`expected no output, got ${JSON.stringify(stdout.slice(0, 80))}`];
  if (!stdout.endsWith('\n')) return ['output does not end with a newline'];
  const lines = stdout.slice(0, -1).split('\n');
  const want = new Map<string, number>();
  for (const text of expected.values()) want.set(listLine(text), (want.get(listLine(text)) ?? 0) + 1);
  const got = new Map<string, number>();
  for (const l of lines) got.set(l, (got.get(l) ?? 0) + 1);
  const out: string[] = [];
  for (const [l, n] of got) if (want.get(l) !== n) out.push(`line ${JSON.stringify(l.slice(0, 40))} x${n} (want x${want.get(l) ?? 0})`);
  for (const [l, n] of want) if (!got.has(l)) out.push(`line ${JSON.stringify(l.slice(0, 40))} missing (want x${n})`);
  return out;
}

/** Hop distances from `start` in an undirected graph given as links. */
export function hopsFrom(start: string, links: readonly (readonly [string, string])[]): Map<string, number> {
  const adj = new Map<string, string[]>();
  for (const [a, b] of links) {
    adj.set(a, [...(adj.get(a) ?? []), b]);
    adj.set(b, [...(adj.get(b) ?? []), a]);
  }
  const dist = new Map([[start, 0]]);
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const u = queue[i]!;
    for (const v of adj.get(u) ?? []) {
      if (!dist.has(v)) {
        dist.set(v, dist.get(u)! + 1);
        queue.push(v);
      }
    }
  }
  return dist;
}

export function percentile(values: readonly number[], p: number): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))]!;
}
