// FramedConnection's shared inbound budget and half-frame deadline, over real
// loopback sockets: strangers cannot together park more than the budget in
// half-sent frames, and a frame left unfinished ends its connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ByteBudget, CONNECTION_LIMITS_DEFAULT, FramedConnection } from '../../src/runtime/connection.js';
import type { CloseReason } from '../../src/runtime/connection.js';

/** A server whose accepted sockets become FramedConnections with `limits`; returns its port and the connections. */
async function serve(limits: ConstructorParameters<typeof FramedConnection>[1]) {
  const accepted: { conn: FramedConnection; closed: Promise<CloseReason> }[] = [];
  const server = net.createServer((socket) => {
    const conn = new FramedConnection(socket, limits);
    accepted.push({ conn, closed: new Promise((r) => conn.once('close', r)) });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { port, accepted, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function sendRaw(port: number, bytes: Uint8Array): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', r));
  s.write(bytes);
  return s;
}

const halfFrame = (announced: number, sent: number) => {
  const b = new Uint8Array(4 + sent);
  new DataView(b.buffer).setUint32(0, announced);
  return b;
};

test('half-received frames of all connections share one budget; the one that overflows it is dropped', async (t) => {
  const budget = new ByteBudget(1_000);
  const srv = await serve({ ...CONNECTION_LIMITS_DEFAULT, inboundBudget: budget });
  t.after(srv.close);
  const a = await sendRaw(srv.port, halfFrame(900, 600));
  t.after(() => a.destroy());
  await waitFor(() => budget.usedBytes === 604);
  const b = await sendRaw(srv.port, halfFrame(900, 600));
  t.after(() => b.destroy());
  await waitFor(() => srv.accepted.length === 2);
  const reason = await srv.accepted[1]!.closed;
  assert.equal(reason.kind, 'overload');
  assert.equal(srv.accepted[0]!.conn.isClosed, false);
  assert.equal(budget.usedBytes, 604);
  a.destroy();
  await srv.accepted[0]!.closed;
  assert.equal(budget.usedBytes, 0, 'a closed connection gives its bytes back');
});

test('a frame left unfinished past partialFrameTimeoutMs ends the connection', async (t) => {
  const srv = await serve({ ...CONNECTION_LIMITS_DEFAULT, partialFrameTimeoutMs: 100 });
  t.after(srv.close);
  const s = await sendRaw(srv.port, halfFrame(50, 10));
  t.after(() => s.destroy());
  await waitFor(() => srv.accepted.length === 1);
  const reason = await srv.accepted[0]!.closed;
  assert.equal(reason.kind, 'overload');
});

async function waitFor(cond: () => boolean, timeoutMs = 3_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('corkForTick: frames sent in the same run of callbacks and promise reactions leave in one write, after it', async (t) => {
  const srv = await serve(CONNECTION_LIMITS_DEFAULT);
  t.after(srv.close);
  const client = net.connect(srv.port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', r));
  await waitFor(() => srv.accepted.length === 1);
  const conn = srv.accepted[0]!.conn;
  const writes: number[] = [];
  const socket = conn.socket as net.Socket & { _writev?: unknown; _write: (...a: unknown[]) => void };
  const realWritev = socket._writev as ((chunks: { chunk: Uint8Array }[], cb: () => void) => void) | undefined;
  assert.ok(realWritev, 'net sockets write corked chunks with _writev');
  socket._writev = (chunks: { chunk: Uint8Array }[], cb: () => void) => {
    writes.push(chunks.length);
    realWritev.call(socket, chunks, cb);
  };
  const frame = halfFrame(0, 0);
  await Promise.all(
    [1, 2, 3].map((i) =>
      Promise.resolve(i).then(() => {
        conn.corkForTick();
        conn.sendFrame(frame);
        assert.equal(writes.length, 0, 'held while the reactions run');
      }),
    ),
  );
  await waitFor(() => writes.length > 0);
  assert.deepEqual(writes, [3], 'three frames, one writev');
  let got = 0;
  client.on('data', (b) => (got += b.length));
  await waitFor(() => got === 12);
  client.destroy();
  conn.close();
});
