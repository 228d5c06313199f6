import { DeliveryFilter, nextState, refuse } from '../core/pmcast/participant.js';
import type { ParticipantCommand, ParticipantState } from '../core/pmcast/participant.js';
import type { Envelope, EnvelopeInit } from '../wire/index.js';
import { CONNECTION_LIMITS_DEFAULT } from './connection.js';
import type { FramedConnection } from './connection.js';
import { connectAndGreet } from './handshake.js';
import { Listener } from './listener.js';
import type { Logger } from './log.js';
import { decodePmDeliverFrame } from './pm-frame.js';
import { ParticipantLog } from './pm-log.js';

/**
 * Seed 004's participant. Commands (thread-A) go to the coordinator over one
 * command connection and return once it acknowledged them. The receiver
 * (thread-B) listens on the port given to register/reconnect only while
 * online; every delivered message it has not logged yet is appended to the
 * log, then acknowledged to the coordinator.
 */
export interface ParticipantOptions {
  readonly id: string;
  readonly logPath: string;
  readonly coordinatorHost: string;
  readonly coordinatorPort: number;
  /** Bound on connecting to and hearing back from the coordinator. */
  readonly timeoutMs: number;
  readonly log: Logger;
}

export class ParticipantError extends Error {
  override name = 'ParticipantError';
}

export class Participant {
  private state: ParticipantState;
  private readonly messageLog: ParticipantLog;
  private readonly filter: DeliveryFilter;
  private command: FramedConnection | undefined;
  private receiver: Listener | undefined;
  private closed = false;

  constructor(private readonly options: ParticipantOptions) {
    this.messageLog = ParticipantLog.open(options.logPath);
    this.filter = new DeliveryFilter(this.messageLog.lastSeq);
    // A participant that was registered when it stopped comes back offline: `reconnect PORT` resumes it.
    this.state = this.messageLog.registered ? 'offline' : 'unregistered';
  }

  get current(): ParticipantState {
    return this.state;
  }

  /** Runs one command; resolves with the outcome line, rejects with a ParticipantError. */
  async run(cmd: ParticipantCommand): Promise<string> {
    const why = refuse(this.state, cmd);
    if (why) throw new ParticipantError(why);
    const id = this.options.id;
    switch (cmd.kind) {
      case 'quit':
        await this.close();
        return 'ok quit';
      case 'msend': {
        const ok = await this.request({ body: { case: 'pmSend', value: { participant: id, text: cmd.text } } });
        return `ok msend seq=${ok.seq} at=${ok.acceptedMs}`;
      }
      case 'register':
      case 'reconnect': {
        const host = await this.localHost();
        await this.startReceiver(host, cmd.port);
        try {
          const body: Envelope['body'] =
            cmd.kind === 'register'
              ? { case: 'pmRegister', value: { $typeName: 'grapevine.v1.PmRegister', participant: id, host, port: cmd.port } }
              : { case: 'pmReconnect', value: { $typeName: 'grapevine.v1.PmReconnect', participant: id, host, port: cmd.port } };
          const ok = await this.request({ body });
          this.state = nextState(this.state, cmd);
          this.messageLog.setRegistered(true);
          return `ok ${cmd.kind} port=${cmd.port} at=${ok.acceptedMs} seq=${ok.seq}`;
        } catch (err) {
          await this.stopReceiver();
          throw err;
        }
      }
      case 'disconnect':
      case 'deregister': {
        const body: Envelope['body'] =
          cmd.kind === 'disconnect'
            ? { case: 'pmDisconnect', value: { $typeName: 'grapevine.v1.PmDisconnect', participant: id } }
            : { case: 'pmDeregister', value: { $typeName: 'grapevine.v1.PmDeregister', participant: id } };
        const ok = await this.request({ body });
        this.state = nextState(this.state, cmd);
        if (cmd.kind === 'deregister') this.messageLog.setRegistered(false);
        await this.stopReceiver();
        return `ok ${cmd.kind} at=${ok.acceptedMs} seq=${ok.seq}`;
      }
    }
  }

  /** Releases the port, the coordinator connection and the log; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stopReceiver();
    this.command?.close({ kind: 'local', why: 'quit' });
    this.command = undefined;
    this.messageLog.close();
  }

  private async request(init: EnvelopeInit): Promise<{ seq: bigint; acceptedMs: bigint }> {
    const conn = await this.commandConnection();
    let answer: Envelope;
    try {
      answer = await conn.request(init, this.options.timeoutMs);
    } catch (err) {
      conn.close({ kind: 'local', why: 'request failed' });
      throw new ParticipantError(`the coordinator at ${this.coordinatorAddr()} did not answer within ${this.options.timeoutMs} ms (${(err as Error).message})`);
    }
    if (answer.body.case === 'error') throw new ParticipantError(`coordinator refused: ${answer.body.value.message}`);
    if (answer.body.case !== 'pmOk') throw new ParticipantError(`unexpected answer from the coordinator: ${answer.body.case ?? 'nothing'}`);
    return answer.body.value;
  }

  private async commandConnection(): Promise<FramedConnection> {
    if (this.command && !this.command.isClosed) return this.command;
    try {
      const { conn } = await connectAndGreet(this.options.coordinatorHost, this.options.coordinatorPort, { cluster: 'pmcast', id: this.options.id, incarnation: 0, role: 'client' }, {
        timeoutMs: this.options.timeoutMs,
        expectCluster: 'pmcast',
      });
      this.command = conn;
      return conn;
    } catch (err) {
      throw new ParticipantError(`cannot reach the coordinator at ${this.coordinatorAddr()}: ${(err as Error).message}`);
    }
  }

  /** The address the coordinator reaches us at: ours on the command connection. */
  private async localHost(): Promise<string> {
    const conn = await this.commandConnection();
    return conn.socket.localAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1';
  }

  private async startReceiver(host: string, port: number): Promise<void> {
    await this.stopReceiver();
    const receiver = new Listener({
      host,
      port,
      me: () => ({ cluster: 'pmcast', id: this.options.id, incarnation: 0, role: 'peer' }),
      limits: CONNECTION_LIMITS_DEFAULT,
      connectionsMax: 16,
      inboundBudgetBytes: 64 * 1024 * 1024,
      helloTimeoutMs: 5_000,
      log: this.options.log.child({ component: 'receiver' }),
      clock: () => performance.now(),
      onPeer: (_hello, conn) => {
        conn.setFrameHook((payload) => {
          // Deliveries in their canonical layout skip the generated decoder (pm-frame.ts).
          const messages = decodePmDeliverFrame(payload);
          if (!messages) return false;
          this.onMessages(messages, conn);
          return true;
        });
        conn.on('envelope', (env) => this.onDelivery(env, conn));
      },
      onClient: (conn) => conn.close({ kind: 'local', why: 'only the coordinator delivers here' }),
    });
    try {
      await receiver.start((err) => this.options.log.error({ err: err.message }, 'receiver error'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ParticipantError(code === 'EADDRINUSE' ? `port ${port} is already in use` : `cannot listen on ${host}:${port}: ${(err as Error).message}`);
    }
    this.receiver = receiver;
  }

  private async stopReceiver(): Promise<void> {
    const r = this.receiver;
    this.receiver = undefined;
    await r?.stop();
  }

  private onDelivery(env: Envelope, conn: FramedConnection): void {
    if (env.body.case !== 'pmDeliver') return;
    this.onMessages(env.body.value.messages.map((m) => ({ seq: Number(m.seq), text: m.text })), conn);
  }

  private onMessages(messages: readonly { seq: number; text: string }[], conn: FramedConnection): void {
    const fresh = this.filter.accept(messages);
    this.messageLog.append(fresh);
    conn.send({ body: { case: 'pmAck', value: { seq: BigInt(this.filter.lastSeq) } } });
  }

  private coordinatorAddr(): string {
    return `${this.options.coordinatorHost}:${this.options.coordinatorPort}`;
  }
}
