/**
 * Issue 2's lab test of the multicast chat (seed 001, DESIGN.md "Multicast
 * chat"): `mserver` in three namespaces prints every line that one `mclient`
 * in a fourth namespace sends, in order, and nothing else. Real processes,
 * real multicast across the lab bridge; each command names its own lab
 * address as --interface, so nothing is sent or joined anywhere else.
 *
 * "Nothing else" is checked against traffic that a sloppy server would print:
 * a datagram to the same group on another port, and one to another group on
 * the same port while a second mserver in one of the namespaces has joined
 * that other group (a socket bound to 0.0.0.0 would see it there).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT, waitUntil } from '../helpers/lab-cluster.js';
import { Lab, labTestOptions, requireLab } from '../helpers/lab.js';

const MSERVER_JS = join(REPO_ROOT, 'dist', 'cli', 'mserver.js');
const MCLIENT_JS = join(REPO_ROOT, 'dist', 'cli', 'mclient.js');
const GROUP = '239.255.77.51';
const OTHER_GROUP = '239.255.77.52';
const PORT = 7751;
const SERVERS = [0, 1, 2];
const CLIENT = 3;
const LINES = 100;
/** How long to keep listening after the last expected line, for anything extra. */
const QUIET_MS = 750;

interface Server {
  readonly proc: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function lines(stream: NodeJS.ReadableStream | null): string[] {
  const out: string[] = [];
  if (stream) createInterface({ input: stream, crlfDelay: Infinity }).on('line', (l) => out.push(l));
  return out;
}

function startServer(lab: Lab, i: number, group: string): Server {
  const proc = lab.spawn(i, [process.execPath, MSERVER_JS, '--interface', lab.host(i).ip, '--group', group, '--port', String(PORT)]);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, stdout: lines(proc.stdout), stderr: lines(proc.stderr), exited };
}

/** mclient inside host i; resolves with its stdout, rejects (with stderr) on a non-zero exit. */
function mclient(lab: Lab, i: number, args: readonly string[], input?: string): Promise<string> {
  const argv = [process.execPath, MCLIENT_JS, '--interface', lab.host(i).ip, ...args];
  return lab.exec(i, argv, { timeoutMs: 15_000, ...(input === undefined ? {} : { input }) });
}

/** 100 lines: numbered, with tabs, spaces at both ends, backslashes, non-ASCII text and one empty line. */
function chatLines(): string[] {
  return Array.from({ length: LINES }, (_, n) => {
    if (n === 40) return '';
    if (n % 10 === 3) return `  line ${n}\twith a tab and spaces  `;
    if (n % 10 === 7) return `line ${n}: back\\slash, grüße, ✓, 日本語`;
    return `line ${n}`;
  });
}

test('lab: mserver in three namespaces prints every line one mclient sends, in order, and nothing else', labTestOptions({ timeout: 60_000 }), async (t) => {
  requireLab();
  const t0 = performance.now();
  const lab = await Lab.create({ hosts: 4 });
  t.after(() => lab.destroy());

  const servers = SERVERS.map((i) => startServer(lab, i, GROUP));
  const otherGroupServer = startServer(lab, SERVERS[0]!, OTHER_GROUP);
  // mserver --help: 'one "listening" line goes to stderr once the group is joined'.
  for (const s of [...servers, otherGroupServer]) {
    await waitUntil(
      () => {
        if (s.proc.exitCode !== null) throw new Error(`mserver exited ${s.proc.exitCode}: ${s.stderr.join(' | ')}`);
        return s.stderr.some((l) => l.startsWith('mserver: listening'));
      },
      10_000,
      50,
      () => `no "listening" line from mserver pid ${s.proc.pid}; stderr: ${s.stderr.join(' | ')}`,
    );
  }

  // Traffic the group's servers must not print.
  assert.equal(await mclient(lab, CLIENT, ['--group', GROUP, '--port', String(PORT + 1), '--message', 'stray: same group, other port']), '');
  assert.equal(await mclient(lab, CLIENT, ['--group', OTHER_GROUP, '--port', String(PORT), '--message', 'stray: other group, same port']), '');

  const sent = chatLines();
  const sendAt = performance.now();
  assert.equal(await mclient(lab, CLIENT, ['--group', GROUP, '--port', String(PORT)], `${sent.join('\n')}\n`), '', 'mclient prints nothing on stdout');
  const sentMs = performance.now() - sendAt;

  await waitUntil(
    () => servers.every((s) => s.stdout.length >= LINES),
    5_000,
    20,
    () => `lines received: ${servers.map((s) => s.stdout.length).join(', ')} of ${LINES}`,
  );
  const receivedMs = performance.now() - sendAt;
  await sleep(QUIET_MS);

  for (const [k, s] of servers.entries()) {
    assert.deepEqual(s.stdout, sent, `mserver in host ${SERVERS[k]} printed exactly the ${LINES} lines, in order`);
    assert.deepEqual(s.stderr.filter((l) => !l.startsWith('mserver: listening')), [], `mserver in host ${SERVERS[k]} wrote nothing else on stderr`);
  }
  // The other group's server heard its own group only (and so proves that datagram was delivered to the namespace).
  assert.deepEqual(otherGroupServer.stdout, ['stray: other group, same port']);

  // SIGTERM: clean exit 0, and still nothing extra on stdout.
  for (const s of [...servers, otherGroupServer]) s.proc.kill('SIGTERM');
  const exits = await Promise.all([...servers, otherGroupServer].map((s) => s.exited));
  assert.deepEqual(exits, exits.map(() => ({ code: 0, signal: null })));
  for (const s of servers) assert.equal(s.stdout.length, LINES);

  process.stderr.write(
    `mchat lab: ${LINES} lines sent in ${Math.round(sentMs)} ms (mclient process included), all received by ${servers.length} servers within ${Math.round(receivedMs)} ms; total ${Math.round(performance.now() - t0)} ms\n`,
  );
});
