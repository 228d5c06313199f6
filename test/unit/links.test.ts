import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { BACKOFF_DEFAULTS } from '../../src/core/backoff.js';
import type { FramedConnection } from '../../src/runtime/connection.js';
import { PeerLinks } from '../../src/runtime/links.js';
import type { PeerEndpoint } from '../../src/runtime/links.js';

const quiet = pino({ level: 'silent' });

/** Just what PeerLinks touches of a connection. */
class FakeConn extends EventEmitter {
  isClosed = false;
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.emit('close', { kind: 'local' });
  }
}

function harness() {
  const dials: { peer: PeerEndpoint; resolve: (c: FramedConnection) => void }[] = [];
  const links = new PeerLinks({
    self: { id: 'a', host: '10.77.0.1', port: 7000 },
    dial: (peer) => new Promise<FramedConnection>((resolve) => dials.push({ peer, resolve })),
    onEnvelope: () => {},
    log: quiet,
    random: () => 0.5,
    backoff: BACKOFF_DEFAULTS,
  });
  return { links, dials };
}

const b = (incarnation: number): PeerEndpoint => ({ id: 'b', host: '10.77.0.2', port: 7000, incarnation });
const settle = () => new Promise((r) => setImmediate(r));

test('a neighbour that restarts while it is being dialled is dialled again at its new incarnation', async () => {
  const { links, dials } = harness();
  await links.start();
  links.setDesired([b(1)]);
  assert.equal(dials.length, 1);

  links.setDesired([b(2)]); // its new beacon arrives while the first dial is still in flight
  const first = new FakeConn();
  dials[0]!.resolve(first as unknown as FramedConnection);
  await settle();
  assert.equal(first.isClosed, true, 'the connection dialled for the old incarnation is dropped');
  assert.equal(dials.length, 2, 'and the restarted peer is dialled again');
  assert.equal(dials[1]!.peer.incarnation, 2);

  dials[1]!.resolve(new FakeConn() as unknown as FramedConnection);
  await settle();
  assert.deepEqual(links.connectedIds(), ['b']);
  await links.stop();
});

test('a dial that completes after its neighbour is no longer wanted is closed and not retried', async () => {
  const { links, dials } = harness();
  await links.start();
  links.setDesired([b(1)]);
  links.setDesired([]);
  const conn = new FakeConn();
  dials[0]!.resolve(conn as unknown as FramedConnection);
  await settle();
  assert.equal(conn.isClosed, true);
  assert.equal(dials.length, 1);
  assert.deepEqual(links.connectedIds(), []);
  await links.stop();
});
