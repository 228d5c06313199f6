// End-to-end: bad input, through the compiled binaries on 127.0.0.1.
// (a) The CLI: a bad cluster file, option or value exits 2, an operational
//     failure exits 1, each with exactly one line on stderr naming the problem.
// (b) A running node under hostile input — random bytes, a frame announcing
//     4 GiB, a truncated frame, garbage after a valid header, silence, and
//     garbage datagrams on its multicast group and its unicast beacon port —
//     keeps running and answering status, closes each connection when that is
//     right, keeps its memory flat and logs each offence once per peer per
//     interval. Hostile TCP clients use distinct loopback source addresses
//     (127.0.0.2-6, all of 127/8 is local) so each kind of offence is one
//     "peer" whose log lines can be counted; every packet goes to 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECTION_LIMITS_DEFAULT } from '../../src/runtime/connection.js';
import { decodeEnvelope } from '../../src/wire/index.js';
import { freePort, jsonLines, pollUntil, randomMcast, rssBytes, runCli, startNode, statusOf, tempDir } from '../helpers/proc.js';
import type { CliResult } from '../helpers/proc.js';

/** Exactly one stderr line, "grapevine: ...", containing every `needles` entry; no stack trace. */
function assertOneLine(r: CliResult, code: number, needles: readonly string[], what: string): void {
  assert.equal(r.code, code, `${what}: exit status ${r.code} (want ${code}); stderr: ${r.stderr}`);
  assert.equal(r.stderrLines.length, 1, `${what}: want exactly one stderr line, got ${r.stderrLines.length}:\n${r.stderr}`);
  const line = r.stderrLines[0]!;
  assert.match(line, /^grapevine: /, `${what}: ${line}`);
  assert.doesNotMatch(line, /internal error|\n\s+at /, `${what}: ${line}`);
  for (const n of needles) assert.ok(line.includes(n), `${what}: '${line}' should mention '${n}'`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
}

test('CLI: bad cluster file, option or value exits 2; unreachable node or taken port exits 1; one stderr line each', async (t) => {
  const dir = tempDir(t);
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const invalidJson = file('invalid.json', '{\n  "name": "demo",\n  "nodes": [ { "id": "1", "host": "127.0.0.1", "port": 7001 }, ]\n}\n');
  const portX = file('port-x.json', JSON.stringify({ nodes: [{ id: '1', host: '127.0.0.1', port: 'x' }] }));
  const unknownField = file('unknown-field.json', JSON.stringify({ nodes: [{ id: '1', host: '127.0.0.1', port: 7001 }], colour: 'red' }));
  const good = file('good.json', JSON.stringify({ name: 'demo', nodes: [{ id: '1', host: '127.0.0.1', port: 7001 }, { id: '2', host: '127.0.0.1', port: 7002 }] }));
  const nobodyPort = await freePort();
  const mcast = randomMcast().arg;

  // A port someone else holds.
  const holder = net.createServer();
  const takenPort = await freePort();
  await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: takenPort, exclusive: true }, resolve));
  t.after(() => new Promise<void>((resolve) => holder.close(() => resolve())));

  const dataDir = (name: string) => ['--data-dir', join(dir, `data-${name}`)];
  const cases: { what: string; args: string[]; code: number; needles: string[] }[] = [
    { what: 'invalid JSON', args: ['node', '--cluster', invalidJson, '--id', '1', ...dataDir('a')], code: 2, needles: [invalidJson, 'not valid JSON', 'line 3'] },
    { what: 'port "x"', args: ['node', '--cluster', portX, '--id', '1', ...dataDir('b')], code: 2, needles: [portX, 'nodes[0].port'] },
    { what: 'unknown field', args: ['node', '--cluster', unknownField, '--id', '1', ...dataDir('c')], code: 2, needles: [unknownField, "unknown field 'colour'"] },
    { what: '--id not in the file', args: ['node', '--cluster', good, '--id', '9', ...dataDir('d')], code: 2, needles: [good, "'9'"] },
    { what: 'unknown option', args: ['node', '--host', '127.0.0.1', '--port', '7001', '--bogus'], code: 2, needles: ['--bogus'] },
    { what: '--port without a value (last)', args: ['node', '--host', '127.0.0.1', '--port'], code: 2, needles: ['--port', 'value'] },
    { what: '--port without a value (followed by an option)', args: ['node', '--host', '127.0.0.1', '--port', '--id', 'x'], code: 2, needles: ['--port', 'value'] },
    { what: '--port not a number', args: ['node', '--host', '127.0.0.1', '--port', 'x'], code: 2, needles: ['--port', "'x'"] },
    { what: 'status: unknown option', args: ['status', '--addr', `127.0.0.1:${nobodyPort}`, '--bogus'], code: 2, needles: ['--bogus'] },
    { what: 'status: nobody listens', args: ['status', '--addr', `127.0.0.1:${nobodyPort}`, '--json'], code: 1, needles: [`127.0.0.1:${nobodyPort}`] },
    {
      what: 'node: port already in use',
      args: ['node', '--host', '127.0.0.1', '--port', String(takenPort), '--id', 'taken', '--mcast', mcast, '--mcast-interface', '127.0.0.1', ...dataDir('e')],
      code: 1,
      needles: [`127.0.0.1:${takenPort}`, 'in use'],
    },
  ];
  const results = await Promise.all(cases.map((c) => runCli(c.args, { timeoutMs: 10_000 })));
  cases.forEach((c, i) => assertOneLine(results[i]!, c.code, c.needles, c.what));
});

interface Hostile {
  /** ms from the write until the node closed the connection (Infinity: still open at the guard). */
  readonly closedAfterMs: number;
  readonly error?: string;
}

/** Connects from `localAddress`, writes `payload` (never ends its side) and measures when the node closes. */
function hostileConnection(localAddress: string, port: number, payload: Uint8Array | readonly Uint8Array[], guardMs: number): Promise<Hostile> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let sentAt = 0;
    let done = false;
    const finish = (h: Hostile) => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      socket.destroy();
      resolve(h);
    };
    const guard = setTimeout(() => finish({ closedAfterMs: Infinity }), guardMs);
    socket.on('connect', () => {
      sentAt = Date.now();
      for (const chunk of Array.isArray(payload) ? payload : [payload]) if (chunk.length > 0) socket.write(chunk);
    });
    socket.on('data', () => undefined);
    socket.on('end', () => finish({ closedAfterMs: Date.now() - sentAt }));
    socket.on('close', () => finish({ closedAfterMs: sentAt ? Date.now() - sentAt : Infinity }));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset by the node is a close too; failing to connect is not.
      if (sentAt && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) finish({ closedAfterMs: Date.now() - sentAt });
      else finish({ closedAfterMs: Infinity, error: err.message });
    });
  });
}

function header(length: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(length);
  return b;
}

/** Drop counters of the UDP sockets bound to `port` (from /proc/net/udp). */
function udpDrops(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let drops = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 13 || !cols[1]!.endsWith(`:${hex}`)) continue;
    drops += Number(cols[cols.length - 1]);
  }
  return drops;
}

async function udpSocket(t: { after: (fn: () => Promise<void>) => void }): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind({ address: '127.0.0.1', port: 0 }, resolve));
  s.setMulticastInterface('127.0.0.1');
  s.setMulticastLoopback(true);
  s.setMulticastTTL(0);
  t.after(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return s;
}

function send(s: dgram.Socket, bytes: Uint8Array, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => s.send(bytes, port, host, (err) => (err ? reject(err) : resolve())));
}

const MAGIC = Buffer.from('GVB1');
/** The i-th garbage datagram: random bytes, our magic then junk, oversize, or empty. */
function garbageDatagram(i: number): Buffer {
  switch (i % 4) {
    case 0:
      return randomBytes(64);
    case 1:
      return Buffer.concat([MAGIC, Buffer.alloc(40, 0xff)]);
    case 2:
      return randomBytes(1_500);
    default:
      return Buffer.alloc(0);
  }
}

test('a node under hostile TCP and UDP input keeps running, closes bad connections, stays flat, logs once per peer', async (t) => {
  const dir = tempDir(t);
  const mc = randomMcast();
  const port = await freePort();
  const node = await startNode(t, { id: 'target', port, dataDir: join(dir, 'target'), mcast: mc.arg });
  const log = node.proc;

  // Warm up, then take the baseline RSS.
  for (let i = 0; i < 5; i++) await statusOf(port);
  await sleep(200);
  const rssBefore = rssBytes(log.pid);

  const garbageBody = Buffer.alloc(32, 0xff);
  const FRAME_MAX = CONNECTION_LIMITS_DEFAULT.frameBytesMax;
  const bigBody = Buffer.alloc(FRAME_MAX - 1, 0x41);
  assert.throws(() => decodeEnvelope(garbageBody), 'precondition: the garbage body is not a valid envelope');
  const HELLO_TIMEOUT_MS = 5_000;
  const GUARD_MS = HELLO_TIMEOUT_MS + 3_000;
  const kinds = [
    { name: 'oversize (4 GiB header)', from: '127.0.0.2', count: 60, payload: () => Buffer.from([0xff, 0xff, 0xff, 0xff]) },
    { name: 'random bytes', from: '127.0.0.3', count: 50, payload: () => randomBytes(256) },
    { name: 'garbage after a valid header', from: '127.0.0.4', count: 50, payload: () => Buffer.concat([header(garbageBody.length), garbageBody]) },
    { name: 'truncated frame (100 announced, 10 sent)', from: '127.0.0.5', count: 40, payload: () => Buffer.concat([header(100), randomBytes(10)]) },
    { name: 'silence (no hello)', from: '127.0.0.6', count: 10, payload: () => Buffer.alloc(0) },
    // Within the frame limit, but no hello is that big: must not be buffered (20 x 4 MiB otherwise).
    { name: 'a 4 MiB first frame (no hello)', from: '127.0.0.7', count: 20, payload: () => [header(FRAME_MAX), bigBody] },
  ] as const;
  const hostileStart = Date.now();
  const outcomes = kinds.map((k) => Promise.all(Array.from({ length: k.count }, () => hostileConnection(k.from, port, k.payload(), GUARD_MS))));

  // Meanwhile: garbage datagrams, 2,000 on the multicast group from one
  // socket and 100 to the node's unicast beacon port from another.
  const mcastSender = await udpSocket(t);
  const unicastSender = await udpSocket(t);
  const mcastDropsBefore = udpDrops(mc.port);
  const unicastDropsBefore = udpDrops(port);
  // Paced a little so the kernel's receive buffer does not simply drop most of them.
  for (let i = 0; i < 2_000; i += 10) {
    await Promise.all(Array.from({ length: 10 }, (_, j) => send(mcastSender, garbageDatagram(i + j), mc.port, mc.group)));
    await sleep(1);
  }
  for (let i = 0; i < 100; i += 10) {
    await Promise.all(Array.from({ length: 10 }, (_, j) => send(unicastSender, garbageDatagram(i + j), port, '127.0.0.1')));
    await sleep(1);
  }
  const mcastFrom = `127.0.0.1:${(mcastSender.address()).port}`;
  const unicastFrom = `127.0.0.1:${(unicastSender.address()).port}`;

  // It keeps answering status while under attack.
  const during = await statusOf(port);
  assert.equal(during.id, 'target');

  const results = await Promise.all(outcomes);
  t.diagnostic(`hostile phase took ${Date.now() - hostileStart} ms`);
  const closeTimes = (i: number) => results[i]!.map((h) => h.closedAfterMs);
  for (const [i, k] of kinds.entries()) {
    const errs = results[i]!.filter((h) => h.error);
    assert.deepEqual(errs, [], `${k.name}: every connection was accepted`);
    const times = closeTimes(i);
    t.diagnostic(`${k.name}: ${k.count} connections closed by the node after ${Math.min(...times)}-${Math.max(...times)} ms`);
  }
  // Oversize and garbage: closed at once. Random bytes: closed (at once, or at
  // the latest when no hello came). Truncated and silent: held until the hello timeout, then closed.
  for (const t0 of closeTimes(0)) assert.ok(t0 < 1_000, `oversize closed after ${t0} ms`);
  for (const t0 of closeTimes(2)) assert.ok(t0 < 1_000, `garbage after a header closed after ${t0} ms`);
  for (const t0 of closeTimes(5)) assert.ok(t0 < 1_000, `a 4 MiB first frame closed after ${t0} ms`);
  for (const t0 of closeTimes(1)) assert.ok(t0 < HELLO_TIMEOUT_MS + 2_000, `random bytes closed after ${t0} ms`);
  for (const i of [3, 4]) for (const t0 of closeTimes(i)) assert.ok(t0 >= HELLO_TIMEOUT_MS - 500 && t0 < HELLO_TIMEOUT_MS + 2_000, `${kinds[i]!.name} closed after ${t0} ms`);

  // Still running, still answering, still itself.
  assert.ok(log.running, 'the node is still running');
  const after = await statusOf(port);
  assert.deepEqual(after.members.map((m) => [m.id, m.state]), [['target', 'alive']]);

  // Memory flat.
  await sleep(200);
  const rssAfter = rssBytes(log.pid);
  const grewMb = (rssAfter - rssBefore) / (1 << 20);
  t.diagnostic(`RSS ${(rssBefore / (1 << 20)).toFixed(1)} MB -> ${(rssAfter / (1 << 20)).toFixed(1)} MB (${grewMb >= 0 ? '+' : ''}${grewMb.toFixed(1)} MB)`);
  assert.ok(grewMb < 20, `RSS grew ${grewMb.toFixed(1)} MB`);

  // Logged once per peer per interval (10 s; this whole phase is shorter).
  assert.ok(Date.now() - hostileStart < 10_000, 'the check assumes the hostile phase fits in one log interval');
  const records = jsonLines(log.stderr);
  const mcastDrops = udpDrops(mc.port) - mcastDropsBefore;
  const unicastDrops = udpDrops(port) - unicastDropsBefore;
  t.diagnostic(`garbage datagrams dropped by the kernel before the node read them: ${mcastDrops} of 2,000 multicast, ${unicastDrops} of 100 unicast`);
  assert.ok(mcastDrops <= 1_000, `most garbage datagrams must reach the node for the count to mean anything (${mcastDrops} dropped)`);
  const datagramLines = records.filter((r) => r.msg === 'dropped a malformed datagram');
  assert.equal(datagramLines.filter((r) => r.from === mcastFrom).length, 1, `2,000 garbage datagrams from ${mcastFrom} are logged once: ${JSON.stringify(datagramLines)}`);
  assert.equal(datagramLines.filter((r) => r.from === unicastFrom).length, 1, `100 garbage datagrams from ${unicastFrom} are logged once: ${JSON.stringify(datagramLines)}`);
  assert.equal(datagramLines.length, 2, `no other datagram offences: ${JSON.stringify(datagramLines)}`);

  const protocolLines = records.filter((r) => r.msg === 'dropped a connection that broke the protocol');
  const byKey = (msg: string, key: string) => records.filter((r) => r.msg === msg && r.offenceKey === key);
  const oversize = byKey('dropped a connection that broke the protocol', 'protocol:127.0.0.2');
  assert.equal(oversize.length, 1, `60 oversize frames from one address: one line: ${JSON.stringify(protocolLines)}`);
  assert.match(String(oversize[0]!.reason), /4294967295 bytes exceeds the limit/);
  const garbage = byKey('dropped a connection that broke the protocol', 'protocol:127.0.0.4');
  assert.equal(garbage.length, 1, `50 garbage frames from one address: one line: ${JSON.stringify(protocolLines)}`);
  assert.match(String(garbage[0]!.reason), /malformed envelope/);
  assert.equal(byKey('dropped a connection that broke the protocol', 'protocol:127.0.0.3').length, 1, `random bytes from one address: one line: ${JSON.stringify(protocolLines)}`);
  const bigFirst = byKey('dropped a connection that broke the protocol', 'protocol:127.0.0.7');
  assert.equal(bigFirst.length, 1, `20 big first frames from one address: one line: ${JSON.stringify(protocolLines)}`);
  assert.match(String(bigFirst[0]!.reason), new RegExp(`${FRAME_MAX} bytes exceeds the limit`));
  assert.equal(protocolLines.length, 4, `one protocol line per offending address: ${JSON.stringify(protocolLines)}`);
  for (const from of ['127.0.0.5', '127.0.0.6']) {
    assert.equal(byKey('connection sent no hello in time; closed', `no_hello:${from}`).length, 1, `no hello from ${from}: one line`);
  }
  const noHelloLines = records.filter((r) => typeof r.offenceKey === 'string' && (r.offenceKey as string).startsWith('no_hello:'));
  assert.ok(noHelloLines.length <= 3, `at most one no-hello line per address: ${JSON.stringify(noHelloLines)}`);

  // Once the interval has passed, the next offence of the same peer is logged
  // again, with the count of those held back: every one was seen, none logged.
  const firstOversizeAt = oversize[0]!.time as number;
  const firstDatagramAt = datagramLines.find((r) => r.from === mcastFrom)!.time as number;
  await sleep(Math.max(0, Math.max(firstOversizeAt, firstDatagramAt) + 10_000 + 300 - Date.now()));
  const again = await hostileConnection('127.0.0.2', port, Buffer.from([0xff, 0xff, 0xff, 0xff]), 2_000);
  assert.ok(again.closedAfterMs < 1_000, `oversize closed after ${again.closedAfterMs} ms`);
  await send(mcastSender, garbageDatagram(0), mc.port, mc.group);
  const second = await pollUntil(
    'the next offences after the interval to be logged',
    async () => {
      const recs = jsonLines(log.stderr);
      const o = recs.filter((r) => r.offenceKey === 'protocol:127.0.0.2');
      const d = recs.filter((r) => r.msg === 'dropped a malformed datagram' && r.from === mcastFrom);
      return { ok: o.length === 2 && d.length === 2, detail: { oversize: o, datagrams: d } };
    },
    { timeoutMs: 2_000 },
  );
  assert.equal(second.detail.oversize[1]!.suppressedSinceLast, 59, 'the other 59 oversize connections were counted, not logged');
  assert.equal(second.detail.datagrams[1]!.suppressedSinceLast, 2_000 - mcastDrops - 1, 'every other garbage datagram that arrived was counted, not logged');

  const errors = jsonLines(log.stderr).filter((r) => typeof r.level === 'number' && (r.level as number) >= 50);
  assert.deepEqual(errors, [], 'no error-level log lines (no service failed)');
  assert.ok(log.running, 'the node is still running');
});
