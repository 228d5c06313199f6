import { backoffDelayMs } from '../core/backoff.js';
import type { BackoffConfig } from '../core/backoff.js';
import type { Endpoint } from '../core/address.js';
import { shouldDial } from '../core/ring.js';
import type { Envelope } from '../wire/index.js';
import type { FramedConnection } from './connection.js';
import type { Logger } from './log.js';
import type { Service } from './supervisor.js';

/**
 * Keeps one TCP connection per neighbour. For each link exactly one side
 * dials — the one that sorts first (core/ring `shouldDial`) — so two nodes
 * share exactly one connection. Lost connections are redialled with capped,
 * jittered backoff for as long as the link is wanted; links no longer wanted
 * are closed by their dialer.
 */
export interface PeerEndpoint extends Endpoint {
  readonly incarnation: number;
}

export interface LinksOptions {
  readonly self: Endpoint;
  /** Opens a connection and completes the handshake with exactly this peer. */
  readonly dial: (peer: PeerEndpoint) => Promise<FramedConnection>;
  readonly onEnvelope: (peerId: string, env: Envelope, conn: FramedConnection) => void;
  /** Sees each frame from a peer before it is decoded; true: it took the frame (see FramedConnection.setFrameHook). */
  readonly onFrame?: (peerId: string, payload: Uint8Array) => boolean;
  /** A connection to this peer is up (either direction). */
  readonly onLinkUp?: (peerId: string) => void;
  readonly log: Logger;
  readonly random: () => number;
  readonly backoff: BackoffConfig;
}

interface Outbound {
  peer: PeerEndpoint;
  conn: FramedConnection | undefined;
  timer: NodeJS.Timeout | undefined;
  attempt: number;
  dialing: boolean;
}

export class PeerLinks implements Service {
  readonly name = 'links';
  private readonly outbound = new Map<string, Outbound>();
  private readonly inbound = new Map<string, FramedConnection>();
  private desired = new Map<string, PeerEndpoint>();
  private running = false;

  constructor(private readonly options: LinksOptions) {}

  async start(): Promise<void> {
    this.running = true;
    this.setDesired([...this.desired.values()]);
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const o of this.outbound.values()) this.closeOutbound(o, 'links stopped');
    this.outbound.clear();
    for (const c of this.inbound.values()) c.close({ kind: 'local', why: 'links stopped' });
    this.inbound.clear();
  }

  /** The neighbours we want now; connections follow. */
  setDesired(peers: readonly PeerEndpoint[]): void {
    this.desired = new Map(peers.map((p) => [p.id, p]));
    if (!this.running) return;
    for (const [id, o] of this.outbound) {
      const want = this.desired.get(id);
      if (!want || !shouldDial(this.options.self, want)) {
        this.closeOutbound(o, 'no longer a neighbour');
        this.outbound.delete(id);
      } else if (!samePeer(want, o.peer)) {
        // The peer restarted (maybe elsewhere): its old connection is stale.
        this.closeOutbound(o, 'peer restarted');
        o.peer = want;
        o.attempt = 0;
        this.dial(o);
      } else if (o.peer.incarnation === 0 && want.incarnation !== 0) {
        // A static link dialled from the cluster file before membership knew the
        // peer's incarnation: the same peer, now fully known; keep the connection.
        o.peer = want;
      }
    }
    for (const peer of this.desired.values()) {
      if (!shouldDial(this.options.self, peer) || this.outbound.has(peer.id)) continue;
      const o: Outbound = { peer, conn: undefined, timer: undefined, attempt: 0, dialing: false };
      this.outbound.set(peer.id, o);
      this.dial(o);
    }
  }

  /** A peer dialled us and completed the handshake. A newer connection replaces an older one. */
  acceptInbound(peerId: string, conn: FramedConnection): void {
    if (!this.running) {
      conn.close({ kind: 'local', why: 'links stopped' });
      return;
    }
    const old = this.inbound.get(peerId);
    if (old && old !== conn) old.close({ kind: 'local', why: 'replaced by a newer connection' });
    this.inbound.set(peerId, conn);
    this.listen(peerId, conn);
    conn.on('close', () => {
      if (this.inbound.get(peerId) === conn) this.inbound.delete(peerId);
    });
    this.options.onLinkUp?.(peerId);
  }

  /** The peer is dead: drop its connections at once (they would time out much later). */
  drop(peerId: string): void {
    this.inbound.get(peerId)?.close({ kind: 'local', why: 'peer declared dead' });
    this.inbound.delete(peerId);
    const o = this.outbound.get(peerId);
    if (o) this.closeOutbound(o, 'peer declared dead');
    this.outbound.delete(peerId);
  }

  /** Wanted neighbours with an open connection, in either direction. */
  connectedIds(): string[] {
    return [...this.desired.keys()].filter((id) => this.connectionTo(id) !== undefined);
  }

  connectionTo(peerId: string): FramedConnection | undefined {
    const out = this.outbound.get(peerId)?.conn;
    if (out && !out.isClosed) return out;
    const inb = this.inbound.get(peerId);
    return inb && !inb.isClosed ? inb : undefined;
  }

  /** Counts of open TCP peer connections, for status and tests. */
  connectionCounts(): { outbound: number; inbound: number } {
    let outbound = 0;
    for (const o of this.outbound.values()) if (o.conn && !o.conn.isClosed) outbound += 1;
    return { outbound, inbound: [...this.inbound.values()].filter((c) => !c.isClosed).length };
  }

  private listen(peerId: string, conn: FramedConnection): void {
    const onFrame = this.options.onFrame;
    if (onFrame) conn.setFrameHook((payload) => onFrame(peerId, payload));
    conn.on('envelope', (env) => this.options.onEnvelope(peerId, env, conn));
  }

  private dial(o: Outbound): void {
    if (o.dialing || o.timer || !this.running) return;
    o.dialing = true;
    const peer = o.peer;
    this.options
      .dial(peer)
      .then((conn) => {
        o.dialing = false;
        if (this.outbound.get(peer.id) !== o || !samePeer(o.peer, peer) || !this.running) {
          conn.close({ kind: 'local', why: 'dial no longer wanted' });
          // The peer restarted while we dialled it (setDesired could not dial
          // then): dial its new incarnation now, as the failure path does.
          if (this.outbound.get(peer.id) === o && !samePeer(o.peer, peer)) this.dial(o);
          return;
        }
        o.conn = conn;
        o.attempt = 0;
        this.options.log.info({ peer: peer.id, addr: `${peer.host}:${peer.port}` }, 'link up');
        this.listen(peer.id, conn);
        this.options.onLinkUp?.(peer.id);
        conn.on('close', (reason) => {
          if (o.conn !== conn) return;
          o.conn = undefined;
          this.options.log.info({ peer: peer.id, reason: reason.kind }, 'link down');
          this.retryLater(o);
        });
      })
      .catch((err: Error) => {
        o.dialing = false;
        if (this.outbound.get(peer.id) !== o) return;
        if (!samePeer(o.peer, peer)) return this.dial(o);
        this.options.log.debug({ peer: peer.id, err: err.message, attempt: o.attempt }, 'dial failed');
        this.retryLater(o);
      });
  }

  private retryLater(o: Outbound): void {
    if (!this.running || this.outbound.get(o.peer.id) !== o || o.timer) return;
    const delayMs = backoffDelayMs(o.attempt, this.options.random, this.options.backoff);
    o.attempt += 1;
    o.timer = setTimeout(() => {
      o.timer = undefined;
      this.dial(o);
    }, delayMs);
  }

  private closeOutbound(o: Outbound, why: string): void {
    clearTimeout(o.timer);
    o.timer = undefined;
    const conn = o.conn;
    o.conn = undefined;
    conn?.close({ kind: 'local', why });
  }
}

/**
 * The same peer process: same address and incarnation, where an incarnation
 * of 0 (a static link known only from the cluster file) matches any.
 */
function samePeer(a: PeerEndpoint, b: PeerEndpoint): boolean {
  return a.host === b.host && a.port === b.port && (a.incarnation === b.incarnation || a.incarnation === 0 || b.incarnation === 0);
}
