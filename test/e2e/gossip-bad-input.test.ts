// End-to-end: bad input to gossip (issue 3, "Bad input"), on 127.0.0.1.
// (a) gclient and `grapevine gossip`: unknown node id, malformed message id,
//     empty or oversized message -> exit 2; unreachable node or a message the
//     node does not have -> exit 1; each with exactly one line on stderr that
//     names the problem, and nothing on stdout. The size limit counts UTF-8
//     bytes: exactly 65,536 bytes is accepted.
// (b) A peer that completes a valid peer handshake and then misbehaves:
//     - well-formed Gossip frames carrying invalid messages (an id that does
//       not match the content, text over the limit, empty text, seq 0, a seq
//       beyond 2^53, no message at all): each is dropped and never stored,
//       logged once per peer per interval ('dropped an invalid gossip
//       message'); the connection stays open and serves valid gossip after.
//       (Deliberately not closed: a neighbour configured with a larger
//       --max-message-bytes, or a corrupt row in its store, would otherwise
//       make the link flap every anti-entropy round and cut everything else
//       it carries; dropping the one message costs a hash and a log line.)
//     - a frame of garbage bytes, a header announcing 4 GiB: the connection
//       is closed at once, logged once per address ('dropped a connection
//       that broke the protocol').
//     Meanwhile and after, the node keeps running, answers status and gossip
//     and holds exactly the valid messages. Each misbehaving peer connects
//     from its own loopback address (127.0.0.2-6; all of 127/8 is local) so
//     its log lines can be told apart; every packet goes to 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { GrapevineClient } from '../../src/api/client.js';
import { messageId } from '../../src/core/gossip/message.js';
import type { GossipMessage } from '../../src/core/gossip/message.js';
import { FramedConnection } from '../../src/runtime/connection.js';
import { messageToWire } from '../../src/runtime/gossip-codec.js';
import { helloBody } from '../../src/runtime/handshake.js';
import { GossipMessageSchema } from '../../src/wire/index.js';
import type { GossipMessage as WireGossipMessage } from '../../src/wire/index.js';
import { freePort, GRAPEVINE, jsonLines, pollUntil, randomMcast, spawnNodeScript, statusOf, tempDir } from '../helpers/proc.js';
import { gclient, grapevine, writeClusterFile } from '../helpers/gossip.js';
import type { BinResult } from '../helpers/gossip.js';

const CLUSTER = 'gossip-bad';
const LIMIT = 64 * 1024;
const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Exactly one stderr line "<program>: ..." containing every needle; no stack trace; nothing on stdout. */
function assertOneLine(r: BinResult, code: number, program: string, needles: readonly string[], what: string): void {
  assert.equal(r.code, code, `${what}: exit status ${r.code} (want ${code}); stderr: ${r.stderr}`);
  assert.equal(r.stderrLines.length, 1, `${what}: want exactly one stderr line, got ${r.stderrLines.length}:\n${r.stderr}`);
  const line = r.stderrLines[0]!;
  assert.ok(line.startsWith(`${program}: `), `${what}: '${line}' starts with '${program}: '`);
  assert.doesNotMatch(line, /internal error|\bat .+:\d+:\d+/, `${what}: ${line}`);
  assert.ok(line.length < 400, `${what}: the line is short (${line.length} chars)`);
  for (const n of needles) assert.ok(line.includes(n), `${what}: '${line}' should mention '${n}'`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
}

async function startNode(t: Parameters<typeof spawnNodeScript>[0], file: string, id: string, dataDir: string) {
  const p = spawnNodeScript(t, `node ${id}`, GRAPEVINE, ['node', '--cluster', file, '--id', id, '--data-dir', dataDir, '--log-level', 'info']);
  await p.waitForLine('stderr', (l) => l.includes('"msg":"node up"'), 10_000, '"node up"');
  return p;
}

test('gclient and grapevine gossip: bad usage exits 2, operational failure exits 1, one stderr line each', async (t) => {
  const dir = tempDir(t, 'grapevine-gossip-bad-');
  const mc = randomMcast();
  const port = await freePort();
  const nobody = await freePort();
  const file = writeClusterFile(join(dir, 'cluster.json'), {
    name: CLUSTER,
    multicast: { group: mc.group, port: mc.port, interface: '127.0.0.1', ttl: 0 },
    nodes: [
      { id: '1', host: '127.0.0.1', port },
      { id: '2', host: '127.0.0.1', port: nobody }, // in the file, never started
    ],
  });
  const node = await startNode(t, file, '1', join(dir, 'data-1'));
  const at = (id: string) => ['--cluster', file, '--id', id];
  const missingId = 'AAAAAAAAAAA';
  const big = 'x'.repeat(LIMIT + 1);
  const bigUtf8 = 'é'.repeat(LIMIT / 2 + 1); // 32,769 characters, 65,538 bytes
  const exact = 'y'.repeat(LIMIT - 3) + '✓'; // 65,536 bytes: allowed

  const cases: { what: string; run: () => Promise<BinResult>; code: number; program: string; needles: string[] }[] = [
    { what: 'gclient: unknown node id', run: () => gclient([...at('99'), '--list']), code: 2, program: 'gclient', needles: [file, "'99'"] },
    { what: 'gossip: unknown node id', run: () => grapevine(['gossip', 'submit', 'hi', ...at('99')]), code: 2, program: 'grapevine', needles: [file, "'99'"] },
    { what: 'gclient: no cluster file', run: () => gclient(['--cluster', join(dir, 'nope.json'), '--id', '1', '--list']), code: 2, program: 'gclient', needles: ['nope.json'] },
    { what: 'gclient: unreachable node (list)', run: () => gclient([...at('2'), '--list']), code: 1, program: 'gclient', needles: [`127.0.0.1:${nobody}`] },
    { what: 'gclient: unreachable node (submit)', run: () => gclient(['--addr', `127.0.0.1:${nobody}`, '--message', 'hi']), code: 1, program: 'gclient', needles: [`127.0.0.1:${nobody}`] },
    { what: 'gossip: unreachable node (get)', run: () => grapevine(['gossip', 'get', missingId, ...at('2')]), code: 1, program: 'grapevine', needles: [`127.0.0.1:${nobody}`] },
    { what: 'gclient: unknown msgID', run: () => gclient([...at('1'), '--msgID', missingId]), code: 1, program: 'gclient', needles: [missingId, 'no message'] },
    { what: 'gossip: unknown msgID', run: () => grapevine(['gossip', 'get', missingId, ...at('1')]), code: 1, program: 'grapevine', needles: [missingId, 'no message'] },
    { what: 'gclient: malformed msgID (short)', run: () => gclient([...at('1'), '--msgID', 'abc']), code: 2, program: 'gclient', needles: ["'abc'", 'not a message id'] },
    { what: 'gclient: malformed msgID (bad char)', run: () => gclient([...at('1'), '--msgID', 'AAAAAAAAAA!']), code: 2, program: 'gclient', needles: ['AAAAAAAAAA!', 'not a message id'] },
    // Malformed is bad usage even when the node is unreachable: nothing is sent.
    { what: 'gclient: malformed msgID, unreachable node', run: () => gclient([...at('2'), '--msgID', 'x']), code: 2, program: 'gclient', needles: ['not a message id'] },
    { what: 'gossip: malformed msgID', run: () => grapevine(['gossip', 'get', 'no/such/id', ...at('1')]), code: 2, program: 'grapevine', needles: ['no/such/id'] },
    { what: 'gclient: empty message', run: () => gclient([...at('1'), '--message', '']), code: 2, program: 'gclient', needles: ['empty'] },
    { what: 'gossip: empty message', run: () => grapevine(['gossip', 'submit', '', ...at('1')]), code: 2, program: 'grapevine', needles: ['empty'] },
    { what: 'gclient: oversized message', run: () => gclient([...at('1'), '--message', big]), code: 2, program: 'gclient', needles: [String(LIMIT + 1), String(LIMIT)] },
    { what: 'gclient: oversized in UTF-8 bytes', run: () => gclient([...at('1'), '--message', bigUtf8]), code: 2, program: 'gclient', needles: [String(LIMIT + 2), String(LIMIT)] },
    { what: 'gossip: oversized message', run: () => grapevine(['gossip', 'submit', big, ...at('1')]), code: 2, program: 'grapevine', needles: [String(LIMIT + 1), String(LIMIT)] },
    { what: 'gclient: no action', run: () => gclient(at('1')), code: 2, program: 'gclient', needles: ['--message'] },
    { what: 'gclient: two actions', run: () => gclient([...at('1'), '--list', '--msgID', missingId]), code: 2, program: 'gclient', needles: ['exactly one'] },
    { what: 'gclient: no node named', run: () => gclient(['--list']), code: 2, program: 'gclient', needles: ['--id'] },
  ];
  // Two at a time: each is a Node process start on a 2-core machine.
  for (let i = 0; i < cases.length; i += 2) {
    const batch = cases.slice(i, i + 2);
    const results = await Promise.all(batch.map((c) => c.run()));
    batch.forEach((c, k) => assertOneLine(results[k]!, c.code, c.program, c.needles, c.what));
  }

  // The limit is in bytes and inclusive: 65,536 bytes (with a 3-byte character) is stored and read back exactly.
  const ok = await gclient([...at('1'), '--message', exact]);
  assert.equal(ok.code, 0, ok.stderr);
  const id = ok.stdout.trim();
  const back = await gclient([...at('1'), '--msgID', id]);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(back.stdout, `${exact}\n`);
  // Nothing refused was stored.
  const list = await gclient([...at('1'), '--list']);
  assert.equal(list.stdout, `${exact}\n`, 'the node holds only the accepted message');
  assert.ok(node.running);
});

// ------------------------------------------------------------ hostile peers

/** A peer handshake from `localAddress` (our id `peerId`, the node's cluster), as a real node would do it. */
async function greetAsPeer(port: number, localAddress: string, peerId: string): Promise<FramedConnection> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', reject);
  });
  const conn = new FramedConnection(socket);
  const answer = await conn.request({ body: helloBody({ cluster: CLUSTER, id: peerId, incarnation: 1, role: 'peer' }) }, 3_000);
  assert.equal(answer.body.case, 'hello', `the node accepted ${peerId}'s handshake`);
  // The node opens anti-entropy with its new "neighbour": we never answer (its request times out, harmlessly).
  return conn;
}

/** Resolves with ms until the node closed `conn`, or Infinity if it is still open after `guardMs`. */
function closedWithin(conn: FramedConnection, guardMs: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    if (conn.isClosed) return resolve(0);
    const timer = setTimeout(() => resolve(Infinity), guardMs);
    conn.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

/** The connection is open and served: a ping is answered. */
async function pingable(conn: FramedConnection): Promise<boolean> {
  if (conn.isClosed) return false;
  const answer = await conn.request({ body: { case: 'ping', value: { sentMs: 42n } } }, 2_000).catch(() => undefined);
  return answer?.body.case === 'pong';
}

function gossipFrame(conn: FramedConnection, message: WireGossipMessage | undefined): void {
  conn.send({ body: { case: 'gossip', value: message === undefined ? {} : { message } } });
}

function honest(origin: string, seq: number, text: string): GossipMessage {
  return { id: messageId(sha256, origin, 7, seq, text), origin, incarnation: 7, seq, text, createdMs: Date.now(), path: [origin] };
}

test('a peer sending invalid gossip, garbage or a 4 GiB frame header is dropped; the node is unharmed', async (t) => {
  const dir = tempDir(t, 'grapevine-gossip-hostile-');
  const mc = randomMcast();
  const port = await freePort();
  const file = writeClusterFile(join(dir, 'cluster.json'), {
    name: CLUSTER,
    multicast: { group: mc.group, port: mc.port, interface: '127.0.0.1', ttl: 0 },
    nodes: [{ id: 'target', host: '127.0.0.1', port }],
  });
  const node = await startNode(t, file, 'target', join(dir, 'data'));
  const conns: FramedConnection[] = [];
  t.after(() => {
    for (const c of conns) c.close();
  });
  const peer = async (from: string, id: string) => {
    const c = await greetAsPeer(port, from, id);
    conns.push(c);
    return c;
  };
  /** Ids the node must never hold. */
  const bad: string[] = [];
  /** id -> text the node must hold. */
  const good = new Map<string, string>();
  const t0 = Date.now();

  // (i) An id that does not match the content, 20 times, from one peer.
  const liar = await peer('127.0.0.2', 'mallory-id');
  for (let seq = 1; seq <= 20; seq++) {
    const real = honest('mallory', seq, `forged ${seq}`);
    const forged = { ...real, id: honest('mallory', seq, `something else ${seq}`).id };
    bad.push(forged.id, real.id);
    gossipFrame(liar, messageToWire(forged));
  }
  assert.ok(await pingable(liar), 'invalid messages do not close the connection');
  // The same connection still carries valid gossip.
  const valid = honest('mallory', 21, 'a valid message after the forged ones');
  gossipFrame(liar, messageToWire(valid));
  good.set(valid.id, valid.text);

  // (ii) Text over the limit (with its true id), 5 times, from another peer.
  const fat = await peer('127.0.0.3', 'mallory-big');
  for (let seq = 1; seq <= 5; seq++) {
    const m = honest('fat', seq, 'z'.repeat(LIMIT + seq));
    bad.push(m.id);
    gossipFrame(fat, messageToWire(m));
  }
  assert.ok(await pingable(fat), 'an oversized message does not close the connection');

  // (iii) Assorted malformed messages from a third peer: empty text, seq 0,
  //       seq beyond 2^53, no message at all, an empty origin.
  const odd = await peer('127.0.0.4', 'mallory-odd');
  const empty = honest('odd', 1, '');
  bad.push(empty.id);
  gossipFrame(odd, messageToWire(empty));
  const seq0 = { ...honest('odd', 1, 'seq zero'), seq: 0, id: messageId(sha256, 'odd', 7, 0, 'seq zero') };
  bad.push(seq0.id);
  gossipFrame(odd, messageToWire(seq0));
  gossipFrame(odd, create(GossipMessageSchema, { id: 'AAAAAAAAAAB', origin: 'odd', incarnation: 7n, seq: 1n << 60n, text: 'huge seq', createdMs: 1n, path: ['odd'] }));
  bad.push('AAAAAAAAAAB');
  gossipFrame(odd, undefined);
  const noOrigin = { ...honest('', 2, 'no origin'), path: [] };
  bad.push(noOrigin.id);
  gossipFrame(odd, messageToWire(noOrigin));
  assert.ok(await pingable(odd), 'malformed messages do not close the connection');

  // (iv) A frame of garbage bytes after the handshake, 10 connections from one address: each closed at once.
  const garbageClose: number[] = [];
  for (let i = 0; i < 10; i++) {
    const c = await peer('127.0.0.5', `mallory-garbage-${i}`);
    const closed = closedWithin(c, 3_000);
    const body = Buffer.alloc(32, 0xff);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    c.socket.write(Buffer.concat([head, body]));
    garbageClose.push(await closed);
  }

  // (v) A frame header announcing 4 GiB after the handshake, 10 connections: each closed at once.
  const hugeClose: number[] = [];
  for (let i = 0; i < 10; i++) {
    const c = await peer('127.0.0.6', `mallory-huge-${i}`);
    const closed = closedWithin(c, 3_000);
    c.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    hugeClose.push(await closed);
  }
  t.diagnostic(`garbage frame: closed after ${Math.min(...garbageClose)}-${Math.max(...garbageClose)} ms; 4 GiB header: ${Math.min(...hugeClose)}-${Math.max(...hugeClose)} ms`);
  for (const ms of [...garbageClose, ...hugeClose]) assert.ok(ms < 1_000, `the node closed a broken connection after ${ms} ms`);

  // The well-behaved connections are still open and served.
  for (const c of [liar, fat, odd]) assert.ok(await pingable(c), 'the connections that sent only well-formed frames stay open');

  // The node: running, answering status and gossip, holding exactly the valid messages.
  assert.ok(node.running, 'the node is still running');
  const client = await GrapevineClient.connect('127.0.0.1', port, { timeoutMs: 3_000 });
  t.after(() => client.close());
  await pollUntil('the valid message from the peer is stored', async () => ({ ok: (await client.get(valid.id)) !== undefined, detail: null }), { timeoutMs: 2_000 });
  const submitted = await gclient(['--cluster', file, '--id', 'target', '--message', 'still works']);
  assert.equal(submitted.code, 0, submitted.stderr);
  good.set(submitted.stdout.trim(), 'still works');
  const got = await gclient(['--cluster', file, '--id', 'target', '--msgID', submitted.stdout.trim()]);
  assert.equal(got.stdout, 'still works\n');
  for (const id of bad) assert.equal(await client.get(id), undefined, `bad message ${id} was not stored`);
  const held = [];
  for await (const m of client.list()) held.push([m.id, m.text]);
  assert.deepEqual(new Map(held as [string, string][]), good, 'the node holds exactly the valid messages');
  const status = await statusOf(port);
  assert.equal(status.id, 'target');
  assert.equal((await client.status()).messages, good.size);

  // Logged once per offending peer (all within one 10 s interval), with the reason.
  assert.ok(Date.now() - t0 < 10_000, 'the log checks assume one rate-limit interval');
  await sleep(100);
  const records = jsonLines(node.stderr);
  const invalid = (key: string) => records.filter((r) => r.msg === 'dropped an invalid gossip message' && r.offenceKey === key);
  const forgedLines = invalid('gossip:mallory-id');
  assert.equal(forgedLines.length, 1, `20 forged messages: one line: ${JSON.stringify(forgedLines)}`);
  assert.equal(forgedLines[0]!.reason, 'id does not match the content');
  assert.equal(forgedLines[0]!.peer, 'mallory-id');
  const fatLines = invalid('gossip:mallory-big');
  assert.equal(fatLines.length, 1, `5 oversized messages: one line: ${JSON.stringify(fatLines)}`);
  assert.match(String(fatLines[0]!.reason), new RegExp(`${LIMIT + 1} bytes over ${LIMIT}`));
  assert.equal(invalid('gossip:mallory-odd').length, 1, 'assorted malformed messages from one peer: one line');
  const protocol = (from: string) => records.filter((r) => r.msg === 'dropped a connection that broke the protocol' && r.offenceKey === `protocol:${from}`);
  const garbageLines = protocol('127.0.0.5');
  assert.equal(garbageLines.length, 1, `10 garbage frames from one address: one line: ${JSON.stringify(garbageLines)}`);
  assert.match(String(garbageLines[0]!.reason), /malformed envelope/);
  const hugeLines = protocol('127.0.0.6');
  assert.equal(hugeLines.length, 1, `10 4 GiB headers from one address: one line: ${JSON.stringify(hugeLines)}`);
  assert.match(String(hugeLines[0]!.reason), /4294967295 bytes exceeds the limit/);
  const offences = records.filter((r) => typeof r.offenceKey === 'string');
  assert.equal(offences.length, 5, `no other offence lines: ${JSON.stringify(offences)}`);
  const errors = records.filter((r) => typeof r.level === 'number' && r.level >= 50);
  assert.deepEqual(errors, [], 'no error-level log lines');
  assert.ok(node.running, 'the node is still running');
});
