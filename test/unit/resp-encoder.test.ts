// The RESP reply writer: exact bytes of every reply type, large bulks sent
// from their own buffer, and the batch buffer reused only when the socket
// holds no reference to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { ErrorReply, OK, PONG, RawReply, ReplyWriter, SimpleString } from '../../src/api/resp/encoder.js';
import type { Reply } from '../../src/api/resp/encoder.js';

/** Records what is written, by reference (as a real socket may keep it). */
function fakeSocket(writableLength = 0) {
  const writes: Uint8Array[] = [];
  let corked = 0;
  const socket = {
    writableLength,
    write: (chunk: Uint8Array) => writes.push(chunk),
    cork: () => (corked += 1),
    uncork: () => {},
  };
  return { socket: socket as unknown as Socket, writes, corked: () => corked };
}

function bytesOf(...replies: Reply[]): string {
  const w = new ReplyWriter();
  for (const r of replies) w.reply(r);
  const { socket, writes } = fakeSocket();
  w.flush(socket);
  return Buffer.concat(writes).toString('latin1');
}

test('every reply type, byte for byte', () => {
  assert.equal(bytesOf(OK, PONG, new SimpleString('RESET')), '+OK\r\n+PONG\r\n+RESET\r\n');
  assert.equal(bytesOf(new ErrorReply('ERR bad\r\nthing')), '-ERR bad  thing\r\n');
  assert.equal(bytesOf(0, 7, 10, 1234567890, -42, 2 ** 53 - 1), ':0\r\n:7\r\n:10\r\n:1234567890\r\n:-42\r\n:9007199254740991\r\n');
  assert.equal(bytesOf(Buffer.from('abc'), 'é', new Uint8Array(0)), '$3\r\nabc\r\n$2\r\n\xc3\xa9\r\n$0\r\n\r\n');
  assert.equal(bytesOf(null, undefined, false, true), '$-1\r\n$-1\r\n$-1\r\n+OK\r\n');
  assert.equal(bytesOf(['a', 1, null, [], ['x']]), '*5\r\n$1\r\na\r\n:1\r\n$-1\r\n*0\r\n*1\r\n$1\r\nx\r\n');
  assert.equal(bytesOf(new RawReply(Buffer.from('*0\r\n'))), '*0\r\n');
  assert.equal(bytesOf(new ErrorReply('ERR \xff byte')), '-ERR \xff byte\r\n', 'error lines are binary strings');
});

test('a large bulk is written from its own buffer, between the small bytes, in one corked batch', () => {
  const big = Buffer.alloc(100 * 1024, 0x61);
  const w = new ReplyWriter();
  w.reply(OK);
  w.reply(big);
  w.reply(7);
  const { socket, writes, corked } = fakeSocket();
  w.flush(socket);
  assert.equal(corked(), 1);
  assert.ok(writes.includes(big), 'the value itself, not a copy');
  assert.equal(Buffer.concat(writes).toString('latin1'), `+OK\r\n$${big.length}\r\n${'a'.repeat(big.length)}\r\n:7\r\n`);
  assert.equal(w.pendingBytes, 0);
});

test('a batch the socket still holds is never overwritten by the next one', () => {
  const w = new ReplyWriter();
  const busy = fakeSocket(1); // the kernel did not take it all: the socket keeps a reference
  w.reply('first');
  w.flush(busy.socket);
  w.reply('second');
  w.flush(busy.socket);
  assert.deepEqual(busy.writes.map((b) => Buffer.from(b).toString()), ['$5\r\nfirst\r\n', '$6\r\nsecond\r\n']);
});

test('a reply larger than the batch buffer grows it', () => {
  const value = Buffer.alloc(15 * 1024, 0x62);
  const replies: Reply[] = Array.from({ length: 10 }, () => value);
  const expected = replies.map(() => `$${value.length}\r\n${'b'.repeat(value.length)}\r\n`).join('');
  assert.equal(bytesOf(...replies), expected);
  assert.equal(bytesOf('x'.repeat(300 * 1024)), `$${300 * 1024}\r\n${'x'.repeat(300 * 1024)}\r\n`);
});
