import type { KvEntry, KvVersion } from '../core/kv/entry.js';
import type { Scheduler } from './scheduler.js';
import { SimRequestConn } from './request-conn.js';
import type { StreamEnd, StreamHandler, StreamNet } from './streams.js';

/**
 * The peer connections of one simulated cache node, as src/runtime/links.ts
 * and connection.ts keep them: one TCP-like stream per pair of neighbours,
 * dialled by the side that sorts first; a hello each way before the link
 * counts as up (the handshake); requests correlated by id and rejected when
 * their connection closes; a newer inbound connection replaces an older one;
 * a lost outbound connection is redialled after a backoff while wanted.
 */
export type KvFrame =
  | { readonly kind: 'hello' }
  | { readonly kind: 'batch'; readonly entries: readonly KvEntry[]; readonly repair?: boolean }
  | { readonly kind: 'sync-request'; readonly id: number; readonly digest: Uint8Array }
  | { readonly kind: 'sync-response'; readonly id: number; readonly buckets: readonly number[]; readonly versions: readonly KvVersion[]; readonly more: boolean }
  | { readonly kind: 'fetch-request'; readonly id: number; readonly keys: readonly string[] }
  | { readonly kind: 'fetch-response'; readonly id: number; readonly entries: readonly KvEntry[] };

export type KvRequest = Extract<KvFrame, { kind: 'sync-request' | 'fetch-request' }>;
export type KvResponse = Extract<KvFrame, { kind: 'sync-response' | 'fetch-response' }>;

export const KV_PORT = 7_400;

/** One handshaken connection: frames out, requests with their answers. */
export class KvConn extends SimRequestConn<KvFrame, KvRequest, KvResponse> {}

export interface KvLinksOptions {
  readonly self: string;
  readonly net: StreamNet<KvFrame>;
  readonly scheduler: Scheduler;
  /** True when self dials peer (core/ring shouldDial). */
  readonly dials: (peer: string) => boolean;
  /** A redial delay after the attempt-th failure in a row. */
  readonly redialMs: (attempt: number) => number;
  readonly onFrame: (peer: string, frame: KvFrame, conn: KvConn) => void;
  readonly onLinkUp: (peer: string) => void;
}

interface Outbound {
  conn: KvConn | undefined;
  end: StreamEnd<KvFrame> | undefined;
  timer: { cancel(): void } | undefined;
  attempt: number;
}

/** The links of one incarnation of a node; a crash discards the object (StreamNet.crash resets the streams). */
export class KvLinks {
  private readonly outbound = new Map<string, Outbound>();
  private readonly inbound = new Map<string, KvConn>();
  private desired = new Set<string>();
  private running = true;
  readonly stats = { linkUps: 0, dials: 0 };

  constructor(private readonly o: KvLinksOptions) {
    o.net.listen(o.self, KV_PORT, (end) => this.accept(end));
  }

  /** The process died: nothing more happens here (its streams were reset by StreamNet.crash). */
  halt(): void {
    this.running = false;
    for (const ob of this.outbound.values()) ob.timer?.cancel();
  }

  setDesired(peers: readonly string[]): void {
    this.desired = new Set(peers);
    for (const [id, ob] of this.outbound) {
      if (this.desired.has(id)) continue;
      this.closeOutbound(ob);
      this.outbound.delete(id);
    }
    for (const peer of this.desired) {
      if (!this.o.dials(peer) || this.outbound.has(peer)) continue;
      const ob: Outbound = { conn: undefined, end: undefined, timer: undefined, attempt: 0 };
      this.outbound.set(peer, ob);
      this.dial(peer, ob);
    }
  }

  /** Membership declared the peer dead: drop its connections both ways. */
  drop(peer: string): void {
    this.inbound.get(peer)?.close();
    this.inbound.delete(peer);
    const ob = this.outbound.get(peer);
    if (ob) this.closeOutbound(ob);
    this.outbound.delete(peer);
  }

  connectionTo(peer: string): KvConn | undefined {
    const out = this.outbound.get(peer)?.conn;
    if (out && !out.isClosed) return out;
    const inb = this.inbound.get(peer);
    return inb && !inb.isClosed ? inb : undefined;
  }

  private dial(peer: string, ob: Outbound): void {
    if (!this.running || ob.end || ob.timer) return;
    this.stats.dials += 1;
    let conn: KvConn | undefined;
    const handler: StreamHandler<KvFrame> = {
      data: (end, frame) => {
        if (!this.running || this.outbound.get(peer) !== ob || ob.end !== end) return;
        if (!conn) {
          if (frame.kind !== 'hello') return end.close();
          conn = new KvConn(end, this.o.scheduler);
          ob.conn = conn;
          ob.attempt = 0;
          this.stats.linkUps += 1;
          return this.o.onLinkUp(peer);
        }
        this.o.onFrame(peer, frame, conn);
      },
      closed: (end) => {
        conn?.close();
        if (!this.running || this.outbound.get(peer) !== ob || ob.end !== end) return;
        ob.end = undefined;
        ob.conn = undefined;
        this.redialLater(peer, ob);
      },
    };
    ob.end = this.o.net.connect(this.o.self, peer, KV_PORT, handler);
    ob.end.send({ kind: 'hello' });
  }

  private redialLater(peer: string, ob: Outbound): void {
    if (!this.running || ob.timer) return;
    const delayMs = this.o.redialMs(ob.attempt);
    ob.attempt += 1;
    ob.timer = this.o.scheduler.after(delayMs, () => {
      ob.timer = undefined;
      if (this.running && this.outbound.get(peer) === ob) this.dial(peer, ob);
    });
  }

  private closeOutbound(ob: Outbound): void {
    ob.timer?.cancel();
    ob.timer = undefined;
    const { conn, end } = ob;
    ob.conn = undefined;
    ob.end = undefined;
    if (conn) conn.close();
    else end?.close();
  }

  /** An inbound stream: the link is up once the dialer's hello arrives; we answer with ours. */
  private accept(end: StreamEnd<KvFrame>): StreamHandler<KvFrame> | undefined {
    if (!this.running) return undefined;
    const peer = end.peer;
    let conn: KvConn | undefined;
    return {
      data: (_end, frame) => {
        if (!this.running) return;
        if (!conn) {
          if (frame.kind !== 'hello') return end.close();
          conn = new KvConn(end, this.o.scheduler);
          const old = this.inbound.get(peer);
          // A newer connection replaces an older one (the dialer restarted or redialled).
          if (old && old !== conn) old.close();
          this.inbound.set(peer, conn);
          conn.send({ kind: 'hello' });
          this.stats.linkUps += 1;
          return this.o.onLinkUp(peer);
        }
        this.o.onFrame(peer, frame, conn);
      },
      closed: () => {
        conn?.close();
        if (conn && this.inbound.get(peer) === conn) this.inbound.delete(peer);
      },
    };
  }
}
