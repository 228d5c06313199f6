// LockService: three nodes in one process, wired over real TCP on 127.0.0.1
// (plain FramedConnections, one listening port per node), with a store each.
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FramedConnection } from '../../src/runtime/connection.js';
import { handleLockClientRequest } from '../../src/runtime/lock-client.js';
import { LockService } from '../../src/runtime/lock-service.js';
import type { LockServiceOptions } from '../../src/runtime/lock-service.js';
import { LockError } from '../../src/core/locks/errors.js';

const log = pino({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'grapevine-locks-'));
after(() => rmSync(root, { recursive: true, force: true }));

const FAST: Partial<LockServiceOptions> = {
  acquirer: { retryMs: 100, splitTimeoutMs: 30, splitTimeoutMaxMs: 300, roundMinMs: 10, tryMs: 300 },
  grantor: { queueHoldMs: 600, restoreSkewMs: 200 },
};

interface TestNode {
  readonly id: string;
  readonly dataDir: string;
  service: LockService;
  server: net.Server;
  readonly accepted: Set<FramedConnection>;
  port: number;
}

class TestCluster {
  readonly nodes = new Map<string, TestNode>();
  private readonly pools = new Map<string, Map<string, Promise<FramedConnection>>>();

  constructor(readonly ids: readonly string[], private readonly tag: string) {}

  async start(): Promise<this> {
    for (const id of this.ids) await this.startNode(id);
    return this;
  }

  node(id: string): TestNode {
    return this.nodes.get(id)!;
  }

  service(id: string): LockService {
    return this.node(id).service;
  }

  async startNode(id: string): Promise<void> {
    const dataDir = join(root, this.tag, id);
    const accepted = new Set<FramedConnection>();
    const service = new LockService({
      selfId: id, dataDir, log, quorum: () => this.ids, connect: (peer) => this.connect(id, peer), ...FAST,
    });
    await service.start((err) => assert.fail(`service ${id} failed: ${err.message}`));
    const server = net.createServer((socket) => {
      const conn = new FramedConnection(socket);
      accepted.add(conn);
      conn.on('close', () => accepted.delete(conn));
      conn.on('envelope', (env) => {
        if (!service.onRequest(env, conn) && !handleLockClientRequest(service, env, conn)) conn.close({ kind: 'local', why: 'not a lock frame' });
      });
    });
    await new Promise<void>((resolve) => server.listen(this.nodes.get(id)?.port ?? 0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    this.nodes.set(id, { id, dataDir, service, server, accepted, port });
  }

  /** The node dies: its service stops and its port closes (connections to it break). */
  async stopNode(id: string): Promise<void> {
    const n = this.node(id);
    await n.service.stop();
    for (const c of n.accepted) c.close({ kind: 'local', why: 'node stopped' });
    await new Promise<void>((resolve) => n.server.close(() => resolve()));
    for (const [, pool] of this.pools) pool.delete(id);
    this.pools.delete(id);
  }

  async stop(): Promise<void> {
    for (const id of this.ids) if (this.node(id).server.listening) await this.stopNode(id);
  }

  /** A pooled connection from `from` to `peer`'s port (what the node's connection pool gives the service). */
  private connect(from: string, peer: string): Promise<FramedConnection> {
    let pool = this.pools.get(from);
    if (!pool) this.pools.set(from, (pool = new Map()));
    const known = pool.get(peer);
    if (known) return known;
    const target = this.nodes.get(peer);
    const p = new Promise<FramedConnection>((resolve, reject) => {
      if (!target || !target.server.listening) return reject(new Error(`${peer} is down`));
      const socket = net.connect({ host: '127.0.0.1', port: target.port });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        const conn = new FramedConnection(socket);
        conn.on('close', () => { if (pool!.get(peer) === p) pool!.delete(peer); });
        resolve(conn);
      });
      socket.once('error', reject);
    });
    p.catch(() => { if (pool!.get(peer) === p) pool!.delete(peer); });
    pool.set(peer, p);
    return p;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let current: TestCluster | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});
async function cluster(tag: string): Promise<TestCluster> {
  current = await new TestCluster(['n1', 'n2', 'n3'], tag).start();
  return current;
}

describe('LockService over TCP (3 nodes)', () => {
  test('mutual exclusion and increasing tokens: 3 clients on 3 nodes, 4 rounds each', async () => {
    const c = await cluster('exclusion');
    let inside = 0;
    const tokens: bigint[] = [];
    const client = async (id: string) => {
      for (let i = 0; i < 4; i++) {
        const r = await c.service(id).acquire('shared', 5_000, 10_000);
        assert.equal(r.acquired, true);
        inside += 1;
        assert.equal(inside, 1, 'two holders at once');
        tokens.push(r.token);
        await sleep(15);
        inside -= 1;
        assert.equal(await c.service(id).release('shared', r.token), true);
      }
    };
    await Promise.all(['n1', 'n2', 'n3'].map(client));
    assert.equal(tokens.length, 12);
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `token ${tokens[i]} after ${tokens[i - 1]}`);
  });

  test('a lock acquired through one node can be released through another', async () => {
    const c = await cluster('elsewhere');
    const held = await c.service('n1').acquire('k', 10_000, 1_000);
    assert.equal(held.acquired, true);
    assert.equal(await c.service('n2').release('k', held.token + 1n), false, 'not with another token');
    assert.equal(await c.service('n2').release('k', held.token), true);
    const next = await c.service('n3').acquire('k', 1_000, 0);
    assert.equal(next.acquired, true, 'free at once, not after the 10 s lease');
    assert.ok(next.token > held.token);
  });

  test('a lock whose holder died expires after its ttl; the next token is higher', async () => {
    const c = await cluster('expiry');
    const first = await c.service('n1').acquire('k', 800, 1_000);
    assert.equal(first.acquired, true);
    const startedMs = performance.now();
    await c.stopNode('n1');
    const next = await c.service('n2').acquire('k', 1_000, 5_000);
    const waitedMs = performance.now() - startedMs;
    assert.equal(next.acquired, true);
    assert.ok(next.token > first.token);
    assert.ok(waitedMs >= 700, `acquired after ${waitedMs.toFixed(0)} ms, before the dead holder's lease could end`);
    assert.ok(waitedMs < 3_000, `acquired only after ${waitedMs.toFixed(0)} ms`);
  });

  test('the wait ends: not acquired, token 0, after about waitMs', async () => {
    const c = await cluster('timeout');
    assert.equal((await c.service('n1').acquire('k', 5_000, 1_000)).acquired, true);
    const startedMs = performance.now();
    const r = await c.service('n2').acquire('k', 1_000, 300);
    const tookMs = performance.now() - startedMs;
    assert.deepEqual(r, { acquired: false, token: 0n });
    assert.ok(tookMs >= 290 && tookMs < 1_000, `answered after ${tookMs.toFixed(0)} ms`);
    const tryOnce = await c.service('n3').acquire('k', 1_000, 0);
    assert.equal(tryOnce.acquired, false);
  });

  test('three contenders are served in the order they asked', async () => {
    const c = await cluster('fair');
    const held = await c.service('n1').acquire('q', 10_000, 1_000);
    assert.equal(held.acquired, true);
    const order: string[] = [];
    const contender = async (name: string, node: string, delayMs: number) => {
      await sleep(delayMs);
      const r = await c.service(node).acquire('q', 5_000, 8_000);
      assert.equal(r.acquired, true, `${name} acquired`);
      order.push(name);
      await sleep(30);
      assert.equal(await c.service(node).release('q', r.token), true);
    };
    const all = Promise.all([contender('first (n3)', 'n3', 0), contender('second (n2)', 'n2', 60), contender('third (n1)', 'n1', 120)]);
    await sleep(400);
    assert.equal(await c.service('n1').release('q', held.token), true);
    await all;
    assert.deepEqual(order, ['first (n3)', 'second (n2)', 'third (n1)']);
  });

  test('a restarted node keeps its grants and tokens (locks.db)', async () => {
    const c = await cluster('restart');
    const a = await c.service('n1').acquire('k', 1_500, 1_000);
    assert.equal(a.acquired, true);
    // n2 and n3 restart (stop, start on the same data directory): n1's lease must hold at them.
    await c.stopNode('n2');
    await c.startNode('n2');
    await c.stopNode('n3');
    await c.startNode('n3');
    const during = await c.service('n2').acquire('k', 1_000, 0);
    assert.equal(during.acquired, false, 'a second holder while the first lease is valid');
    const later = await c.service('n3').acquire('k', 1_000, 5_000);
    assert.equal(later.acquired, true);
    assert.ok(later.token > a.token);
  });

  test('the client protocol: LockAcquireRequest / LockReleaseRequest, Error frames, and a client that leaves while waiting', async () => {
    const c = await cluster('client');
    const dial = async () => {
      const socket = net.connect({ host: '127.0.0.1', port: c.node('n1').port });
      await new Promise((resolve) => socket.once('connect', resolve));
      return new FramedConnection(socket);
    };
    const client = await dial();
    const got = await client.request({ body: { case: 'lockAcquireRequest', value: { key: 'c', ttlMs: 0n, waitMs: 0n } } }, 5_000);
    assert.equal(got.body.case, 'lockAcquireResponse');
    const token = got.body.case === 'lockAcquireResponse' ? got.body.value.token : 0n;
    assert.ok(got.body.case === 'lockAcquireResponse' && got.body.value.acquired && token > 0n);
    const bad = await client.request({ body: { case: 'lockAcquireRequest', value: { key: '', ttlMs: 0n, waitMs: 0n } } }, 5_000);
    assert.equal(bad.body.case === 'error' && bad.body.value.code, 'bad_key');
    // A second client waits for the lock, then goes away: its attempt is given up at once.
    const leaver = await dial();
    void leaver.request({ body: { case: 'lockAcquireRequest', value: { key: 'c', ttlMs: 1_000n, waitMs: 5_000n } } }, 5_000).catch(() => {});
    await sleep(100);
    assert.equal(c.service('n1').attemptCount, 2);
    leaver.close();
    await sleep(100);
    assert.equal(c.service('n1').attemptCount, 1, 'only the held lock is left');
    const rel = await client.request({ body: { case: 'lockReleaseRequest', value: { key: 'c', token } } }, 5_000);
    assert.equal(rel.body.case === 'lockReleaseResponse' && rel.body.value.released, true);
    client.close();
  });

  test('bad input is refused with LockError codes; release of an unknown token is false', async () => {
    const c = await cluster('input');
    const s = c.service('n1');
    await assert.rejects(s.acquire('', 1_000, 0), (e: unknown) => e instanceof LockError && e.code === 'bad_key');
    await assert.rejects(s.acquire('x'.repeat(1025), 1_000, 0), (e: unknown) => e instanceof LockError && e.code === 'bad_key');
    await assert.rejects(s.acquire('k', 0, 0), (e: unknown) => e instanceof LockError && e.code === 'bad_ttl');
    await assert.rejects(s.acquire('k', 1_000, -5), (e: unknown) => e instanceof LockError && e.code === 'bad_wait');
    assert.equal(await s.release('k', 12345n), false);
    await c.stopNode('n1');
    await assert.rejects(s.acquire('k', 1_000, 0), (e: unknown) => e instanceof LockError && e.code === 'stopped');
  });
});
