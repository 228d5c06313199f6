// End-to-end: the compiled mserver/mclient binaries (npm run build first) on
// 127.0.0.1, each test on its own random group and port so tests and other
// suites never hear each other. Every process started here is stopped by PID.
import { test, before } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { openMulticastSender, sendDatagram } from '../../src/runtime/multicast.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MSERVER = `${ROOT}dist/cli/mserver.js`;
const MCLIENT = `${ROOT}dist/cli/mclient.js`;
const LISTEN_TIMEOUT_MS = 5_000;
const DELIVERY_TIMEOUT_MS = 10_000;
/** How long a server must stay quiet after the expected lines to count as "nothing else". */
const QUIET_MS = 300;

interface Channel {
  group: string;
  port: number;
}

let channelCounter = 0;
/** A group and port no other test uses: random per run, distinct per test. */
function uniqueChannel(): Channel {
  channelCounter += 1;
  const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
  return { group: `239.255.${rand(100, 250)}.${(channelCounter % 250) + 1}`, port: rand(20_000, 60_000) };
}
const channelArgs = (c: Channel) => ['--group', c.group, '--port', String(c.port)];

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function start(t: TestContext, bin: string, args: string[]): Running {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.after(() => stop({ child, exited }));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** SIGTERM, then SIGKILL if it lingers; only this child, by its PID. */
async function stop(p: Pick<Running, 'child' | 'exited'>): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 3_000);
  await p.exited;
  clearTimeout(timer);
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function startServer(t: TestContext, c: Channel, extra: string[] = []): Promise<Running> {
  const s = start(t, MSERVER, [...channelArgs(c), ...extra]);
  let gone = false;
  void s.exited.then(() => (gone = true));
  await waitFor('mserver to listen', () => gone || /listening/.test(s.stderr()), LISTEN_TIMEOUT_MS);
  assert.ok(!gone, `mserver exited before listening: ${s.stderr()}`);
  return s;
}

async function runClient(t: TestContext, args: string[], input: string | Buffer = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = start(t, MCLIENT, args);
  c.child.stdin!.on('error', () => {}); // a client that refuses input early may close its stdin
  c.child.stdin!.end(input);
  const timer = setTimeout(() => c.child.kill('SIGKILL'), DELIVERY_TIMEOUT_MS);
  const code = await c.exited;
  clearTimeout(timer);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

const lineCount = (s: string) => s.split('\n').length - 1;

/** Stops a server once it printed `expected` lines and stayed quiet; returns what it printed. */
async function collect(s: Running, expected: number): Promise<string> {
  await waitFor(`${expected} lines (got ${lineCount(s.stdout())})`, () => lineCount(s.stdout()) >= expected, DELIVERY_TIMEOUT_MS);
  await sleep(QUIET_MS);
  await stop(s);
  assert.equal(await s.exited, 0, `mserver exit status; stderr: ${s.stderr()}`);
  assert.match(s.stderr(), /^mserver: listening on group \S+ port \d+ interface 127\.0\.0\.1\n$/);
  return s.stdout();
}

before(() => {
  for (const bin of [MSERVER, MCLIENT]) assert.ok(existsSync(bin), `${bin} is missing: run npm run build first`);
});

test('three mservers print every line one mclient sends, in order, and nothing else', async (t) => {
  const c = uniqueChannel();
  const servers = await Promise.all([0, 1, 2].map(() => startServer(t, c)));
  const lines = Array.from({ length: 200 }, (_, i) => `line ${i + 1} of 200`);
  lines[10] = ''; // an empty line is sent and printed as an empty line
  lines[20] = '  spaces kept  ';
  lines[30] = 'tab\tand back\\slash \\n stay as sent';
  lines[40] = 'ünïcödé ✓ 日本語 🙂';
  const client = await runClient(t, channelArgs(c), lines.join('\n') + '\n');
  assert.deepEqual(client, { code: 0, stdout: '', stderr: '' });
  for (const s of servers) assert.equal(await collect(s, lines.length), lines.join('\n') + '\n');
});

test('CRLF input and a last line without a line break', async (t) => {
  const c = uniqueChannel();
  const s = await startServer(t, c);
  const client = await runClient(t, channelArgs(c), 'one\r\ntwo\r\nthree');
  assert.equal(client.code, 0, client.stderr);
  assert.equal(await collect(s, 3), 'one\ntwo\nthree\n');
});

test('--message sends its text once', async (t) => {
  const c = uniqueChannel();
  const servers = await Promise.all([0, 1].map(() => startServer(t, c)));
  const client = await runClient(t, [...channelArgs(c), '--ttl', '1', '--interface', '127.0.0.1', '--message', 'hello, group ✓'], 'stdin is ignored\n');
  assert.deepEqual(client, { code: 0, stdout: '', stderr: '' });
  for (const s of servers) assert.equal(await collect(s, 1), 'hello, group ✓\n');
});

test('mserver prints invalid UTF-8 and control characters safely, one line per datagram', async (t) => {
  const c = uniqueChannel();
  const s = await startServer(t, c);
  const config = { ...c, interface: '127.0.0.1', ttl: 1 };
  const sender = await openMulticastSender(config);
  t.after(() => sender.close());
  const datagrams = [Buffer.from([0x61, 0xff, 0x62]), Buffer.from('two\nlines\r'), Buffer.from('\x1b[2Jclear'), Buffer.from('')];
  for (const d of datagrams) await sendDatagram(sender, d, c.port, c.group);
  assert.equal(await collect(s, 4), 'a\uFFFDb\ntwo\\x0alines\\x0d\n\\x1b[2Jclear\n\n');
});

test('a line over 8 KiB is refused with exit 2; the lines before it are sent, none after', async (t) => {
  const c = uniqueChannel();
  const s = await startServer(t, c);
  const full = 'y'.repeat(8 * 1024);
  const client = await runClient(t, channelArgs(c), `before\n${full}\n${'x'.repeat(8 * 1024 + 1)}\nafter\n`);
  assert.equal(client.code, 2);
  assert.match(client.stderr, /^mclient: line 3 of standard input is longer than 8192 bytes[^\n]*\n$/);
  assert.equal(await collect(s, 2), `before\n${full}\n`);
  const message = await runClient(t, [...channelArgs(c), '--message', 'z'.repeat(8 * 1024 + 1)]);
  assert.equal(message.code, 2);
  assert.match(message.stderr, /^mclient: --message is 8193 bytes, over the 8192-byte limit[^\n]*\n$/);
});

test('mserver and mclient stop cleanly with exit 0 on SIGINT and SIGTERM', async (t) => {
  const c = uniqueChannel();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const s = await startServer(t, c);
    // The client sends one line and keeps waiting on its open stdin; once the
    // line has arrived, its signal handlers are surely in place.
    const client = start(t, MCLIENT, channelArgs(c));
    client.child.stdin!.write(`before ${signal}\n`);
    await waitFor('the line before the signal', () => s.stdout() === `before ${signal}\n`, DELIVERY_TIMEOUT_MS);
    client.child.kill(signal);
    assert.equal(await client.exited, 0, client.stderr());
    assert.equal(client.stderr(), '');
    s.child.kill(signal);
    assert.equal(await s.exited, 0, s.stderr());
  }
});

test('--help prints usage on stdout and exits 0', async (t) => {
  for (const bin of [MSERVER, MCLIENT]) {
    const p = start(t, bin, ['--help']);
    assert.equal(await p.exited, 0);
    assert.match(p.stdout(), /^Usage: m(server|client) /);
    assert.equal(p.stderr(), '');
  }
});

test('bad usage exits 2 with one line on stderr naming the problem', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /unknown option --bogus/],
    [['--port'], /option --port needs a value/],
    [['--group'], /option --group needs a value/],
    [['--group', '10.77.1.3'], /--group must be an IPv4 multicast address.*'10\.77\.1\.3'/],
    [['--port', '70000'], /--port must be a port number.*'70000'/],
    [['--port', 'abc'], /--port must be a port number.*'abc'/],
    [['--interface', '0.0.0.0'], /--interface must be the IPv4 address of one local interface/],
    [['--interface', '10.77.250.9'], /--interface 10\.77\.250\.9 is not an address of this host/],
    [['stray'], /unexpected argument stray/],
  ];
  const clientOnly: Array<[string[], RegExp]> = [
    [['--ttl', '0'], /--ttl must be an integer from 1 to 255/],
    [['--message', 'a\nb'], /--message must be one line/],
  ];
  const runs = [
    ...[...cases, [['--ttl', '1'], /unknown option --ttl/] as [string[], RegExp]].map(([args, re]) => ({ bin: MSERVER, name: 'mserver', args, re })),
    ...[...cases, ...clientOnly].map(([args, re]) => ({ bin: MCLIENT, name: 'mclient', args, re })),
  ];
  await Promise.all(
    runs.map(async ({ bin, name, args, re }) => {
      const p = start(t, bin, args);
      p.child.stdin!.end();
      const code = await p.exited;
      const what = `${name} ${args.join(' ')}`;
      assert.equal(code, 2, `${what}: exit status`);
      assert.equal(p.stdout(), '', `${what}: stdout`);
      assert.equal(lineCount(p.stderr()), 1, `${what}: one line on stderr, got ${JSON.stringify(p.stderr())}`);
      assert.ok(p.stderr().startsWith(`${name}: `), `${what}: ${p.stderr()}`);
      assert.match(p.stderr(), re, what);
    }),
  );
});
