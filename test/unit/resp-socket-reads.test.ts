// readIntoBuffer: an accepted socket reads into one shared buffer (the
// onread option Node gives only to sockets it connects) — it must engage on
// the Node we run on, hand out owned copies, and keep EOF, pause/resume and
// backpressure as 'data' has them; where the internals differ it must change
// nothing.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { READ_BUFFER_BYTES, readIntoBuffer } from '../../src/api/resp/socket-reads.js';

/** A server whose 'connection' handler is `onSocket`, and a client connected to it. */
async function pair(t: TestContext, onSocket: (s: net.Socket) => void): Promise<net.Socket> {
  const server = net.createServer({ allowHalfOpen: true }, onSocket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  await once(client, 'connect');
  t.after(() => {
    client.destroy();
    server.close();
  });
  return client;
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await sleep(5);
  assert.ok(cond(), 'condition not reached in time');
}

test('engages on this Node: owned copies, no data events, end after the last chunk', async (t) => {
  const shared = Buffer.alloc(READ_BUFFER_BYTES);
  const chunks: Buffer[] = [];
  let engaged: boolean | undefined;
  let dataEvents = 0;
  let ended = false;
  const client = await pair(t, (s) => {
    s.on('data', () => (dataEvents += 1));
    engaged = readIntoBuffer(s, shared, (c) => chunks.push(c));
    s.once('end', () => (ended = true));
  });
  client.write('first');
  await until(() => chunks.length === 1);
  client.write('second!');
  await until(() => chunks.length === 2);
  client.end();
  await until(() => ended);
  assert.equal(engaged, true, 'the fast path must engage on the Node the project runs on');
  assert.deepEqual(chunks.map(String), ['first', 'second!'], 'each chunk is a copy, not overwritten by the next read');
  assert.notEqual(chunks[0]!.buffer, shared.buffer);
  assert.equal(dataEvents, 0);
});

test('pause() stops reads and resume() delivers what arrived meanwhile', async (t) => {
  const shared = Buffer.alloc(READ_BUFFER_BYTES);
  let received = '';
  let server: net.Socket | undefined;
  const client = await pair(t, (s) => {
    server = s;
    s.on('data', () => {});
    readIntoBuffer(s, shared, (c) => (received += c.toString()));
  });
  client.write('a');
  await until(() => received === 'a');
  server!.pause();
  client.write('b');
  await sleep(50);
  assert.equal(received, 'a', 'nothing is read while paused');
  server!.resume();
  await until(() => received === 'ab');
});

test('changes nothing where the internals are not the expected ones', async (t) => {
  const shared = Buffer.alloc(READ_BUFFER_BYTES);
  let second: boolean | undefined;
  let received = '';
  const client = await pair(t, (s) => {
    s.on('data', () => {});
    readIntoBuffer(s, shared, (c) => (received += c.toString()));
    // Its slots are taken now: a second attempt must refuse rather than overwrite them.
    second = readIntoBuffer(s, shared, () => assert.fail('the second callback must never run'));
  });
  client.write('x');
  await until(() => received === 'x');
  assert.equal(second, false);
  const plain = new net.Socket(); // no handle yet
  assert.equal(readIntoBuffer(plain, shared, () => {}), false);
});
