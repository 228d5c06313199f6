import type { FramedConnection } from './connection.js';
import type { ConnectionLimits } from './connection.js';
import { connectAndGreet } from './handshake.js';
import type { HelloInfo } from './handshake.js';

/**
 * Request connections from this node to any member, beside the overlay's
 * peer links: lock votes go to every member of the quorum, and a partitioned
 * cache asks a key's owners directly. Each connection is a client connection
 * to the member's port (its requests are served like any client's), opened on
 * first use, shared by every caller, and forgotten when it closes.
 */
export interface PeerRpcOptions {
  /** Where a member listens, or undefined when it is not known. */
  readonly addressOf: (peerId: string) => { host: string; port: number } | undefined;
  readonly me: () => HelloInfo;
  readonly timeoutMs: number;
  readonly limits: ConnectionLimits;
  /** Connections kept at most; beyond it the least recently opened one is closed. */
  readonly connectionsMax: number;
}

export class PeerRpc {
  private readonly conns = new Map<string, Promise<FramedConnection>>();
  private closed = false;

  constructor(private readonly options: PeerRpcOptions) {}

  /** A connection to `peerId`'s node (shared); rejects when it cannot be reached. */
  connect(peerId: string): Promise<FramedConnection> {
    if (this.closed) return Promise.reject(new Error('the node is stopping'));
    const open = this.conns.get(peerId);
    if (open) return open;
    const address = this.options.addressOf(peerId);
    if (!address) return Promise.reject(new Error(`member '${peerId}' is not known`));
    if (this.conns.size >= this.options.connectionsMax) this.dropOldest();
    const me = this.options.me();
    const pending = connectAndGreet(address.host, address.port, { ...me, role: 'client' }, {
      timeoutMs: this.options.timeoutMs,
      limits: this.options.limits,
      expectId: peerId,
      expectCluster: me.cluster,
    }).then(({ conn }) => {
      conn.once('close', () => {
        if (this.conns.get(peerId) === pending) this.conns.delete(peerId);
      });
      if (this.closed) conn.close({ kind: 'local', why: 'node stopping' });
      return conn;
    });
    pending.catch(() => {
      if (this.conns.get(peerId) === pending) this.conns.delete(peerId);
    });
    this.conns.set(peerId, pending);
    return pending;
  }

  /** Closes the connection to a member that died or restarted elsewhere. */
  drop(peerId: string): void {
    const open = this.conns.get(peerId);
    this.conns.delete(peerId);
    open?.then((c) => c.close({ kind: 'local', why: 'member gone' })).catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    for (const id of [...this.conns.keys()]) this.drop(id);
  }

  private dropOldest(): void {
    const oldest = this.conns.keys().next();
    if (!oldest.done) this.drop(oldest.value);
  }
}
