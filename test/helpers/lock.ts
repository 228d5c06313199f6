// Shared by the lock e2e and lab tests: what `grapevine lock acquire` prints
// (one fencing token), "these tokens strictly increase", an acquire running
// in the background whose grant is timed when its token line appears, "has
// this process connected to that port yet" (from /proc, so a waiter is known
// to be queued before the holder lets go), and the CLI run inside a lab host
// with its exit status.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BinResult } from './gossip.js';
import type { Lab } from './lab.js';
import { GRAPEVINE, spawnNodeScript } from './proc.js';
import type { Proc } from './proc.js';

/** What `grapevine lock acquire` prints on success: one positive whole number and a newline. */
const TOKEN_LINE = /^[1-9]\d*$/;

/** The token of a successful `grapevine lock acquire`: exit 0, exactly one token line on stdout, nothing on stderr. */
export function tokenOf(r: BinResult, what: string): bigint {
  assert.equal(r.code, 0, `${what}: exit status ${r.code} (want 0); stderr: ${r.stderr.slice(0, 500)}`);
  assert.equal(r.stderr, '', `${what}: nothing on stderr`);
  assert.match(r.stdout, /^[1-9]\d*\n$/, `${what}: stdout is one token and a newline, got ${JSON.stringify(r.stdout)}`);
  return BigInt(r.stdout.trim());
}

/** A successful `grapevine lock release`: exit 0, silent. */
export function assertReleased(r: BinResult, what: string): void {
  assert.equal(r.code, 0, `${what}: exit status ${r.code} (want 0); stderr: ${r.stderr.slice(0, 500)}`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
  assert.equal(r.stderr, '', `${what}: nothing on stderr`);
}

/** Each token greater than the one before it. */
export function assertStrictlyIncreasing(tokens: readonly bigint[], what: string): void {
  for (let k = 1; k < tokens.length; k++) {
    assert.ok(tokens[k]! > tokens[k - 1]!, `${what}: token #${k} (${tokens[k]}) is not greater than #${k - 1} (${tokens[k - 1]}); all: [${tokens.join(', ')}]`);
  }
}

// ---- an acquire in the background ----------------------------------------

export interface Grant {
  readonly token: bigint;
  /** Date.now() when the token line was read. */
  readonly at: number;
}

export interface BackgroundAcquire {
  readonly proc: Proc;
  /** Date.now() just before the spawn. */
  readonly spawnedAt: number;
  /** The token line and when it came; rejects if the process ends without one. */
  readonly granted: Promise<Grant>;
  /** The process's end: status, all of stdout and stderr, and Date.now() then. */
  readonly done: Promise<BinResult & { readonly at: number }>;
}

/**
 * Runs `grapevine ARGS` (a `lock acquire`) without waiting for it; killed (-9)
 * in t.after if still running. The grant is timed by this process's clock.
 */
export function acquireInBackground(t: TestContext, label: string, args: readonly string[], timeoutMs: number): BackgroundAcquire {
  const spawnedAt = Date.now();
  const proc = spawnNodeScript(t, label, GRAPEVINE, args);
  const timer = setTimeout(() => void proc.kill9(), timeoutMs);
  const granted = proc.waitForLine('stdout', () => true, timeoutMs, 'a token line').then((line): Grant => {
    const at = Date.now();
    assert.match(line, TOKEN_LINE, `${label}: the stdout line is a token`);
    return { token: BigInt(line), at };
  });
  granted.catch(() => undefined); // awaited by the test when it matters; never an unhandled rejection
  const done = proc.exited.then((e) => {
    clearTimeout(timer);
    const stderr = proc.stderr.length > 0 ? `${proc.stderr.join('\n')}\n` : '';
    return {
      code: e.code,
      signal: e.signal,
      stdout: proc.stdout.length > 0 ? `${proc.stdout.join('\n')}\n` : '',
      stderr,
      stderrLines: [...proc.stderr],
      durationMs: Date.now() - spawnedAt,
      at: Date.now(),
    };
  });
  return { proc, spawnedAt, granted, done };
}

// ---- has a client connected yet ------------------------------------------

/** Socket inodes of a process (from /proc/PID/fd); empty once it is gone. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Whether process `pid` has an established TCP connection to remote port `port` (IPv4, its own network namespace). */
export function hasConnectionTo(pid: number, port: number): boolean {
  const inodes = socketInodes(pid);
  if (inodes.size === 0) return false;
  let table: string;
  try {
    table = readFileSync(`/proc/${pid}/net/tcp`, 'utf8');
  } catch {
    return false;
  }
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const remPort = parseInt(f[2]!.split(':')[1]!, 16);
    if (remPort === port && f[3] === '01' && inodes.has(f[9]!)) return true;
  }
  return false;
}

/** Polls until `pid` is connected to `port`; ms it took. Throws after timeoutMs. */
export async function waitConnected(pid: number, port: number, timeoutMs: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!hasConnectionTo(pid, port)) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: pid ${pid} not connected to port ${port} within ${timeoutMs} ms`);
    await sleep(10);
  }
  return Date.now() - t0;
}

// ---- the CLI inside a lab host -------------------------------------------

/**
 * Runs `node SCRIPT ARGS` inside lab host i to completion (the lab kills it
 * in destroy() if the test ends first); SIGKILL by PID after timeoutMs.
 * Unlike lab.exec, resolves with the exit status and both streams.
 */
export function labRun(lab: Lab, i: number, script: string, args: readonly string[], timeoutMs: number): Promise<BinResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = lab.spawn(i, [process.execPath, script, ...args]);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
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
        stderrLines: stderr.split('\n').filter((l, k, a) => !(l === '' && k === a.length - 1)),
        durationMs: Date.now() - started,
      });
    });
  });
}
