// The RESP2 port of a node: redis-cli and redis-benchmark talk to the cache
// here. Per connection, commands are decoded and started at once as they
// arrive (pipelining; the cache group-commits writes), and their replies are
// written strictly in command order: a reply waits in an ordered queue until
// every earlier one is out. Replies that are ready together leave in one
// socket write. Every connection reads into one buffer of the server's and
// gets a copy of each read (socket-reads.ts), not a fresh 64 KiB allocation
// per read. Every resource is bounded: connections, commands in flight,
// bytes waiting to be sent, and the time a half-received command may stall.

import net from 'node:net';
import type { Socket } from 'node:net';
import type { KvAccess } from '../../runtime/kv-access.js';
import type { Logger } from '../../runtime/log.js';
import { errorReply, executeCommand, RespSession, syncReadsOf } from './commands.js';
import type { CommandContext, KvSyncReads } from './commands.js';
import { RespDecoder, RespProtocolError, respDecoderLimits } from './decoder.js';
import type { RespDecoderLimits } from './decoder.js';
import { ErrorReply, ReplyWriter } from './encoder.js';
import type { Reply } from './encoder.js';
import type { RespCounters, RespServerView } from './info.js';
import { READ_BUFFER_BYTES, readIntoBuffer } from './socket-reads.js';

export interface RespServerOptions {
  /** Address to bind (the node's host; tests use 127.0.0.1). */
  readonly host: string;
  /** 0 picks a free port; the bound one is in the result. */
  readonly port: number;
  /** The cache; if it also has `getNow` (KvSyncReads), reads skip a promise per command. */
  readonly kv: KvAccess;
  /** The logger of this component (the caller binds `component`). */
  readonly log: Logger;
  /** Open connections at most; more are told `-ERR max number of clients reached` and closed. Default 10,000. */
  readonly connectionsMax?: number;
  /** A connection holding part of a command that sends nothing for this long is closed. Default 30 s. */
  readonly idleHalfCommandTimeoutMs?: number;
  /** Stop reading a connection while this many reply bytes wait for it; close it at 4x. Default 32 MiB. */
  readonly outboundBytesMax?: number;
  /** Stop reading a connection while more commands than this await their replies. Default 1,024. */
  readonly inflightCommandsMax?: number;
  /** Bytes of one command still being received. Default: see respDecoderLimits. */
  readonly commandBytesMax?: number;
  /**
   * Read every connection into one buffer of the server's (socket-reads.ts)
   * where this Node allows it; false: plain 'data' events. Default true;
   * tests run both.
   */
  readonly sharedReadBuffer?: boolean;
}

export interface RespServer {
  /** The port bound (useful with port 0). */
  readonly port: number;
  /** Stops listening and closes every connection; safe to call twice. */
  close(): Promise<void>;
  stats(): RespCounters;
}

export const RESP_SERVER_DEFAULTS = Object.freeze({
  connectionsMax: 10_000,
  idleHalfCommandTimeoutMs: 30_000,
  outboundBytesMax: 32 * 1024 * 1024,
  inflightCommandsMax: 1_024,
});

/** How much more than outboundBytesMax a client that does not read may hold before it is dropped. */
const OUTBOUND_HARD_FACTOR = 4;
/** After our last reply (QUIT, protocol error, refusal) the peer has this long to close its side. */
const LINGER_MS = 2_000;
const REFUSED = '-ERR max number of clients reached\r\n';

interface Shared {
  readonly kv: KvAccess;
  readonly syncReads: KvSyncReads | undefined;
  readonly log: Logger;
  readonly view: RespServerView;
  readonly limits: RespDecoderLimits;
  readonly idleHalfCommandTimeoutMs: number;
  readonly outboundBytesMax: number;
  readonly inflightCommandsMax: number;
  readonly counters: { -readonly [K in keyof RespCounters]: RespCounters[K] };
  /** Every connection reads into this one buffer (see socket-reads.ts); each read is copied out before the next. */
  readonly readBuffer: Buffer | undefined;
  /** Set once this Node refused the shared read buffer (logged once, then 'data' events silently). */
  sharedReadsRefused: boolean;
}

/** Starts the RESP port; resolves once it listens. */
export async function startRespServer(options: RespServerOptions): Promise<RespServer> {
  const log = options.log;
  const connectionsMax = options.connectionsMax ?? RESP_SERVER_DEFAULTS.connectionsMax;
  const limits = respDecoderLimits(options.kv.limits, options.commandBytesMax);
  const counters = { connections: 0, connectionsTotal: 0, connectionsRefused: 0, commands: 0, protocolErrors: 0, idleDisconnects: 0, outboundDisconnects: 0 };
  const sockets = new Set<Socket>();
  let boundPort = options.port;
  const view: RespServerView = {
    host: options.host,
    get port() {
      return boundPort;
    },
    startedAtMs: Date.now(),
    connectionsMax,
    bulkBytesMax: limits.bulkBytesMax,
    counters: () => ({ ...counters }),
  };
  const shared: Shared = {
    kv: options.kv,
    syncReads: syncReadsOf(options.kv),
    log,
    view,
    limits,
    idleHalfCommandTimeoutMs: options.idleHalfCommandTimeoutMs ?? RESP_SERVER_DEFAULTS.idleHalfCommandTimeoutMs,
    outboundBytesMax: options.outboundBytesMax ?? RESP_SERVER_DEFAULTS.outboundBytesMax,
    inflightCommandsMax: options.inflightCommandsMax ?? RESP_SERVER_DEFAULTS.inflightCommandsMax,
    counters,
    readBuffer: options.sharedReadBuffer === false ? undefined : Buffer.alloc(READ_BUFFER_BYTES),
    sharedReadsRefused: false,
  };
  let nextId = 1;

  // allowHalfOpen: a client that sends its commands and then ends its side
  // (`printf ... | nc`) still gets the replies the cache has not produced
  // yet; the connection ends itself once they are out.
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (counters.connections >= connectionsMax) {
      counters.connectionsRefused += 1;
      refuse(socket);
      return;
    }
    counters.connections += 1;
    counters.connectionsTotal += 1;
    socket.once('close', () => (counters.connections -= 1));
    new RespConnection(socket, nextId++, shared);
  });
  server.on('error', (err) => log.error({ err }, 'RESP listener failed'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  boundPort = (server.address() as net.AddressInfo).port;
  log.info({ host: options.host, port: boundPort, connectionsMax }, 'RESP port listening');

  let closed: Promise<void> | undefined;
  return {
    port: boundPort,
    stats: () => ({ ...counters }),
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closed;
    },
  };
}

/** Tells an extra client why, then closes; its input is read and dropped so the close is not a reset. */
function refuse(socket: Socket): void {
  socket.on('error', () => {});
  socket.on('data', () => {});
  socket.once('end', () => socket.end());
  socket.end(REFUSED);
  linger(socket);
}

function linger(socket: Socket): void {
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/** Entries of a drained queue prefix are dropped in one splice once this many piled up. */
const QUEUE_COMPACT_AT = 1_024;

class RespConnection {
  private readonly decoder: RespDecoder;
  private readonly writer = new ReplyWriter();
  private readonly ctx: CommandContext;
  private readonly session: RespSession;
  /**
   * Replies not yet written, in command order, from `queueHead` on: values
   * or promises of them. Only used while a promise is pending; otherwise a
   * reply goes straight to the writer.
   */
  private queue: (Reply | Promise<Reply>)[] = [];
  private queueHead = 0;
  /** The promise at the head of the queue that one reaction waits for; none while nothing is pending. */
  private awaited: Promise<Reply> | undefined;
  /**
   * The last promise that settled, and its reply: the cache hands every
   * write of one group commit the same promise, so the replies queued behind
   * it are written without another reaction each.
   */
  private settled: Promise<Reply> | undefined;
  private settledReply: Reply = null;
  /** No more commands are taken (QUIT or a protocol error); close once the replies are out. */
  private closing = false;
  private ended = false;
  private paused = false;
  private flushQueued = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    id: number,
    private readonly shared: Shared,
  ) {
    this.session = new RespSession(id);
    this.ctx = { kv: shared.kv, syncReads: shared.syncReads, server: shared.view, session: this.session, log: shared.log };
    this.decoder = new RespDecoder(this.onCommand, shared.limits);
    const onChunk = (chunk: Buffer): void => this.onData(chunk);
    // The 'data' listener also keeps the socket flowing, which 'end' needs; with
    // the shared read buffer in place, reads come through onChunk instead.
    socket.on('data', onChunk);
    if (shared.readBuffer && !shared.sharedReadsRefused && !readIntoBuffer(socket, shared.readBuffer, onChunk)) {
      shared.sharedReadsRefused = true;
      shared.log.warn({ node: process.version }, "RESP: this Node's sockets cannot read into a shared buffer; using 'data' events (more CPU per command)");
    }
    // 'drain': the socket's write buffer emptied (Node docs, net.Socket) - read again if that was why we stopped.
    socket.on('drain', () => this.updateReading());
    socket.on('error', (err) => shared.log.debug({ err, client: id }, 'RESP connection error'));
    // 'end': the client will send nothing more (Node docs, net.Socket); answer what it sent, then end.
    socket.once('end', () => {
      this.closing = true;
      this.flush();
    });
    socket.once('close', () => {
      this.ended = true;
      this.queue = [];
      this.queueHead = 0;
      this.settled = undefined;
      this.clearIdleTimer();
    });
  }

  /** Commands whose replies are not written yet. */
  private get inflight(): number {
    return this.queue.length - this.queueHead;
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return; // input after QUIT or a protocol error is dropped
    try {
      this.decoder.write(chunk);
    } catch (err) {
      this.onDecodeError(err);
    }
    this.flush();
    this.updateIdleTimer();
  }

  private onDecodeError(err: unknown): void {
    if (err instanceof RespProtocolError) {
      this.shared.counters.protocolErrors += 1;
      this.shared.log.debug({ client: this.session.id, err: err.message }, 'RESP protocol error; closing the connection');
      this.push(new ErrorReply(`ERR ${err.message}`));
    } else {
      this.push(errorReply(err, this.shared.log));
    }
    this.closing = true;
  }

  private readonly onCommand = (args: Buffer[]): void => {
    if (this.closing) return;
    this.shared.counters.commands += 1;
    const reply = executeCommand(this.ctx, args);
    if (this.session.quit) this.closing = true;
    this.push(reply);
  };

  /** A reply straight to the writer when nothing is ahead of it; else behind the others. */
  private push(reply: Reply | Promise<Reply>): void {
    if (this.awaited === undefined) {
      if (!(reply instanceof Promise)) {
        this.writer.reply(reply);
        return;
      }
      if (reply === this.settled) {
        this.writer.reply(this.settledReply);
        return;
      }
    }
    this.queue.push(reply);
    // Called from the decoder (onData): onData's own flush writes what this adds.
    if (this.awaited === undefined) this.drain(false);
  }

  /**
   * Writes queued replies in order until the queue is empty or its head is a
   * promise still pending; then one reaction waits for that promise. The
   * promises were all started already (pipelining); this only orders the
   * replies. `fromReaction`: called from a promise reaction, so what was
   * written must be sent from here (see queueFlush).
   */
  private drain(fromReaction: boolean): void {
    const queue = this.queue;
    while (this.queueHead < queue.length) {
      let reply = queue[this.queueHead] as Reply | Promise<Reply>;
      if (reply instanceof Promise) {
        if (reply !== this.settled) {
          this.awaited = reply;
          reply.then(this.onSettled, this.onRejected);
          // What is written so far leaves once this turn's microtasks are
          // done, with the replies of any other command they settle.
          if (fromReaction) this.queueFlush();
          return;
        }
        reply = this.settledReply;
      }
      queue[this.queueHead++] = undefined;
      this.writer.reply(reply);
      if (this.queueHead >= QUEUE_COMPACT_AT) {
        queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
    }
    queue.length = 0;
    this.queueHead = 0;
    // Nothing is pending: no later reaction of this connection can add to
    // this batch, so it leaves now rather than after a tick.
    if (fromReaction) this.flush();
  }

  private readonly onSettled = (reply: Reply): void => {
    this.resume(reply);
  };

  private readonly onRejected = (err: unknown): void => {
    this.resume(errorReply(err, this.shared.log));
  };

  /** The awaited promise settled: its reply, then on down the queue. */
  private resume(reply: Reply): void {
    if (this.ended) return;
    try {
      this.settled = this.awaited;
      this.settledReply = reply;
      this.awaited = undefined;
      this.queue[this.queueHead++] = undefined;
      this.writer.reply(reply);
      this.drain(true);
    } catch (err) {
      // A bug, not the client's doing: log it and drop this connection only.
      this.shared.log.error({ err, client: this.session.id }, 'RESP reply writer failed; closing the connection');
      this.drop();
    }
  }

  private queueFlush(): void {
    // A nextTick queued from a promise reaction runs after the microtask queue
    // drains, so replies of commands that settle in the same turn (a group
    // commit) share one write.
    if (this.flushQueued) return;
    this.flushQueued = true;
    process.nextTick(this.flushTick);
  }

  private readonly flushTick = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  private flush(): void {
    if (this.ended) return;
    try {
      this.writer.flush(this.socket);
    } catch (err) {
      this.shared.log.error({ err, client: this.session.id }, 'RESP write failed');
      this.drop();
      return;
    }
    if (this.closing && this.awaited === undefined) {
      this.ended = true;
      this.clearIdleTimer();
      this.socket.end();
      linger(this.socket);
      return;
    }
    this.updateReading();
  }

  /** Closes at once; nothing more is written, counted or timed for this connection. */
  private drop(): void {
    this.ended = true;
    this.clearIdleTimer();
    this.socket.destroy();
  }

  /** Backpressure: stop reading while too many commands run or too many reply bytes wait. */
  private updateReading(): void {
    if (this.ended) return;
    const outBytes = this.socket.writableLength;
    if (outBytes > this.shared.outboundBytesMax * OUTBOUND_HARD_FACTOR) {
      this.shared.counters.outboundDisconnects += 1;
      this.shared.log.info({ client: this.session.id, outBytes }, 'RESP client does not read its replies; closing');
      this.drop();
      return;
    }
    const max = this.shared.inflightCommandsMax;
    const stop = this.inflight > max || outBytes > this.shared.outboundBytesMax;
    if (stop && !this.paused) {
      this.paused = true;
      this.socket.pause();
      this.clearIdleTimer(); // a stall we caused is not the client's
    } else if (this.paused && this.inflight <= max / 2 && outBytes <= this.shared.outboundBytesMax) {
      this.paused = false;
      this.socket.resume();
      this.updateIdleTimer();
    }
  }

  /** A half-received command may wait for more bytes only so long. */
  private updateIdleTimer(): void {
    if (this.ended || this.paused || !this.decoder.midCommand) {
      this.clearIdleTimer();
      return;
    }
    if (this.idleTimer) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      this.shared.counters.idleDisconnects += 1;
      this.shared.log.debug({ client: this.session.id, bufferedBytes: this.decoder.bufferedBytes }, 'RESP client stalled mid-command; closing');
      this.drop();
    }, this.shared.idleHalfCommandTimeoutMs);
    this.idleTimer.unref();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
