import { KvCondition, MemberState } from '../wire/index.js';
import type { Envelope, EnvelopeInit } from '../wire/index.js';
import type { FramedConnection } from '../runtime/connection.js';
import { connectAndGreet } from '../runtime/handshake.js';
import { messageFromWire } from '../runtime/gossip-codec.js';
import type { GossipMessage } from '../core/gossip/message.js';
import type { GossipMessage as WireGossipMessage } from '../wire/index.js';

export type { GossipMessage };

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
  /** Gossip overlay links, and which of them are connected. */
  readonly links: string[];
  readonly linksConnected: string[];
  readonly messages: number;
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
      links: [...s.links],
      linksConnected: [...s.linksConnected],
      messages: Number(s.messages),
    };
  }

  /** Submits a message; resolves with its id once the node has stored it. */
  async submit(text: string): Promise<string> {
    const answer = await this.call({ body: { case: 'submitRequest', value: { text } } }, 'submitResponse');
    return (answer.body.value as { id: string }).id;
  }

  /** The message with this id, or undefined when the node does not have it. */
  async get(id: string): Promise<GossipMessage | undefined> {
    try {
      const answer = await this.call({ body: { case: 'getRequest', value: { id } } }, 'getResponse');
      return messageFromWire((answer.body.value as { message?: WireGossipMessage }).message);
    } catch (err) {
      if (err instanceof ClientError && err.code === 'not_found') return undefined;
      throw err;
    }
  }

  /** Every message the node holds, in the order it stored them (paged under the hood). */
  async *list(pageSize = 1_000): AsyncGenerator<GossipMessage> {
    let after = 0n;
    for (;;) {
      const answer = await this.call({ body: { case: 'listRequest', value: { after, limit: pageSize } } }, 'listResponse');
      const page = answer.body.value as { messages: WireGossipMessage[]; next: bigint; more: boolean };
      for (const w of page.messages) {
        const m = messageFromWire(w);
        if (m) yield m;
      }
      if (!page.more) return;
      after = page.next;
    }
  }

  /**
   * Calls `onMessage` for every message the node stores from now on, until
   * close(). `onEnd` is called once if the node closes the connection (or it
   * breaks) first: no more messages will come.
   */
  async watch(onMessage: (m: GossipMessage) => void, onEnd?: (err: ClientError) => void): Promise<void> {
    const init: EnvelopeInit = { body: { case: 'watchRequest', value: {} } };
    const answer = await this.conn.request(init, this.timeoutMs).catch((err: Error) => {
      throw new ClientError('unreachable', `node ${this.nodeId} did not answer: ${err.message}`);
    });
    if (answer.body.case === 'error') throw new ClientError(answer.body.value.code, answer.body.value.message);
    this.conn.on('envelope', (env) => {
      if (env.requestId === answer.requestId && env.body.case === 'gossipEvent') {
        const m = messageFromWire(env.body.value.message);
        if (m) onMessage(m);
      }
    });
    this.conn.once('close', (reason) => {
      if (reason.kind !== 'local') onEnd?.(new ClientError('unreachable', `node ${this.nodeId} closed the connection; watch ended`));
    });
  }

  // ---- cache ----

  /** Stores `value` under `key`; resolves once the node committed it. False when the condition did not hold. */
  async kvPut(key: string | Uint8Array, value: string | Uint8Array, options: { ttlMs?: number; condition?: 'always' | 'if_absent' | 'if_present' } = {}): Promise<boolean> {
    const condition = options.condition === 'if_absent' ? KvCondition.IF_ABSENT : options.condition === 'if_present' ? KvCondition.IF_PRESENT : KvCondition.NONE;
    const answer = await this.call({ body: { case: 'kvPutRequest', value: { key: bytes(key), value: bytes(value), ttlMs: BigInt(options.ttlMs ?? 0), condition } } }, 'kvPutResponse');
    return (answer.body.value as { written: boolean }).written;
  }

  /** The value of `key` as bytes, or undefined when absent. */
  async kvGet(key: string | Uint8Array): Promise<Uint8Array | undefined> {
    const answer = await this.call({ body: { case: 'kvGetRequest', value: { keys: [bytes(key)] } } }, 'kvGetResponse');
    const v = (answer.body.value as { values: { found: boolean; value: Uint8Array }[] }).values[0];
    return v?.found ? v.value : undefined;
  }

  /** Deletes keys; resolves how many existed. */
  async kvDel(...keys: (string | Uint8Array)[]): Promise<number> {
    const answer = await this.call({ body: { case: 'kvDelRequest', value: { keys: keys.map(bytes) } } }, 'kvDelResponse');
    return (answer.body.value as { deleted: number }).deleted;
  }

  /** Every live key and value, in bytewise key order (paged under the hood). */
  async *kvList(options: { pattern?: string; pageSize?: number } = {}): AsyncGenerator<{ key: Uint8Array; value: Uint8Array }> {
    let after: Uint8Array = new Uint8Array(0);
    for (;;) {
      const answer = await this.call({ body: { case: 'kvListRequest', value: { after, limit: options.pageSize ?? 1_000, pattern: options.pattern ?? '' } } }, 'kvListResponse');
      const page = answer.body.value as { pairs: { key: Uint8Array; value: Uint8Array }[]; more: boolean };
      for (const p of page.pairs) yield { key: p.key, value: p.value };
      if (!page.more || page.pairs.length === 0) return;
      after = page.pairs[page.pairs.length - 1]!.key;
    }
  }

  // ---- locks ----

  /**
   * Acquires the lock `key` for `ttlMs` (0: the node's default, 10 s), waiting
   * up to `waitMs` for it. Resolves `{ acquired, token }`: the fencing token is
   * greater than every token issued before for the key (0n when not acquired).
   */
  async lockAcquire(key: string, options: { ttlMs?: number; waitMs?: number } = {}): Promise<{ acquired: boolean; token: bigint }> {
    const waitMs = options.waitMs ?? 0;
    // The node answers when the wait is over: allow for it beyond the usual timeout.
    const answer = await this.call({ body: { case: 'lockAcquireRequest', value: { key, ttlMs: BigInt(options.ttlMs ?? 0), waitMs: BigInt(waitMs) } } }, 'lockAcquireResponse', this.timeoutMs + waitMs);
    const r = answer.body.value as { acquired: boolean; token: bigint };
    return { acquired: r.acquired, token: r.token };
  }

  /** Releases the lock held with `token`; false when it was not held with that token (expired, or another's). */
  async lockRelease(key: string, token: bigint): Promise<boolean> {
    const answer = await this.call({ body: { case: 'lockReleaseRequest', value: { key, token } } }, 'lockReleaseResponse');
    return (answer.body.value as { released: boolean }).released;
  }

  close(): void {
    this.conn.close({ kind: 'local', why: 'client done' });
  }

  private async call(init: EnvelopeInit, expect: NonNullable<Envelope['body']['case']>, timeoutMs = this.timeoutMs): Promise<Envelope> {
    let answer: Envelope;
    try {
      // Requests made in the same run of callbacks (a client with many submits
      // in flight sends the next ones as the acknowledgements of one commit
      // come in) leave in one write: one read and one wake-up at the node, not one per request.
      this.conn.corkForTick();
      answer = await this.conn.request(init, timeoutMs);
    } catch (err) {
      throw new ClientError('unreachable', `node ${this.nodeId} did not answer: ${(err as Error).message}`);
    }
    if (answer.body.case === 'error') throw new ClientError(answer.body.value.code, answer.body.value.message);
    if (answer.body.case !== expect) throw new ClientError('bad_answer', `expected ${expect}, got ${answer.body.case ?? 'nothing'}`);
    return answer;
  }
}

function bytes(x: string | Uint8Array): Uint8Array {
  return typeof x === 'string' ? Buffer.from(x, 'utf8') : x;
}

function stateName(s: MemberState): MemberStatus['state'] {
  if (s === MemberState.ALIVE) return 'alive';
  if (s === MemberState.SUSPECT) return 'suspect';
  return 'dead';
}
