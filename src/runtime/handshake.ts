import net from 'node:net';
import { Hello_Role, PROTOCOL_VERSION } from '../wire/index.js';
import type { Envelope, Hello } from '../wire/index.js';
import { FramedConnection, RequestError } from './connection.js';
import type { ConnectionLimits } from './connection.js';

/**
 * The first exchange on every connection: each side states its protocol
 * version, cluster name and (for peers) id and incarnation. A mismatch ends
 * the connection with an Error frame naming the problem.
 */
export interface HelloInfo {
  readonly cluster: string;
  readonly id: string;
  readonly incarnation: number;
  readonly role: 'peer' | 'client';
}

export class HandshakeError extends Error {
  override name = 'HandshakeError';
  constructor(readonly code: 'wrong_cluster' | 'wrong_peer' | 'bad_version' | 'no_hello' | 'refused', message: string) {
    super(message);
  }
}

export function helloBody(info: HelloInfo): Envelope['body'] {
  return {
    case: 'hello',
    value: {
      $typeName: 'grapevine.v1.Hello',
      protocolVersion: PROTOCOL_VERSION,
      cluster: info.cluster,
      id: info.id,
      incarnation: BigInt(info.incarnation),
      role: info.role === 'peer' ? Hello_Role.PEER : Hello_Role.CLIENT,
    },
  };
}

export function parseHello(h: Hello): HelloInfo {
  return {
    cluster: h.cluster,
    id: h.id,
    incarnation: Number(h.incarnation),
    role: h.role === Hello_Role.PEER ? 'peer' : 'client',
  };
}

/** Connects to host:port and completes the handshake; rejects within `timeoutMs`. */
export async function connectAndGreet(
  host: string,
  port: number,
  me: HelloInfo,
  options: { timeoutMs: number; limits?: ConnectionLimits; expectId?: string; expectCluster?: string },
): Promise<{ conn: FramedConnection; peer: HelloInfo }> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new RequestError('timeout', `cannot connect to ${host}:${port} within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  const conn = new FramedConnection(socket, options.limits);
  try {
    const answer = await conn.request({ body: helloBody(me) }, options.timeoutMs);
    if (answer.body.case === 'error') throw new HandshakeError('refused', `${host}:${port} refused us: ${answer.body.value.message}`);
    if (answer.body.case !== 'hello') throw new HandshakeError('no_hello', `${host}:${port} did not answer the handshake`);
    const peer = parseHello(answer.body.value);
    const cluster = options.expectCluster ?? me.cluster;
    // '*': a client that accepts whatever cluster the node it was pointed at is in.
    if (cluster !== '*' && peer.cluster !== cluster) throw new HandshakeError('wrong_cluster', `${host}:${port} is in cluster '${peer.cluster}', not '${cluster}'`);
    if (options.expectId !== undefined && peer.id !== options.expectId) {
      throw new HandshakeError('wrong_peer', `${host}:${port} is node '${peer.id}', not '${options.expectId}'`);
    }
    return { conn, peer };
  } catch (err) {
    conn.close({ kind: 'local', why: 'handshake failed' });
    throw err;
  }
}
