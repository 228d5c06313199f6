import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { FrameDecoder, decodeEnvelope, encodeEnvelopeFrame } from '../wire/index.js';
import type { Envelope, EnvelopeInit, WireError } from '../wire/index.js';

/**
 * One TCP stream of length-prefixed protobuf envelopes (DESIGN.md section 3).
 *
 * - Reading: a bounded FrameDecoder; a frame over the limit or a malformed
 *   envelope ends the connection with a 'protocol' close (the peer broke it).
 * - Writing: every frame is encoded whole and handed to the socket in one
 *   write, so frames never interleave (seed 002's one writer per socket);
 *   bytes queued in the socket are bounded, and a peer that does not read
 *   is disconnected rather than allowed to grow our memory.
 * - Requests carry a uint32 id; the answer with the same id resolves them.
 */
export interface ConnectionLimits {
  readonly frameBytesMax: number;
  /** Bound of the first frame received (default frameBytesMax); the listener sets it to a Hello's size. */
  readonly firstFrameBytesMax?: number;
  /** Bytes we let queue up unsent before we give up on a slow reader. */
  readonly outboundBytesMax: number;
  readonly pendingRequestsMax: number;
  /** A frame begun but not finished within this time ends the connection (slowloris). */
  readonly partialFrameTimeoutMs?: number;
  /**
   * Shared by every connection a listener accepted: the bytes all of them
   * hold in half-received frames. Over its max, the connection that pushed it
   * over is dropped, so 1,024 strangers cannot each park a 4 MiB frame.
   */
  readonly inboundBudget?: ByteBudget;
}

/** A byte count shared by many connections, with a ceiling. */
export class ByteBudget {
  usedBytes = 0;
  constructor(readonly maxBytes: number) {}
}

export const CONNECTION_LIMITS_DEFAULT: ConnectionLimits = Object.freeze({
  frameBytesMax: 4 * 1024 * 1024,
  outboundBytesMax: 16 * 1024 * 1024,
  pendingRequestsMax: 1_024,
  partialFrameTimeoutMs: 30_000,
});

export type CloseReason =
  | { readonly kind: 'local'; readonly why: string }
  | { readonly kind: 'remote' }
  | { readonly kind: 'protocol'; readonly error: WireError }
  | { readonly kind: 'socket'; readonly error: Error }
  | { readonly kind: 'slow_reader' }
  | { readonly kind: 'overload'; readonly why: string };

export class RequestError extends Error {
  override name = 'RequestError';
  constructor(readonly code: 'timeout' | 'closed' | 'too_many_pending' | string, message: string) {
    super(message);
  }
}

interface Pending {
  resolve(env: Envelope): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface FramedConnectionEvents {
  envelope: [Envelope];
  close: [CloseReason];
}

export class FramedConnection extends EventEmitter<FramedConnectionEvents> {
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private closed = false;
  /** Writes held by corkForTick until the current run of callbacks ends. */
  private corked = false;
  /** Bytes of this connection counted in the shared inbound budget. */
  private budgetedBytes = 0;
  private partialTimer: NodeJS.Timeout | undefined;
  private frameHook: ((payload: Uint8Array) => boolean) | undefined;
  readonly remote: string;

  constructor(
    readonly socket: Socket,
    private readonly limits: ConnectionLimits = CONNECTION_LIMITS_DEFAULT,
  ) {
    super();
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.decoder = new FrameDecoder(limits.frameBytesMax, limits.firstFrameBytesMax ?? limits.frameBytesMax);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // 'end': the peer closed its side; we have nothing more to say either.
    socket.on('end', () => this.close({ kind: 'remote' }));
    socket.on('error', (error) => this.close({ kind: 'socket', error }));
    socket.on('close', () => this.close({ kind: 'remote' }));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Offers every received frame to `hook` first; a frame it takes (true) is
   * not decoded as an envelope here. A hot path (the cache's flood) decodes
   * its own frames this way; anything it declines takes the usual path.
   */
  setFrameHook(hook: ((payload: Uint8Array) => boolean) | undefined): void {
    this.frameHook = hook;
  }

  /** Sends one frame; false (and the connection closes) if the peer stopped reading. */
  send(init: EnvelopeInit): boolean {
    return this.sendFrame(encodeEnvelopeFrame(init));
  }

  /** Sends an already encoded frame (one encoding shared by many connections). */
  sendFrame(frame: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.socket.writableLength > this.limits.outboundBytesMax) {
      this.close({ kind: 'slow_reader' });
      return false;
    }
    this.socket.write(frame);
    return true;
  }

  /**
   * Holds this connection's writes until the current run of callbacks and
   * promise reactions has ended (process.nextTick): answers that resolve
   * together — the acknowledgements of one gossip group commit — then leave
   * in one write instead of one system call each.
   */
  corkForTick(): void {
    if (this.closed || this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => {
      this.corked = false;
      this.socket.uncork();
    });
  }

  /** Sends a request and resolves with the envelope answering it. */
  request(init: EnvelopeInit, timeoutMs: number): Promise<Envelope> {
    if (this.closed) return Promise.reject(new RequestError('closed', 'connection closed'));
    if (this.pending.size >= this.limits.pendingRequestsMax) {
      return Promise.reject(new RequestError('too_many_pending', `more than ${this.limits.pendingRequestsMax} requests pending`));
    }
    const requestId = this.allocateRequestId();
    return new Promise<Envelope>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new RequestError('timeout', `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.send({ ...init, requestId });
    });
  }

  /** Answers a request with the same id. */
  reply(request: Envelope, init: EnvelopeInit): boolean {
    return this.send({ ...init, requestId: request.requestId, response: true });
  }

  close(reason: CloseReason = { kind: 'local', why: 'closed' }): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError('closed', 'connection closed before the answer'));
    }
    this.pending.clear();
    this.releaseBudget();
    clearTimeout(this.partialTimer);
    if (reason.kind === 'protocol' || reason.kind === 'slow_reader' || reason.kind === 'overload') this.socket.destroy();
    else this.socket.end();
    // A peer that never acknowledges our FIN must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), 2_000).unref();
    this.emit('close', reason);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let frames: Uint8Array[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.close({ kind: 'protocol', error: err as WireError });
      return;
    }
    if (!this.accountPartial()) return;
    for (const frame of frames) {
      if (this.closed) return;
      if (this.frameHook?.(frame)) continue;
      let env: Envelope;
      try {
        env = decodeEnvelope(frame);
      } catch (err) {
        this.close({ kind: 'protocol', error: err as WireError });
        return;
      }
      const waiting = env.response ? this.pending.get(env.requestId) : undefined;
      if (env.response) {
        // An answer nobody waits for any more (timed out) is dropped.
        if (!waiting) continue;
        this.pending.delete(env.requestId);
        clearTimeout(waiting.timer);
        waiting.resolve(env);
      } else {
        this.emit('envelope', env);
      }
    }
  }

  /** Tracks the half-received frame against the shared budget and its deadline; false if the connection was dropped. */
  private accountPartial(): boolean {
    const pendingBytes = this.decoder.pendingBytes;
    const budget = this.limits.inboundBudget;
    if (budget) {
      budget.usedBytes += pendingBytes - this.budgetedBytes;
      this.budgetedBytes = pendingBytes;
      if (budget.usedBytes > budget.maxBytes) {
        this.close({ kind: 'overload', why: `half-received frames of all connections exceed ${budget.maxBytes} bytes` });
        return false;
      }
    }
    const timeoutMs = this.limits.partialFrameTimeoutMs;
    if (timeoutMs !== undefined) {
      if (pendingBytes === 0) {
        clearTimeout(this.partialTimer);
        this.partialTimer = undefined;
      } else if (!this.partialTimer) {
        this.partialTimer = setTimeout(() => this.close({ kind: 'overload', why: `a frame stayed incomplete for ${timeoutMs} ms` }), timeoutMs);
      }
    }
    return true;
  }

  private releaseBudget(): void {
    if (this.limits.inboundBudget) this.limits.inboundBudget.usedBytes -= this.budgetedBytes;
    this.budgetedBytes = 0;
  }

  private allocateRequestId(): number {
    // uint32 on the wire; 0 means "no request", so skip it when wrapping.
    for (;;) {
      const id = this.nextRequestId;
      this.nextRequestId = id >= 0xffff_ffff ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }
}
