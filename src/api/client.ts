import { MemberState } from '../wire/index.js';
import type { Envelope, EnvelopeInit } from '../wire/index.js';
import type { FramedConnection } from '../runtime/connection.js';
import { connectAndGreet } from '../runtime/handshake.js';

/**
 * The TypeScript client of a grapevine node: one TCP connection, a client
 * Hello, then requests answered by request id.
 *
 *   const c = await GrapevineClient.connect('127.0.0.1', 7001);
 *   console.log(await c.status());
 *   c.close();
 */
export interface MemberStatus {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly state: 'alive' | 'suspect' | 'dead';
  readonly incarnation: number;
}

export interface StatusReport {
  readonly id: string;
  readonly members: MemberStatus[];
  readonly neighbours: string[];
  readonly connected: string[];
  readonly cluster: string;
  readonly incarnation: number;
}

export class ClientError extends Error {
  override name = 'ClientError';
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export interface ClientOptions {
  readonly timeoutMs?: number;
  /** Cluster name to expect; by default any cluster is accepted. */
  readonly cluster?: string;
}

const DEFAULT_TIMEOUT_MS = 5_000;

export class GrapevineClient {
  private constructor(
    private readonly conn: FramedConnection,
    private readonly timeoutMs: number,
    readonly nodeId: string,
    readonly cluster: string,
  ) {}

  static async connect(host: string, port: number, options: ClientOptions = {}): Promise<GrapevineClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    try {
      const { conn, peer } = await connectAndGreet(host, port, { cluster: options.cluster ?? '', id: '', incarnation: 0, role: 'client' }, {
        timeoutMs,
        expectCluster: options.cluster ?? '*',
      });
      return new GrapevineClient(conn, timeoutMs, peer.id, peer.cluster);
    } catch (err) {
      const e = err as Error & { code?: string };
      throw new ClientError(e.code ?? 'unreachable', `cannot reach node at ${host}:${port}: ${e.message}`);
    }
  }

  async status(): Promise<StatusReport> {
    const answer = await this.call({ body: { case: 'statusRequest', value: {} } }, 'statusResponse');
    const s = answer.body.value as Extract<Envelope['body'], { case: 'statusResponse' }>['value'];
    return {
      id: s.id,
      cluster: s.cluster,
      incarnation: Number(s.incarnation),
      members: s.members.map((m) => ({ id: m.id, host: m.host, port: m.port, state: stateName(m.state), incarnation: Number(m.incarnation) })),
      neighbours: [...s.neighbours],
      connected: [...s.connected],
    };
  }

  close(): void {
    this.conn.close({ kind: 'local', why: 'client done' });
  }

  private async call(init: EnvelopeInit, expect: NonNullable<Envelope['body']['case']>): Promise<Envelope> {
    let answer: Envelope;
    try {
      answer = await this.conn.request(init, this.timeoutMs);
    } catch (err) {
      throw new ClientError('unreachable', `node ${this.nodeId} did not answer: ${(err as Error).message}`);
    }
    if (answer.body.case === 'error') throw new ClientError(answer.body.value.code, answer.body.value.message);
    if (answer.body.case !== expect) throw new ClientError('bad_answer', `expected ${expect}, got ${answer.body.case ?? 'nothing'}`);
    return answer;
  }
}

function stateName(s: MemberState): MemberStatus['state'] {
  if (s === MemberState.ALIVE) return 'alive';
  if (s === MemberState.SUSPECT) return 'suspect';
  return 'dead';
}
