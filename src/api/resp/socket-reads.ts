// Reads of an accepted socket into one buffer the RESP server owns, instead
// of a fresh allocation per read.
//
// Why: by default every read of a net.Socket mallocs 64 KiB, shrinks it to
// the bytes read, wraps it in a new ArrayBuffer and Buffer and pushes it
// through the Readable machinery (an 'addChunk', a 'data' emit and a
// nextTick per read). With redis-benchmark at one command per read that was
// about a tenth of the node's CPU per GET. Node offers the cure as the
// documented `onread: { buffer, callback }` option of net.Socket, but only to
// sockets it creates itself (net.connect), not to those a net.Server accepts.
//
// So this applies the same setting to an accepted socket through Node's own
// internals (the handle's `useUserBuffer` and the socket's kBuffer/kBufferCb
// slots, which is all the onread option sets; Node 18-22), and only when they
// are exactly as expected: otherwise it changes nothing and the caller keeps
// its 'data' listener. test/unit/resp-socket-reads.test.ts checks that the
// fast path engages on the Node the project runs on, so an upgrade that
// changes these internals is noticed rather than silently slower.

import type { Socket } from 'node:net';

/**
 * Bytes of the shared read buffer: libuv's own read size, so a read returns
 * as much as it does by default.
 */
export const READ_BUFFER_BYTES = 64 * 1024;

interface UserBufferHandle {
  useUserBuffer(buffer: Uint8Array): void;
}

/** The socket's private slot whose Symbol has this description, if it exists and holds null. */
function nullSlot(socket: Socket, description: string): symbol | undefined {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === description);
  return sym !== undefined && (socket as unknown as Record<symbol, unknown>)[sym] === null ? sym : undefined;
}

/**
 * Makes `socket` read into `buffer` (as net.Socket's documented `onread`
 * option does) and call `onChunk` per read with a copy of the bytes read,
 * which the callee owns as it would a 'data' chunk: the buffer may be shared
 * by every connection, since each read is handled before the next one. The
 * copy costs a slice of Node's Buffer pool for small reads, far less than
 * the allocation it replaces. EOF, errors, pause() and resume() behave as
 * with 'data'. Returns false, changing nothing, when this Node's internals
 * are not the expected ones (then 'data' events carry the input as usual).
 * Call it synchronously in the 'connection' handler, before any read.
 */
export function readIntoBuffer(socket: Socket, buffer: Buffer, onChunk: (chunk: Buffer) => void): boolean {
  const handle = (socket as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') return false;
  const kBuffer = nullSlot(socket, 'kBuffer');
  const kBufferCb = nullSlot(socket, 'kBufferCb');
  const kBufferGen = nullSlot(socket, 'kBufferGen');
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return false;
  const slots = socket as unknown as Record<symbol, unknown>;
  slots[kBuffer] = buffer;
  // Node calls this with (bytes read, the buffer); returning false would pause.
  slots[kBufferCb] = (nread: number): void => {
    const chunk = Buffer.allocUnsafe(nread);
    buffer.copy(chunk, 0, 0, nread);
    onChunk(chunk);
  };
  handle.useUserBuffer(buffer);
  return true;
}
