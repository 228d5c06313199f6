// End-to-end: bad input to the cache, on 127.0.0.1.
// (a) `grapevine kv`: empty key, key or value over the node's limits (in
//     UTF-8 bytes; exactly the limit is accepted), unknown subcommand,
//     missing or extra arguments, options of another subcommand, an unknown
//     --id -> exit 2; unreachable node, absent key -> exit 1; each with
//     exactly one line on stderr that names the problem, nothing on stdout.
//     The limits are the node's (--max-key-bytes / --max-value-bytes, and the
//     defaults 8192 and 1 MiB); the node keeps serving and holds exactly the
//     accepted writes.
// (b) A peer that completes a valid peer handshake and then sends cache
//     frames that are wrong:
//     - KvBatch entries that are invalid (empty key, key or value over the
//       limits, no or an overlong node id, an HLC or expiry beyond 2^53):
//       each is dropped and never stored, logged once per peer per interval
//       ('dropped an invalid cache change'); the connection stays open and
//       a valid entry on it is stored and flooded on to the node's neighbour;
//     - a KvSyncRequest of another shape (wrong bucket count, digest of the
//       wrong length): answered with an error, logged once per peer; a
//       well-formed one is answered;
//     - a KvFetchRequest for 20,000 absent keys: answered with what exists;
//     - the node's own KvSyncRequest answered with out-of-range buckets and
//       invalid versions: nothing breaks;
//     - a 5 MiB KvBatch frame (over the 4 MiB frame limit), and a header
//       announcing 5 MiB: the connection is closed at once, logged once per
//       address; none of its entries is stored.
//     The node keeps running, answers, holds exactly the valid writes, and
//     its own later writes still reach its neighbour.
// (c) An entry stamped with the largest HLC (2^53 - 1) from a peer: the
//     node's later writes must still replicate (see the TODO there).
// Each misbehaving peer connects from its own loopback address (127.0.0.2-6).
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { ClientError, GrapevineClient } from '../../src/api/client.js';
import type { FramedConnection } from '../../src/runtime/connection.js';
import { encodeEnvelopeFrame, KvEntrySchema } from '../../src/wire/index.js';
import type { KvEntry as WireEntry } from '../../src/wire/index.js';
import { freePort, GRAPEVINE, jsonLines, pollUntil, randomMcast, spawnNodeScript, tempDir } from '../helpers/proc.js';
import type { Proc } from '../helpers/proc.js';
import { grapevine, writeClusterFile } from '../helpers/gossip.js';
import type { BinResult } from '../helpers/gossip.js';
import { assertOneLine, closedWithin, greetAsPeer, kvDiff, kvListOutput, kvSnapshot, pingable } from '../helpers/kv.js';
import type { KvContents } from '../helpers/kv.js';

const KEY_LIMIT = 100;
const VALUE_LIMIT = 1_000;
const KEY_DEFAULT = 8_192;
const VALUE_DEFAULT = 1024 * 1024;
const FRAME_LIMIT = 4 * 1024 * 1024;
const HLC_LOGICAL_BITS = 10;

async function startNode(t: TestContext, label: string, args: readonly string[]): Promise<Proc> {
  const p = spawnNodeScript(t, label, GRAPEVINE, ['node', ...args, '--log-level', 'info']);
  await p.waitForLine('stderr', (l) => l.includes('"msg":"node up"'), 10_000, '"node up"');
  return p;
}

const errorLines = (p: Proc) => jsonLines(p.stderr).filter((r) => typeof r.level === 'number' && r.level >= 50);

test('grapevine kv: bad usage exits 2, operational failure exits 1, one stderr line each; nothing refused is stored', async (t) => {
  const dir = tempDir(t, 'grapevine-kv-bad-');
  const mc = randomMcast();
  const port = await freePort();
  const nobody = await freePort();
  const file = writeClusterFile(join(dir, 'cluster.json'), {
    name: 'kv-bad',
    multicast: { group: mc.group, port: mc.port, interface: '127.0.0.1', ttl: 0 },
    nodes: [
      { id: '1', host: '127.0.0.1', port },
      { id: '2', host: '127.0.0.1', port: nobody }, // in the file, never started
    ],
  });
  // Node 1 with small limits; node "dflt" (no cluster file, its own multicast channel) with the defaults.
  const node = await startNode(t, 'node 1', ['--cluster', file, '--id', '1', '--data-dir', join(dir, 'data-1'), '--max-key-bytes', String(KEY_LIMIT), '--max-value-bytes', String(VALUE_LIMIT)]);
  const dport = await freePort();
  const dflt = await startNode(t, 'node dflt', ['--host', '127.0.0.1', '--port', String(dport), '--id', 'dflt', '--data-dir', join(dir, 'data-dflt'), '--mcast', randomMcast().arg, '--mcast-interface', '127.0.0.1']);
  const at = (id: string) => ['--cluster', file, '--id', id];
  const atDflt = ['--addr', `127.0.0.1:${dport}`];

  // What each node holds: written before the bad input, checked after it.
  const held: KvContents = new Map([['kept', 'before the bad input']]);
  const heldDflt: KvContents = new Map([['kept', 'default limits']]);
  for (const [args, value] of [[at('1'), held.get('kept')!], [atDflt, heldDflt.get('kept')!]] as const) {
    const r = await grapevine(['kv', 'put', 'kept', value, ...args]);
    assert.equal(r.code, 0, r.stderr);
  }

  const key101 = 'k'.repeat(KEY_LIMIT + 1);
  const keyUtf8 = 'é'.repeat(KEY_LIMIT / 2 + 1); // 51 characters, 102 bytes
  const value1001 = 'v'.repeat(VALUE_LIMIT + 1);
  const valueUtf8 = '✓'.repeat(Math.floor(VALUE_LIMIT / 3) + 1); // 334 characters, 1,002 bytes
  const cases: { what: string; args: string[]; code: number; needles: string[] }[] = [
    { what: 'put: empty key', args: ['kv', 'put', '', 'v', ...at('1')], code: 2, needles: ['empty'] },
    { what: 'del: empty key', args: ['kv', 'del', '', ...at('1')], code: 2, needles: ['empty'] },
    { what: 'put: key over --max-key-bytes', args: ['kv', 'put', key101, 'v', ...at('1')], code: 2, needles: [String(KEY_LIMIT + 1), String(KEY_LIMIT)] },
    { what: 'put: key over the limit in UTF-8 bytes', args: ['kv', 'put', keyUtf8, 'v', ...at('1')], code: 2, needles: [String(KEY_LIMIT + 2), String(KEY_LIMIT)] },
    { what: 'del: key over --max-key-bytes', args: ['kv', 'del', 'kept', key101, ...at('1')], code: 2, needles: [String(KEY_LIMIT + 1), String(KEY_LIMIT)] },
    { what: 'put: value over --max-value-bytes', args: ['kv', 'put', 'big', value1001, ...at('1')], code: 2, needles: [String(VALUE_LIMIT + 1), String(VALUE_LIMIT)] },
    { what: 'put: value over the limit in UTF-8 bytes', args: ['kv', 'put', 'big', valueUtf8, ...at('1')], code: 2, needles: [String(VALUE_LIMIT + 2), String(VALUE_LIMIT)] },
    { what: 'put: key over the default 8192 bytes', args: ['kv', 'put', 'd'.repeat(KEY_DEFAULT + 1), 'v', ...atDflt], code: 2, needles: [String(KEY_DEFAULT + 1), String(KEY_DEFAULT)] },
    { what: 'unknown subcommand', args: ['kv', 'frobnicate', 'x', ...at('1')], code: 2, needles: ["'frobnicate'"] },
    { what: 'no subcommand', args: ['kv', ...at('1')], code: 2, needles: ['subcommand'] },
    { what: 'put: value missing', args: ['kv', 'put', 'onlykey', ...at('1')], code: 2, needles: ['put', '2 arguments'] },
    { what: 'put: one argument too many', args: ['kv', 'put', 'a', 'b', 'c', ...at('1')], code: 2, needles: ['put', '2 arguments'] },
    { what: 'get: key missing', args: ['kv', 'get', ...at('1')], code: 2, needles: ['get', '1 argument'] },
    { what: 'del: key missing', args: ['kv', 'del', ...at('1')], code: 2, needles: ['del', 'key'] },
    { what: 'list: an argument', args: ['kv', 'list', 'extra', ...at('1')], code: 2, needles: ['list'] },
    { what: '--ttl with get', args: ['kv', 'get', 'kept', '--ttl', '100', ...at('1')], code: 2, needles: ['--ttl'] },
    { what: '--ttl not a number', args: ['kv', 'put', 'k', 'v', '--ttl', 'soon', ...at('1')], code: 2, needles: ['--ttl', 'soon'] },
    { what: '--ttl zero', args: ['kv', 'put', 'k', 'v', '--ttl', '0', ...at('1')], code: 2, needles: ['--ttl'] },
    { what: '--ttl negative', args: ['kv', 'put', 'k', 'v', '--ttl=-5', ...at('1')], code: 2, needles: ['--ttl'] },
    { what: '--match with put', args: ['kv', 'put', 'k', 'v', '--match', '*', ...at('1')], code: 2, needles: ['--match'] },
    { what: 'unknown option', args: ['kv', 'list', '--frob', ...at('1')], code: 2, needles: ['--frob'] },
    { what: 'unknown --id', args: ['kv', 'get', 'kept', ...at('99')], code: 2, needles: [file, "'99'"] },
    { what: 'no node named', args: ['kv', 'get', 'kept', '--cluster', file], code: 2, needles: ['--id'] },
    { what: 'malformed --addr', args: ['kv', 'get', 'kept', '--addr', 'no-port-here'], code: 2, needles: ['--addr'] },
    { what: 'no cluster file', args: ['kv', 'get', 'kept', '--cluster', join(dir, 'nope.json'), '--id', '1'], code: 2, needles: ['nope.json'] },
    { what: 'unreachable node (--id)', args: ['kv', 'get', 'kept', ...at('2')], code: 1, needles: [`127.0.0.1:${nobody}`] },
    { what: 'unreachable node (--addr, put)', args: ['kv', 'put', 'k', 'v', '--addr', `127.0.0.1:${nobody}`], code: 1, needles: [`127.0.0.1:${nobody}`] },
    { what: 'unreachable node (list)', args: ['kv', 'list', ...at('2')], code: 1, needles: [`127.0.0.1:${nobody}`] },
    { what: 'get: absent key', args: ['kv', 'get', 'no-such-key', ...at('1')], code: 1, needles: ["'no-such-key'"] },
    // Bad usage is found before any node is contacted: exit 2 even when it is unreachable.
    { what: 'empty key, unreachable node', args: ['kv', 'put', '', 'v', ...at('2')], code: 2, needles: ['empty'] },
  ];
  // Two at a time: each is a Node process start on a 2-core machine.
  const failed: string[] = [];
  for (let i = 0; i < cases.length; i += 2) {
    const batch = cases.slice(i, i + 2);
    const results: BinResult[] = await Promise.all(batch.map((c) => grapevine(c.args, 15_000)));
    batch.forEach((c, k) => {
      try {
        assertOneLine(results[k]!, c.code, c.needles, c.what);
      } catch (err) {
        failed.push((err as Error).message.split('\n')[0]!);
      }
    });
  }
  assert.deepEqual(failed, [], `${failed.length} of ${cases.length} cases wrong`);

  // Found by this test and fixed: get checks the key like put and del do.
  await t.test('get: an empty or oversized key is bad usage too (exit 2)', async () => {
    const [empty, long] = await Promise.all([grapevine(['kv', 'get', '', ...at('1')]), grapevine(['kv', 'get', key101, ...at('1')])]);
    assertOneLine(empty, 2, ['empty'], 'get: empty key');
    assertOneLine(long, 2, [String(KEY_LIMIT + 1), String(KEY_LIMIT)], 'get: key over --max-key-bytes');
  });

  // The limits are in bytes and inclusive: exactly the limit (with multi-byte characters) is stored and read back.
  const keyAt = 'ü'.repeat(KEY_LIMIT / 2); // 100 bytes
  const valueAt = 'x'.repeat(VALUE_LIMIT - 3) + '✓'; // 1,000 bytes
  const ok = await grapevine(['kv', 'put', keyAt, valueAt, ...at('1')]);
  assert.equal(ok.code, 0, ok.stderr);
  held.set(keyAt, valueAt);
  const back = await grapevine(['kv', 'get', keyAt, ...at('1')]);
  assert.equal(back.stdout, `${valueAt}\n`);
  const keyDefault = 'd'.repeat(KEY_DEFAULT);
  const okDefault = await grapevine(['kv', 'put', keyDefault, 'at the default key limit', ...atDflt]);
  assert.equal(okDefault.code, 0, okDefault.stderr);
  heldDflt.set(keyDefault, 'at the default key limit');

  // The default value limit (1 MiB) through the client library (an argument cannot be that long).
  const c = await GrapevineClient.connect('127.0.0.1', dport, { timeoutMs: 5_000 });
  t.after(() => c.close());
  const tooBig = await c.kvPut('huge', Buffer.alloc(VALUE_DEFAULT + 1, 0x61)).then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(tooBig instanceof ClientError, `a value of 1 MiB + 1 is refused: ${String(tooBig)}`);
  assert.equal(tooBig.code, 'too_large');
  assert.match(tooBig.message, new RegExp(`${VALUE_DEFAULT + 1}.*${VALUE_DEFAULT}`));
  assert.equal(await c.kvPut('huge', Buffer.alloc(VALUE_DEFAULT, 0x62)), true, 'exactly 1 MiB is stored');
  const hugeBack = await c.kvGet('huge');
  assert.ok(hugeBack && hugeBack.length === VALUE_DEFAULT && hugeBack.every((b) => b === 0x62), 'and read back whole');
  heldDflt.set('huge', 'b'.repeat(VALUE_DEFAULT));

  // Nothing refused was stored; nothing stored was lost; both nodes still serve.
  const list = await grapevine(['kv', 'list', ...at('1')]);
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout, kvListOutput(held), 'node 1 holds exactly the accepted writes');
  assert.deepEqual(kvDiff(await kvSnapshot(c), heldDflt), [], 'node dflt holds exactly the accepted writes');
  assert.ok(node.running && dflt.running, 'both nodes still running');
  assert.deepEqual([...errorLines(node), ...errorLines(dflt)], [], 'no error-level log lines');
});

// ------------------------------------------------------------ hostile peers

const CLUSTER = 'kv-hostile';

function entry(key: string | Buffer, value: string | Buffer, init: Partial<{ hlc: bigint; node: string; deleted: boolean; expiresMs: bigint }> = {}): WireEntry {
  return create(KvEntrySchema, {
    key: typeof key === 'string' ? Buffer.from(key) : key,
    value: typeof value === 'string' ? Buffer.from(value) : value,
    hlc: init.hlc ?? BigInt(Date.now()) << BigInt(HLC_LOGICAL_BITS),
    node: init.node ?? 'mallory',
    deleted: init.deleted ?? false,
    expiresMs: init.expiresMs ?? 0n,
  });
}

function batch(conn: FramedConnection, entries: WireEntry[]): void {
  conn.send({ body: { case: 'kvBatch', value: { entries } } });
}

/** Two nodes "target" and "honest", linked; a client on each. */
async function twoNodes(t: TestContext, prefix: string) {
  const dir = tempDir(t, prefix);
  const mc = randomMcast();
  const port = await freePort();
  const honestPort = await freePort();
  const file = writeClusterFile(join(dir, 'cluster.json'), {
    name: CLUSTER,
    multicast: { group: mc.group, port: mc.port, interface: '127.0.0.1', ttl: 0 },
    nodes: [
      { id: 'target', host: '127.0.0.1', port },
      { id: 'honest', host: '127.0.0.1', port: honestPort },
    ],
    links: [['target', 'honest']],
  });
  const [target, honest] = await Promise.all(['target', 'honest'].map((id) => startNode(t, `node ${id}`, ['--cluster', file, '--id', id, '--data-dir', join(dir, `data-${id}`)])));
  const client = await GrapevineClient.connect('127.0.0.1', port, { timeoutMs: 3_000 });
  const honestClient = await GrapevineClient.connect('127.0.0.1', honestPort, { timeoutMs: 3_000 });
  t.after(() => {
    client.close();
    honestClient.close();
  });
  await pollUntil('target and honest linked', async () => ({ ok: (await client.status()).linksConnected.includes('honest'), detail: null }), { timeoutMs: 10_000 });
  const conns: FramedConnection[] = [];
  t.after(() => {
    for (const c of conns) c.close();
  });
  const peer = async (from: string, id: string, onEnvelope?: Parameters<typeof greetAsPeer>[4]) => {
    const c = await greetAsPeer(port, from, CLUSTER, id, onEnvelope);
    conns.push(c);
    return c;
  };
  return { file, port, target: target!, honest: honest!, client, honestClient, peer };
}

/** Polls until `c` holds exactly `want`. */
const holds = (what: string, c: GrapevineClient, want: KvContents, timeoutMs = 3_000) =>
  pollUntil(
    what,
    async () => {
      const problems = kvDiff(await kvSnapshot(c), want);
      return { ok: problems.length === 0, detail: problems };
    },
    { timeoutMs, intervalMs: 20 },
  );

test('a peer sending invalid cache entries, misshapen digests or a 5 MiB frame is refused or dropped; the node is unharmed', async (t) => {
  const { file, target, honest, client, honestClient, peer } = await twoNodes(t, 'grapevine-kv-hostile-');
  const t0 = Date.now();
  const want: KvContents = new Map();
  const put = async (k: string, v: string) => {
    assert.equal(await client.kvPut(k, v), true);
    want.set(k, v);
  };
  await put('before', 'the hostile peers');
  await holds('honest has the first write', honestClient, want);

  // (i) Invalid entries, one per batch and all in one batch, 2 x 8 frames from one peer; a valid one after them.
  const liar = await peer('127.0.0.2', 'mallory-kv');
  const MAX = 2n ** 53n;
  const invalid = [
    entry('', 'empty key'),
    entry('k'.repeat(KEY_DEFAULT + 1), 'key over the limit'),
    entry('bad:value', Buffer.alloc(VALUE_DEFAULT + 1, 0x7a)),
    entry('bad:no-node', 'no node id', { node: '' }),
    entry('bad:long-node', 'node id of 300 bytes', { node: 'n'.repeat(300) }),
    entry('bad:hlc', 'hlc beyond 2^53', { hlc: MAX + 5n }),
    entry('bad:hlc-max', 'hlc of 2^64 - 1', { hlc: 2n ** 64n - 1n }),
    entry('bad:expiry', 'expiry beyond 2^53', { expiresMs: 2n ** 60n }),
  ];
  for (const e of invalid) batch(liar, [e]);
  batch(liar, invalid.filter((e) => e.value.length < VALUE_DEFAULT));
  assert.ok(await pingable(liar), 'invalid entries do not close the connection');
  batch(liar, [entry('from-mallory', 'a valid change after the invalid ones')]);
  want.set('from-mallory', 'a valid change after the invalid ones');
  await holds('target stored the valid change', client, want);
  await holds('and flooded it to its neighbour', honestClient, want);

  // (ii) Digests of another shape: answered with an error; a well-formed one is answered.
  const odd = await peer('127.0.0.3', 'mallory-sync');
  const shapes = [
    { bucketCount: 7, bucketHashes: new Uint8Array(7 * 8) },
    { bucketCount: 1024, bucketHashes: new Uint8Array(3) },
    { bucketCount: 0, bucketHashes: new Uint8Array(0) },
    { bucketCount: 0xffffffff, bucketHashes: new Uint8Array(64) },
  ];
  for (const value of shapes) {
    const answer = await odd.request({ body: { case: 'kvSyncRequest', value } }, 3_000);
    if (answer.body.case !== 'error') assert.fail(`a digest of ${value.bucketCount} buckets / ${value.bucketHashes.length} bytes is refused, not answered with ${answer.body.case}`);
    assert.equal(answer.body.value.code, 'bad_request');
  }
  const fine = await odd.request({ body: { case: 'kvSyncRequest', value: { bucketCount: 1024, bucketHashes: new Uint8Array(1024 * 8) } } }, 3_000);
  if (fine.body.case !== 'kvSyncResponse') assert.fail(`an empty replica's digest is answered, not with ${fine.body.case}`);
  assert.equal(fine.body.value.versions.length, want.size, 'with the versions the node holds');
  // (iii) A fetch of 20,000 absent keys and one present: answered with the one.
  const fetch = await odd.request({ body: { case: 'kvFetchRequest', value: { keys: [...Array.from({ length: 20_000 }, (_, i) => Buffer.from(`absent:${i}`)), Buffer.from('before')] } } }, 5_000);
  if (fetch.body.case !== 'kvFetchResponse') assert.fail(`a fetch is answered, not with ${fetch.body.case}`);
  assert.deepEqual(fetch.body.value.entries.map((e) => Buffer.from(e.key).toString()), ['before']);
  assert.ok(await pingable(odd), 'refused digests do not close the connection');

  // (iv) The node's own anti-entropy request (sent as soon as it accepts a peer) answered with nonsense.
  let asked!: () => void;
  const askedP = new Promise<void>((resolve) => (asked = resolve));
  const answering = await peer('127.0.0.4', 'mallory-answers', (env, conn) => {
    if (env.body.case === 'kvSyncRequest') {
      conn.reply(env, {
        body: {
          case: 'kvSyncResponse',
          value: { buckets: [5, 1_000_000, 0xffffffff], versions: [{ key: new Uint8Array(0), hlc: 1n, node: 'x' }, { key: Buffer.from('v'), hlc: 2n ** 63n, node: '' }, { key: Buffer.from('w'), hlc: 5n, node: 'mallory' }], more: false },
        },
      });
      asked();
    } else if (env.body.case === 'kvFetchRequest') {
      conn.reply(env, { body: { case: 'kvFetchResponse', value: { entries: invalid.slice(0, 3) } } });
    }
  });
  const wasAsked = await Promise.race([askedP.then(() => true), sleep(3_000).then(() => false)]);
  assert.ok(wasAsked, 'the node asked its new peer for anti-entropy (link up)');
  assert.ok(await pingable(answering), 'a nonsense answer does not break the connection');

  // (v) A real 5 MiB KvBatch frame, 5 times from one address, and a header announcing 5 MiB: each closed at once.
  const fat = Array.from({ length: 5 }, (_, i) => entry(`fat:${i}`, Buffer.alloc(VALUE_DEFAULT - 64, 0x66)));
  const fatFrame = encodeEnvelopeFrame({ body: { case: 'kvBatch', value: { entries: fat } } });
  assert.ok(fatFrame.length > FRAME_LIMIT + 512 * 1024, `the frame is ${fatFrame.length} bytes`);
  const closeMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const c = await peer('127.0.0.5', `mallory-fat-${i}`);
    const closed = closedWithin(c, 3_000);
    c.socket.write(fatFrame);
    closeMs.push(await closed);
  }
  for (let i = 0; i < 5; i++) {
    const c = await peer('127.0.0.6', `mallory-header-${i}`);
    const closed = closedWithin(c, 3_000);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(5 * 1024 * 1024);
    c.socket.write(Buffer.concat([head, Buffer.alloc(1024, 0x0a)]));
    closeMs.push(await closed);
  }
  t.diagnostic(`a 5 MiB frame or header closed the connection after ${Math.min(...closeMs)}-${Math.max(...closeMs)} ms`);
  for (const ms of closeMs) assert.ok(ms < 1_000, `the node closed an oversized frame's connection after ${ms} ms`);

  // The well-behaved connections are still open; the node answers and holds exactly the valid writes.
  for (const c of [liar, odd, answering]) assert.ok(await pingable(c), 'connections that sent only well-formed frames stay open');
  assert.ok(target.running && honest.running, 'both nodes still running');
  await put('after', 'the hostile peers');
  const r = await grapevine(['kv', 'put', 'via-cli', 'still works', '--cluster', file, '--id', 'target']);
  assert.equal(r.code, 0, r.stderr);
  want.set('via-cli', 'still works');
  await holds('target holds exactly the valid writes', client, want);
  await holds('honest holds exactly the valid writes (its later writes still replicate)', honestClient, want);
  for (const k of ['bad:value', 'bad:no-node', 'bad:long-node', 'bad:hlc', 'bad:hlc-max', 'bad:expiry', 'fat:0', 'v']) assert.equal(await client.kvGet(k), undefined, `${k} was not stored`);

  // Logged once per offending peer (all within one 10 s interval), with the reason.
  assert.ok(Date.now() - t0 < 10_000, 'the log checks assume one rate-limit interval');
  await sleep(100);
  const records = jsonLines(target.stderr);
  const byKey = (msg: string, key: string) => records.filter((rec) => rec.msg === msg && rec.offenceKey === key);
  assert.equal(byKey('dropped an invalid cache change', 'cache:mallory-kv').length, 1, `invalid entries from one peer: one line: ${JSON.stringify(records.filter((rec) => rec.offenceKey))}`);
  assert.equal(byKey('cache digest of another shape', 'cache-sync:mallory-sync').length, 1, 'misshapen digests from one peer: one line');
  const fatLines = byKey('dropped a connection that broke the protocol', 'protocol:127.0.0.5');
  assert.equal(fatLines.length, 1, `5 oversized frames from one address: one line: ${JSON.stringify(fatLines)}`);
  assert.match(String(fatLines[0]!.reason), /exceeds the limit/);
  assert.equal(byKey('dropped a connection that broke the protocol', 'protocol:127.0.0.6').length, 1, '5 oversized headers from one address: one line');
  assert.deepEqual([...errorLines(target), ...errorLines(honest)], [], 'no error-level log lines');
});

test('an entry stamped with the largest HLC does not stop the node replicating its later writes', async (t) => {
  const { target, honest, client, honestClient, peer } = await twoNodes(t, 'grapevine-kv-hlc-');
  const want: KvContents = new Map([['before', 'the far-future stamp']]);
  assert.equal(await client.kvPut('before', 'the far-future stamp'), true);
  await holds('honest has the first write', honestClient, want);

  // 2^53 - 1 is a valid HLC on the wire (a safe integer), 285,000 years ahead of the wall clock.
  const skewed = await peer('127.0.0.2', 'mallory-clock');
  batch(skewed, [entry('far-future', 'stamped at the end of time', { hlc: 2n ** 53n - 1n })]);
  assert.ok(await pingable(skewed));
  await sleep(200);

  // The node keeps working: its own writes are acknowledged, readable, and reach its neighbour.
  assert.equal(await client.kvPut('after', 'a write after the far-future stamp'), true);
  assert.equal(Buffer.from((await client.kvGet('after'))!).toString(), 'a write after the far-future stamp');
  want.set('after', 'a write after the far-future stamp');
  const held = await kvSnapshot(client);
  // A stamp more than 60 s ahead of the node's clock is refused (found by this test: it
  // used to be adopted by the clock, and every later stamp of the node was invalid).
  assert.equal(held.has('far-future'), false, 'the far-future entry is refused');
  await t.test("the node's writes after the far-future stamp still reach its neighbour", async () => {
    try {
      await holds('honest has the write made after the far-future stamp', honestClient, want, 3_000);
    } finally {
      const dropped = jsonLines(honest.stderr).filter((rec) => rec.msg === 'dropped an invalid cache change');
      t.diagnostic(`honest logged ${dropped.length} 'dropped an invalid cache change' line(s): ${JSON.stringify(dropped.map((rec) => rec.peer))}`);
    }
  });
  assert.ok(target.running && honest.running);
});
