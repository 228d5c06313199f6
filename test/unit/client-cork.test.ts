// The TypeScript client against a fake node on loopback: requests made in
// the same run of callbacks (many submits in flight) leave in one write, so
// the node reads them with one system call and one wake-up; each still gets
// its own answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { GrapevineClient } from '../../src/api/client.js';
import { FramedConnection } from '../../src/runtime/connection.js';
import { helloBody } from '../../src/runtime/handshake.js';

test('submits issued together leave in one write and are answered one by one', async (t) => {
  const server = net.createServer((socket) => {
    const conn = new FramedConnection(socket);
    conn.on('envelope', (env) => {
      if (env.body.case === 'hello') conn.reply(env, { body: helloBody({ cluster: 'c', id: 'nodeAAAAAAA', incarnation: 1, role: 'peer' }) });
      else if (env.body.case === 'submitRequest') conn.reply(env, { body: { case: 'submitResponse', value: { id: `id-${env.body.value.text}` } } });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const c = await GrapevineClient.connect('127.0.0.1', (server.address() as net.AddressInfo).port, { timeoutMs: 2_000 });
  t.after(() => c.close());
  const socket = (c as unknown as { conn: FramedConnection }).conn.socket as net.Socket & { _writev: (chunks: unknown[], cb: () => void) => void; _write: (...a: unknown[]) => void };
  const writes: number[] = [];
  const realWritev = socket._writev;
  const realWrite = socket._write;
  socket._writev = (chunks, cb) => {
    writes.push(chunks.length);
    realWritev.call(socket, chunks, cb);
  };
  socket._write = (...a) => {
    writes.push(1);
    realWrite.apply(socket, a);
  };
  const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => c.submit(`m${i}`)));
  assert.deepEqual(ids, Array.from({ length: 20 }, (_, i) => `id-m${i}`));
  assert.deepEqual(writes, [20], 'twenty requests, one write');
  // One at a time still goes at once (nothing waits for company).
  assert.equal(await c.submit('alone'), 'id-alone');
  assert.deepEqual(writes, [20, 1]);
});
