// The RESP port over real TCP sockets on 127.0.0.1, against the in-memory
// fake cache (test/helpers/memory-kv.ts): command replies with Redis 7's
// wording, pipelining order when the cache settles out of order, protocol
// errors that close one connection only, stalled half commands, limits.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { startRespServer } from '../../src/api/resp/server.js';
import type { RespServer, RespServerOptions } from '../../src/api/resp/server.js';
import { KvError } from '../../src/runtime/kv-access.js';
import type { KvPutOptions } from '../../src/runtime/kv-access.js';
import { MemoryKv } from '../helpers/memory-kv.js';
import type { MemoryKvOptions } from '../helpers/memory-kv.js';

/** A reply as the tests compare it: bulk strings as latin1 strings. */
type Value = string | number | null | { status: string } | { error: string } | Value[];

/** A minimal RESP2 client that sends raw bytes and parses replies in order. */
class Client {
  private buf = Buffer.alloc(0);
  private readonly waiters: (() => void)[] = [];
  readonly closed: Promise<void>;
  ended = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  static async connect(t: TestContext, port: number): Promise<Client> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    const c = new Client(socket);
    t.after(() => socket.destroy());
    return c;
  }

  send(raw: string | Buffer): void {
    this.socket.write(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw);
  }

  async call(...args: (string | Buffer)[]): Promise<Value> {
    this.send(encode(args));
    return this.reply();
  }

  /** The next reply; rejects if the server closes first or after `timeoutMs`. */
  async reply(timeoutMs = 5_000): Promise<Value> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = parse(this.buf, 0);
      if (parsed) {
        this.buf = this.buf.subarray(parsed.end);
        return parsed.value;
      }
      if (this.ended) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buf.toString('latin1'))}`);
      if (Date.now() > deadline) throw new Error('no reply in time');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Bytes received and not yet parsed. */
  get pending(): string {
    return this.buf.toString('latin1');
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

function encode(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

function parse(buf: Buffer, pos: number): { value: Value; end: number } | undefined {
  const cr = buf.indexOf('\r\n', pos);
  if (cr === -1) return undefined;
  const line = buf.toString('latin1', pos + 1, cr);
  const next = cr + 2;
  switch (buf[pos]) {
    case 0x2b:
      return { value: { status: line }, end: next };
    case 0x2d:
      return { value: { error: line }, end: next };
    case 0x3a:
      return { value: Number(line), end: next };
    case 0x24: {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('latin1', next, next + len), end: next + len + 2 };
    }
    case 0x2a: {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: Value[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, at);
        if (!item) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`bad reply byte ${buf[pos]} in ${JSON.stringify(buf.toString('latin1'))}`);
  }
}

const OK = { status: 'OK' };
const err = (error: string) => ({ error });
const silent = pino({ level: 'silent' });

async function serve(t: TestContext, kvOptions: MemoryKvOptions = {}, options: Partial<RespServerOptions> = {}): Promise<{ server: RespServer; kv: MemoryKv }> {
  const kv = new MemoryKv(kvOptions);
  const server = await startRespServer({ host: '127.0.0.1', port: 0, kv, log: silent, ...options });
  t.after(() => server.close());
  return { server, kv };
}

/** A gate for MemoryKv's `hold`: operations wait until it is opened. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

for (const syncReads of [false, true]) {
  test(`strings and keys (${syncReads ? 'synchronous reads' : 'reads through promises'})`, async (t) => {
    const { server } = await serve(t, { syncReads });
    const c = await Client.connect(t, server.port);
    assert.deepEqual(await c.call('SET', 'a', '1'), OK);
    assert.deepEqual(await c.call('get', 'a'), '1');
    assert.deepEqual(await c.call('GET', 'nope'), null);
    assert.deepEqual(await c.call('MSET', 'b', '2', 'c', '3'), OK);
    assert.deepEqual(await c.call('MGET', 'a', 'nope', 'c'), ['1', null, '3']);
    assert.deepEqual(await c.call('EXISTS', 'a', 'a', 'nope', 'b'), 3, 'a key named twice counts twice');
    assert.deepEqual(await c.call('DBSIZE'), 3);
    assert.deepEqual(await c.call('KEYS', '*'), ['a', 'b', 'c']);
    assert.deepEqual(await c.call('KEYS', '[ab]'), ['a', 'b']);
    assert.deepEqual(await c.call('DEL', 'a', 'b', 'nope'), 2);
    assert.deepEqual(await c.call('DEL', 'nope'), 0);
    assert.deepEqual(await c.call('EXISTS', 'a'), 0);
    const binary = Buffer.from([0, 0xff, 0x0d, 0x0a, 0x24]);
    assert.deepEqual(await c.call('SET', binary, binary), OK);
    assert.deepEqual(await c.call('GET', binary), binary.toString('latin1'));
  });
}

test('PING inline and multibulk, ECHO, SELECT', async (t) => {
  const { server } = await serve(t);
  const c = await Client.connect(t, server.port);
  c.send('PING\r\nping hello\r\n');
  assert.deepEqual(await c.reply(), { status: 'PONG' });
  assert.deepEqual(await c.reply(), 'hello');
  assert.deepEqual(await c.call('PING'), { status: 'PONG' });
  assert.deepEqual(await c.call('PING', 'a', 'b'), err("ERR wrong number of arguments for 'ping' command"));
  assert.deepEqual(await c.call('ECHO', 'x y'), 'x y');
  assert.deepEqual(await c.call('SELECT', '0'), OK);
  assert.deepEqual(await c.call('SELECT', '1'), err('ERR DB index is out of range'));
  assert.deepEqual(await c.call('SELECT', 'x'), err('ERR value is not an integer or out of range'));
  c.send('SET "a b" \'c d\'\r\nGET "a b"\r\n');
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), 'c d');
});

test('SET options and their combinations, as Redis validates them', async (t) => {
  let nowMs = 1_000_000;
  const { server, kv } = await serve(t, { nowMs: () => nowMs });
  const c = await Client.connect(t, server.port);
  assert.deepEqual(await c.call('SET', 'k', 'v', 'NX'), OK);
  assert.deepEqual(await c.call('SET', 'k', 'w', 'nx'), null, 'NX on a present key');
  assert.deepEqual(await c.call('SET', 'k', 'w', 'XX'), OK);
  assert.deepEqual(await c.call('SET', 'absent', 'w', 'XX'), null, 'XX on an absent key');
  assert.deepEqual(await c.call('GET', 'k'), 'w');
  assert.deepEqual(await c.call('SET', 'e', 'v', 'EX', '10'), OK);
  assert.equal(kv.entries.get('e')?.expiresAtMs, nowMs + 10_000);
  assert.deepEqual(await c.call('SET', 'p', 'v', 'px', '1500', 'NX'), OK);
  assert.equal(kv.entries.get('p')?.expiresAtMs, nowMs + 1_500);
  nowMs += 1_600;
  assert.deepEqual(await c.call('GET', 'p'), null, 'expired');
  assert.deepEqual(await c.call('GET', 'e'), 'v');

  const syntax = err('ERR syntax error');
  assert.deepEqual(await c.call('SET', 'k', 'v', 'NX', 'XX'), syntax);
  assert.deepEqual(await c.call('SET', 'k', 'v', 'XX', 'NX'), syntax);
  assert.deepEqual(await c.call('SET', 'k', 'v', 'EX', '1', 'PX', '1'), syntax);
  assert.deepEqual(await c.call('SET', 'k', 'v', 'EX'), syntax);
  assert.deepEqual(await c.call('SET', 'k', 'v', 'FOO'), syntax);
  assert.deepEqual(await c.call('SET', 'k', 'v', 'EX', '0'), err("ERR invalid expire time in 'set' command"));
  assert.deepEqual(await c.call('SET', 'k', 'v', 'PX', '-5'), err("ERR invalid expire time in 'set' command"));
  assert.deepEqual(await c.call('SET', 'k', 'v', 'EX', 'soon'), err('ERR value is not an integer or out of range'));
  assert.deepEqual(await c.call('SET', 'k'), err("ERR wrong number of arguments for 'set' command"));
  assert.deepEqual(await c.call('GET', 'k'), 'w', 'no refused SET changed anything');
});

test('unknown commands and wrong arity use Redis 7 wording', async (t) => {
  const { server } = await serve(t);
  const c = await Client.connect(t, server.port);
  c.send('foo a b\r\n');
  await c.reply();
  // The exact bytes, trailing space included.
  c.send(encode(['foo', 'a', 'b']));
  await sleep(50);
  assert.equal(c.pending, "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n");
  await c.reply();
  assert.deepEqual(await c.call('NOPE'), err("ERR unknown command 'NOPE', with args beginning with: "));
  const long = await c.call('x', 'y'.repeat(200), 'z');
  assert.deepEqual(long, err(`ERR unknown command 'x', with args beginning with: '${'y'.repeat(128)}' `));
  assert.deepEqual(await c.call('GET'), err("ERR wrong number of arguments for 'get' command"));
  assert.deepEqual(await c.call('MSET', 'a'), err("ERR wrong number of arguments for 'mset' command"));
  assert.deepEqual(await c.call('MSET', 'a', 'b', 'c'), err("ERR wrong number of arguments for 'mset' command"));
  assert.deepEqual(await c.call('CONFIG', 'GET'), err("ERR wrong number of arguments for 'config|get' command"));
  assert.deepEqual(await c.call('CONFIG', 'bogus'), err("ERR unknown subcommand 'bogus'. Try CONFIG HELP."));
  assert.deepEqual(await c.call('ECHO', 'a\r\nb'), 'a\r\nb', 'still in step');
  assert.deepEqual(await c.call('x\r\ny'), err("ERR unknown command 'x  y', with args beginning with: "), 'CR/LF in an error become spaces');
});

test('SCAN walks every key once through per-connection cursors', async (t) => {
  const { server } = await serve(t);
  const c = await Client.connect(t, server.port);
  const keys = Array.from({ length: 25 }, (_, i) => `key:${String(i).padStart(2, '0')}`);
  assert.deepEqual(await c.call('MSET', ...keys.flatMap((k) => [k, 'v']), 'other', 'v'), OK);
  const seen: string[] = [];
  let cursor = '0';
  let rounds = 0;
  do {
    const [next, page] = (await c.call('SCAN', cursor, 'MATCH', 'key:*', 'COUNT', '7')) as [string, string[]];
    assert.match(next, /^[0-9]+$/);
    seen.push(...page);
    cursor = next;
    rounds += 1;
  } while (cursor !== '0' && rounds < 20);
  assert.deepEqual(seen, keys);
  assert.deepEqual(await c.call('SCAN', '0', 'TYPE', 'hash'), ['0', []]);
  assert.deepEqual(await c.call('SCAN', 'abc'), err('ERR invalid cursor'));
  assert.deepEqual(await c.call('SCAN', '987654'), err('ERR invalid cursor'), 'a cursor this connection never got');
  assert.deepEqual(await c.call('SCAN', '0', 'COUNT', '0'), err('ERR syntax error'));
  assert.deepEqual(await c.call('SCAN', '0', 'COUNT', 'x'), err('ERR value is not an integer or out of range'));
  assert.deepEqual(await c.call('SCAN', '0', 'MATCH'), err('ERR syntax error'));
});

test('INFO, CONFIG GET, COMMAND, CLIENT, HELLO, RESET: what redis-cli and redis-benchmark ask', async (t) => {
  const { server } = await serve(t, {}, { connectionsMax: 77 });
  const c = await Client.connect(t, server.port);
  await c.call('SET', 'a', '1');
  const info = (await c.call('INFO')) as string;
  assert.match(info, /^# Server\r\nredis_version:7\.0\.0-grapevine\r\n/);
  assert.match(info, /\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n/);
  assert.match(info, /# Grapevine\r\nfake_entries:1\r\n/);
  assert.match(info, /\r\nconnected_clients:1\r\n/);
  assert.equal(await c.call('INFO', 'keyspace'), '# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n');
  assert.equal(await c.call('INFO', 'nosuchsection'), '');
  assert.deepEqual(await c.call('CONFIG', 'GET', 'save'), ['save', '']);
  assert.deepEqual(await c.call('config', 'get', 'appendonly'), ['appendonly', 'no']);
  assert.deepEqual(await c.call('CONFIG', 'GET', 'MAXCLIENTS'), ['maxclients', '77']);
  assert.deepEqual(await c.call('CONFIG', 'GET', 'maxmemory*'), ['maxmemory', '0', 'maxmemory-policy', 'noeviction']);
  assert.deepEqual(await c.call('CONFIG', 'GET', 'nothing-like-this'), []);
  assert.deepEqual(await c.call('COMMAND', 'DOCS'), []);
  assert.deepEqual(await c.call('COMMAND'), []);
  const names = (await c.call('COMMAND', 'LIST')) as string[];
  for (const name of ['get', 'set', 'ping', 'scan', 'config', 'client']) assert.ok(names.includes(name), name);
  assert.equal(await c.call('COMMAND', 'COUNT'), names.length);
  const id = await c.call('CLIENT', 'ID');
  assert.equal(typeof id, 'number');
  assert.deepEqual(await c.call('CLIENT', 'GETNAME'), null);
  assert.deepEqual(await c.call('CLIENT', 'SETNAME', 'worker-1'), OK);
  assert.deepEqual(await c.call('CLIENT', 'GETNAME'), 'worker-1');
  assert.deepEqual(await c.call('CLIENT', 'SETNAME', 'a b'), err('ERR Client names cannot contain spaces, newlines or special characters.'));
  assert.deepEqual(await c.call('CLIENT', 'SETINFO', 'lib-name', 'redis-py'), OK);
  assert.deepEqual(await c.call('CLIENT', 'SETINFO', 'color', 'red'), err("ERR Unrecognized option 'color'"));
  assert.deepEqual(await c.call('HELLO', '3'), err('NOPROTO sorry, this protocol version is not supported'));
  assert.deepEqual(await c.call('HELLO', 'x'), err('ERR Protocol version is not an integer or out of range'));
  const hello = (await c.call('HELLO', '2', 'SETNAME', 'n2')) as Value[];
  assert.deepEqual(hello.slice(0, 6), ['server', 'redis', 'version', '7.0.0-grapevine', 'proto', 2]);
  assert.deepEqual(hello.slice(6), ['id', id, 'mode', 'standalone', 'role', 'master', 'modules', []]);
  assert.deepEqual(await c.call('CLIENT', 'GETNAME'), 'n2');
  assert.deepEqual(await c.call('RESET'), { status: 'RESET' });
  assert.deepEqual(await c.call('CLIENT', 'GETNAME'), null);
});

test('QUIT replies +OK, closes, and runs nothing after it', async (t) => {
  const { server, kv } = await serve(t);
  const c = await Client.connect(t, server.port);
  c.send(Buffer.concat([encode(['SET', 'before', '1']), encode(['QUIT']), encode(['SET', 'after', '1'])]));
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), OK);
  await c.closed;
  assert.equal(kv.entries.has('before'), true);
  assert.equal(kv.entries.has('after'), false);
});

test('a client that half-closes after its commands still gets every reply, then the close', async (t) => {
  const held = gate();
  const { server } = await serve(t, { hold: (op) => (op === 'put' ? held.promise : undefined) });
  const c = await Client.connect(t, server.port);
  c.socket.end(Buffer.concat([encode(['SET', 'a', '1']), encode(['GET', 'a'])])); // like `printf ... | nc -q1`
  await sleep(50);
  held.open();
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), '1');
  await c.closed;
});

test('pipelined replies keep command order when the cache settles out of order', async (t) => {
  const slow = gate();
  const { server, kv } = await serve(t, { recordCalls: true, hold: (op, key) => (op === 'put' && key && Buffer.from(key).toString() === 'slow' ? slow.promise : undefined) });
  const c = await Client.connect(t, server.port);
  c.send(Buffer.concat([encode(['SET', 'slow', '1']), encode(['SET', 'fast', '2']), encode(['GET', 'fast']), encode(['PING']), encode(['DEL', 'fast'])]));
  // Every command started at once, without waiting for the held one...
  for (let i = 0; i < 100 && kv.calls.length < 4; i++) await sleep(10);
  assert.deepEqual(
    kv.calls.map((x) => `${x.op} ${x.key}`),
    ['put slow', 'put fast', 'get fast', 'del fast'],
  );
  // ...but no reply may overtake the first one.
  await sleep(50);
  assert.equal(c.pending, '');
  slow.open();
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), '2');
  assert.deepEqual(await c.reply(), { status: 'PONG' });
  assert.deepEqual(await c.reply(), 1);
});

/** Like the node's cache: every unconditional put of one group commit gets the same promise, settled by commit(). */
class GroupCommitKv extends MemoryKv {
  private turn: { promise: Promise<boolean>; settle: (err?: Error) => void } | undefined;
  turns = 0;

  override put(key: Uint8Array, value: Uint8Array, options: KvPutOptions = {}): Promise<boolean> {
    const own = super.put(key, value, options);
    if ((options.condition ?? 'always') !== 'always') return own;
    if (!this.turn) {
      let settle!: (err?: Error) => void;
      const promise = new Promise<boolean>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve(true))));
      this.turn = { promise, settle };
      this.turns += 1;
    }
    return this.turn.promise;
  }

  commit(err?: Error): void {
    this.turn?.settle(err);
    this.turn = undefined;
  }
}

test('writes that share one group commit promise: each gets its reply, in order, around other replies', async (t) => {
  const kv = new GroupCommitKv({ syncReads: true });
  const server = await startRespServer({ host: '127.0.0.1', port: 0, kv, log: silent });
  t.after(() => server.close());
  const c = await Client.connect(t, server.port);
  const batch = [['SET', 'a', '1'], ['GET', 'a'], ['SET', 'b', '2'], ['SET', 'a', 'x', 'NX'], ['SET', 'c', '3'], ['PING']];
  c.send(Buffer.concat(batch.map((args) => encode(args))));
  for (let i = 0; i < 100 && kv.turns === 0; i++) await sleep(10);
  await sleep(30);
  assert.equal(c.pending, '', 'nothing overtakes the pending commit');
  kv.commit();
  for (const expected of [OK, '1', OK, null, OK, { status: 'PONG' }]) assert.deepEqual(await c.reply(), expected);
  // A later commit is a new promise; a failed one fails each of its writes.
  c.send(Buffer.concat([encode(['SET', 'd', '4']), encode(['SET', 'e', '5']), encode(['GET', 'd'])]));
  for (let i = 0; i < 100 && kv.turns < 2; i++) await sleep(10);
  kv.commit(new KvError('busy', 'disk full'));
  assert.deepEqual(await c.reply(), err('ERR disk full'));
  assert.deepEqual(await c.reply(), err('ERR disk full'));
  assert.deepEqual(await c.reply(), '4');
  c.send(encode(['SET', 'f', '6']));
  for (let i = 0; i < 100 && kv.turns < 3; i++) await sleep(10);
  kv.commit();
  assert.deepEqual(await c.reply(), OK);
});

test('random settle delays: 300 pipelined commands come back in order', async (t) => {
  const { server } = await serve(t, { delayMs: () => Math.floor(Math.random() * 20) });
  const c = await Client.connect(t, server.port);
  const batch: Buffer[] = [];
  for (let i = 0; i < 100; i++) batch.push(encode(['SET', `k${i}`, `v${i}`]), encode(['GET', `k${i}`]), encode(['ECHO', `e${i}`]));
  c.send(Buffer.concat(batch));
  for (let i = 0; i < 100; i++) {
    assert.deepEqual(await c.reply(), OK);
    assert.deepEqual(await c.reply(), `v${i}`);
    assert.deepEqual(await c.reply(), `e${i}`);
  }
});

test('a cache error becomes one -ERR line in its place', async (t) => {
  const { server } = await serve(t, {
    failWith: (op, key) => (op === 'put' && key && Buffer.from(key).toString() === 'b' ? new KvError('busy', 'more than 4096 writes waiting for the disk; try again') : undefined),
  });
  const c = await Client.connect(t, server.port);
  c.send(Buffer.concat([encode(['SET', 'a', '1']), encode(['SET', 'b', '1']), encode(['SET', 'c', '1'])]));
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), err('ERR more than 4096 writes waiting for the disk; try again'));
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.call('SET', '', 'x'), err('ERR empty keys are not supported by grapevine'));
});

test('a cache that throws instead of rejecting: -ERR internal error, the connection carries on', async (t) => {
  const kv = new MemoryKv();
  kv.get = () => {
    throw new TypeError('bug in the cache');
  };
  const server = await startRespServer({ host: '127.0.0.1', port: 0, kv, log: silent });
  t.after(() => server.close());
  const c = await Client.connect(t, server.port);
  assert.deepEqual(await c.call('GET', 'a'), err('ERR internal error'));
  assert.deepEqual(await c.call('SET', 'a', '1'), OK);
});

test('oversized keys and values: -ERR within the bulk limit, protocol error beyond it', async (t) => {
  const { server } = await serve(t, { limits: { keyBytesMax: 16, valueBytesMax: 1024 } });
  const c = await Client.connect(t, server.port);
  assert.deepEqual(await c.call('SET', 'k', 'v'.repeat(1024)), OK);
  assert.deepEqual(await c.call('SET', 'k', 'v'.repeat(1025)), err('ERR value too large (at most 1024 bytes)'));
  assert.deepEqual(await c.call('MSET', 'a', '1', 'k', 'v'.repeat(2000)), err('ERR value too large (at most 1024 bytes)'));
  assert.deepEqual(await c.call('SET', 'k'.repeat(17), 'v'), err('ERR key too large (at most 16 bytes)'));
  assert.deepEqual(await c.call('GET', 'k'.repeat(17)), null, 'a key over the limit cannot exist');
  assert.deepEqual(await c.call('DEL', 'k'.repeat(17)), 0);
  assert.equal(((await c.call('GET', 'k')) as string).length, 1024);
  // Past valueBytesMax + 1 KiB the request itself is refused, before it is buffered.
  c.send(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${1024 + 1024 + 1}\r\n`);
  assert.deepEqual(await c.reply(), err('ERR Protocol error: invalid bulk length'));
  await c.closed;
});

test('arguments and half commands of one read survive the next read into the shared buffer', async (t) => {
  const slow = gate();
  const { server } = await serve(t, { hold: (op) => (op === 'put' ? slow.promise : undefined) });
  const c = await Client.connect(t, server.port);
  // ECHO's reply is its argument, queued behind the held SET; the half command waits for its rest.
  c.send(Buffer.concat([encode(['SET', 'k', 'v']), encode(['ECHO', 'first']), Buffer.from('*2\r\n$4\r\nECHO\r\n$6\r\nsec')]));
  await sleep(30);
  c.send('ond\r\n' + 'X'.repeat(64)); // overwrites the bytes of the first read in the shared buffer
  await sleep(30);
  c.send('\r\n');
  slow.open();
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), 'first');
  assert.deepEqual(await c.reply(), 'second');
  assert.deepEqual(await c.reply(), err(`ERR unknown command '${'X'.repeat(64)}', with args beginning with: `));
});

test("plain 'data' reads (sharedReadBuffer: false): order, split commands, half-close, protocol errors", async (t) => {
  const slow = gate();
  const { server } = await serve(t, { hold: (op, key) => (op === 'put' && key && Buffer.from(key).toString() === 'slow' ? slow.promise : undefined) }, { sharedReadBuffer: false });
  const c = await Client.connect(t, server.port);
  c.send(Buffer.concat([encode(['SET', 'slow', '1']), encode(['ECHO', 'a']), Buffer.from('*2\r\n$3\r\nGET\r\n$4\r\nsl')]));
  await sleep(30);
  c.send('ow\r\n');
  slow.open();
  assert.deepEqual(await c.reply(), OK);
  assert.deepEqual(await c.reply(), 'a');
  assert.deepEqual(await c.reply(), '1');
  const half = await Client.connect(t, server.port);
  half.socket.end(encode(['PING']));
  assert.deepEqual(await half.reply(), { status: 'PONG' });
  await half.closed;
  const bad = await Client.connect(t, server.port);
  bad.send('*1\r\n$4\r\nPING\r\n*x\r\n');
  assert.deepEqual(await bad.reply(), { status: 'PONG' });
  assert.match(((await bad.reply()) as { error: string }).error, /^ERR Protocol error: invalid multibulk length/);
  await bad.closed;
  assert.deepEqual(await c.call('PING'), { status: 'PONG' });
});

test('malformed RESP: -ERR Protocol error, that connection closes, others carry on', async (t) => {
  const { server } = await serve(t);
  const good = await Client.connect(t, server.port);
  const bad = await Client.connect(t, server.port);
  assert.deepEqual(await good.call('SET', 'x', '1'), OK);
  bad.send('*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\nx1\r\n');
  assert.deepEqual(await bad.reply(), { status: 'PONG' }, 'replies before the fault are sent');
  assert.deepEqual(await bad.reply(), err("ERR Protocol error: expected '$', got 'x'"));
  await bad.closed;
  assert.deepEqual(await good.call('GET', 'x'), '1');
  for (const garbage of ['*x\r\n', '*1\r\n$-5\r\n', 'SET "a\r\n']) {
    const c = await Client.connect(t, server.port);
    c.send(garbage);
    const reply = (await c.reply()) as { error: string };
    assert.match(reply.error, /^ERR Protocol error: /, garbage);
    await c.closed;
  }
  assert.deepEqual(await good.call('PING'), { status: 'PONG' });
  assert.equal(server.stats().protocolErrors, 4);
});

test('a half command that stalls is disconnected; an idle connection is not', async (t) => {
  const { server } = await serve(t, {}, { idleHalfCommandTimeoutMs: 150 });
  const idle = await Client.connect(t, server.port);
  const stalled = await Client.connect(t, server.port);
  stalled.send('*2\r\n$3\r\nGET\r\n$5\r\nab');
  const started = Date.now();
  await stalled.closed;
  assert.ok(Date.now() - started >= 100, 'not before the timeout');
  assert.equal(server.stats().idleDisconnects, 1);
  // A client that keeps sending its command in pieces is not stalled.
  const slow = await Client.connect(t, server.port);
  for (const piece of ['*2\r\n$4\r\n', 'ECHO', '\r\n$2\r\n', 'o', 'k\r\n']) {
    slow.send(piece);
    await sleep(60);
  }
  assert.deepEqual(await slow.reply(), 'ok');
  await sleep(200);
  assert.deepEqual(await idle.call('PING'), { status: 'PONG' });
});

test('connectionsMax: an extra client is told and closed; a freed slot is usable', async (t) => {
  const { server } = await serve(t, {}, { connectionsMax: 2 });
  const a = await Client.connect(t, server.port);
  const b = await Client.connect(t, server.port);
  assert.deepEqual(await a.call('PING'), { status: 'PONG' });
  assert.deepEqual(await b.call('PING'), { status: 'PONG' });
  const extra = await Client.connect(t, server.port);
  assert.deepEqual(await extra.reply(), err('ERR max number of clients reached'));
  await extra.closed;
  assert.equal(server.stats().connectionsRefused, 1);
  a.socket.end();
  await a.closed;
  for (let i = 0; i < 100 && server.stats().connections > 1; i++) await sleep(10);
  const c = await Client.connect(t, server.port);
  assert.deepEqual(await c.call('PING'), { status: 'PONG' });
  assert.deepEqual(await b.call('PING'), { status: 'PONG' });
});

test('backpressure: reading stops while too many commands are in flight, and resumes', async (t) => {
  const held = gate();
  const { server, kv } = await serve(t, { recordCalls: true, hold: (op) => (op === 'put' ? held.promise : undefined) }, { inflightCommandsMax: 4 });
  const c = await Client.connect(t, server.port);
  const sets = (from: number) => Buffer.concat(Array.from({ length: 5 }, (_, i) => encode(['SET', `k${from + i}`, 'v'])));
  c.send(sets(0));
  for (let i = 0; i < 100 && kv.calls.length < 5; i++) await sleep(10);
  c.send(sets(5));
  await sleep(150);
  assert.equal(kv.calls.length, 5, 'the second batch is not read while 5 > 4 commands are in flight');
  held.open();
  for (let i = 0; i < 10; i++) assert.deepEqual(await c.reply(), OK);
  assert.equal(kv.calls.length, 10);
});

test('a client that never reads its replies is dropped past 4x outboundBytesMax', async (t) => {
  const { server } = await serve(t, {}, { outboundBytesMax: 64 * 1024 });
  const setter = await Client.connect(t, server.port);
  assert.deepEqual(await setter.call('SET', 'big', Buffer.alloc(512 * 1024, 1)), OK);
  const reader = await Client.connect(t, server.port);
  reader.socket.pause(); // never reads
  reader.send(Buffer.concat(Array.from({ length: 64 }, () => encode(['GET', 'big']))));
  for (let i = 0; i < 500 && server.stats().outboundDisconnects === 0; i++) await sleep(10);
  assert.equal(server.stats().outboundDisconnects, 1);
  reader.socket.resume(); // a paused socket would not notice the close
  await reader.closed;
  assert.deepEqual(await setter.call('PING'), { status: 'PONG' });
});

test('close() ends every connection and may be called twice', async (t) => {
  const { server } = await serve(t);
  const c = await Client.connect(t, server.port);
  assert.deepEqual(await c.call('PING'), { status: 'PONG' });
  await Promise.all([server.close(), server.close()]);
  await c.closed;
  await server.close();
});
