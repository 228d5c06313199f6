import net from 'node:net';
import type { Logger } from './log.js';
import { RateLimitedLog } from './log.js';
import { ByteBudget, FramedConnection } from './connection.js';
import type { ConnectionLimits } from './connection.js';
import { helloBody, parseHello } from './handshake.js';
import type { HelloInfo } from './handshake.js';
import { HELLO_FRAME_BYTES_MAX, PROTOCOL_VERSION } from '../wire/index.js';
import type { Service } from './supervisor.js';

/**
 * The node's one TCP port, serving peers and clients alike. Every connection
 * must open with a Hello within `helloTimeoutMs`; a wrong cluster or version
 * is answered with an Error frame and closed. Protocol offences (oversized or
 * malformed frames) close the connection and are logged at most once per
 * remote address per interval. Open connections are bounded.
 */
export interface ListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly me: () => HelloInfo;
  readonly limits: ConnectionLimits;
  /** Ceiling of the bytes all accepted connections may hold in half-received frames. */
  readonly inboundBudgetBytes: number;
  readonly connectionsMax: number;
  readonly helloTimeoutMs: number;
  readonly log: Logger;
  readonly clock: () => number;
  readonly onPeer: (peer: HelloInfo, conn: FramedConnection) => void;
  readonly onClient: (conn: FramedConnection) => void;
}

export class Listener implements Service {
  readonly name = 'listener';
  private server: net.Server | undefined;
  private readonly open = new Set<FramedConnection>();
  private readonly offences: RateLimitedLog;
  private readonly inboundBudget: ByteBudget;

  constructor(private readonly options: ListenerOptions) {
    this.offences = new RateLimitedLog(options.log);
    this.inboundBudget = new ByteBudget(options.inboundBudgetBytes);
  }

  get openConnections(): number {
    return this.open.size;
  }

  async start(fail: (err: Error) => void): Promise<void> {
    const server = net.createServer((socket) => this.onSocket(socket));
    server.maxConnections = this.options.connectionsMax;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.options.host, port: this.options.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', fail);
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.open) c.close({ kind: 'local', why: 'listener stopped' });
    this.open.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private onSocket(socket: net.Socket): void {
    // The first frame must be a small Hello: an unknown peer cannot make us buffer a big frame.
    const limits = this.options.limits;
    const conn = new FramedConnection(socket, {
      ...limits,
      firstFrameBytesMax: Math.min(limits.frameBytesMax, limits.firstFrameBytesMax ?? HELLO_FRAME_BYTES_MAX),
      inboundBudget: this.inboundBudget,
    });
    const remoteHost = socket.remoteAddress ?? '?';
    this.open.add(conn);
    const helloTimer = setTimeout(() => {
      this.offences.warn(`no_hello:${remoteHost}`, this.options.clock(), { remote: conn.remote }, 'connection sent no hello in time; closed');
      conn.close({ kind: 'local', why: 'no hello' });
    }, this.options.helloTimeoutMs);
    conn.on('close', (reason) => {
      clearTimeout(helloTimer);
      this.open.delete(conn);
      if (reason.kind === 'protocol' || reason.kind === 'slow_reader' || reason.kind === 'overload') {
        const detail = reason.kind === 'protocol' ? reason.error.message : reason.kind === 'overload' ? reason.why : 'peer does not read';
        this.offences.warn(`${reason.kind}:${remoteHost}`, this.options.clock(), { remote: conn.remote, reason: detail }, 'dropped a connection that broke the protocol');
      }
    });
    conn.once('envelope', (env) => {
      clearTimeout(helloTimer);
      const me = this.options.me();
      if (env.body.case !== 'hello') {
        this.offences.warn(`no_hello:${remoteHost}`, this.options.clock(), { remote: conn.remote, got: env.body.case }, 'connection did not open with a hello; closed');
        conn.reply(env, { body: { case: 'error', value: { code: 'no_hello', message: 'the first frame must be a hello' } } });
        conn.close({ kind: 'local', why: 'no hello' });
        return;
      }
      const hello = parseHello(env.body.value);
      const problem =
        env.body.value.protocolVersion !== PROTOCOL_VERSION
          ? `protocol version ${env.body.value.protocolVersion} is not supported (this node speaks ${PROTOCOL_VERSION})`
          : hello.role === 'peer' && hello.cluster !== me.cluster
            ? `cluster '${hello.cluster}' does not match this node's cluster '${me.cluster}'`
            : undefined;
      if (problem) {
        this.offences.warn(`handshake:${remoteHost}`, this.options.clock(), { remote: conn.remote, problem }, 'handshake refused');
        conn.reply(env, { body: { case: 'error', value: { code: 'handshake_refused', message: problem } } });
        conn.close({ kind: 'local', why: 'handshake refused' });
        return;
      }
      conn.reply(env, { body: helloBody(me) });
      if (hello.role === 'peer') this.options.onPeer(hello, conn);
      else this.options.onClient(conn);
    });
  }
}
