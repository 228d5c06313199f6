import type { KvEntry, KvVersion } from '../core/kv/entry.js';
import type { Scheduler } from './scheduler.js';
import { SimRequestConn } from './request-conn.js';
import type { StreamEnd, StreamHandler, StreamNet } from './streams.js';

/**
 * The request connections of a partitioned cache (src/runtime/peer-rpc.ts):
 * a node opens a client connection to any member on first use (a hello each
 * way, as connectAndGreet, bounded by the dial timeout), shares it between
 * callers, and forgets it when it closes; every request has its own timeout
 * and fails when its connection closes first. The member serves what comes
 * in as it serves a client's requests (src/api/server.ts), answering each on
 * the connection it came on.
 *
 * The frames are kv-service's partitioned ones: apply (a writer's entries
 * to an owner), get with `local` (a non-owner's read), sync with `onlyBuckets`
 * and fetch (co-owner anti-entropy and hand-over), and the batch a sync
 * pushes.
 */
export type PartFrame =
  | { readonly kind: 'hello' }
  | { readonly kind: 'batch'; readonly entries: readonly KvEntry[] }
  | { readonly kind: 'apply-request'; readonly id: number; readonly entries: readonly KvEntry[] }
  | { readonly kind: 'get-request'; readonly id: number; readonly keys: readonly string[] }
  | { readonly kind: 'sync-request'; readonly id: number; readonly digest: Uint8Array; readonly only: readonly number[] }
  | { readonly kind: 'fetch-request'; readonly id: number; readonly keys: readonly string[] }
  | { readonly kind: 'apply-response'; readonly id: number }
  | { readonly kind: 'get-response'; readonly id: number; readonly values: readonly (Uint8Array | undefined)[] }
  | { readonly kind: 'sync-response'; readonly id: number; readonly buckets: readonly number[]; readonly versions: readonly KvVersion[]; readonly more: boolean }
  | { readonly kind: 'fetch-response'; readonly id: number; readonly entries: readonly KvEntry[] }
  | { readonly kind: 'error'; readonly id: number; readonly code: string };

export type PartRequest = Extract<PartFrame, { kind: 'apply-request' | 'get-request' | 'sync-request' | 'fetch-request' }>;
export type PartResponse = Extract<PartFrame, { kind: 'apply-response' | 'get-response' | 'sync-response' | 'fetch-response' | 'error' }>;

/** The client port every member listens on. */
export const RPC_PORT = 7_500;

export function isResponse(frame: PartFrame): frame is PartResponse {
  return frame.kind === 'apply-response' || frame.kind === 'get-response' || frame.kind === 'sync-response' || frame.kind === 'fetch-response' || frame.kind === 'error';
}

/** One handshaken request connection (FramedConnection.request/reply). */
export class RpcConn extends SimRequestConn<PartFrame, PartRequest, PartResponse> {}

export interface PeerRpcOptions {
  readonly self: string;
  readonly net: StreamNet<PartFrame>;
  readonly scheduler: Scheduler;
  readonly dialTimeoutMs: () => number;
  /** A request (or a pushed batch) from another member's connection to ours. */
  readonly serve: (frame: Exclude<PartFrame, PartResponse | { kind: 'hello' }>, conn: RpcConn) => void;
}

interface Dial {
  conn: RpcConn | undefined;
  readonly end: StreamEnd<PartFrame>;
  readonly waiters: { ok: (conn: RpcConn) => void; fail: () => void }[];
  readonly timer: { cancel(): void };
}

/** One incarnation's request connections, both ways; a crash discards the object (StreamNet.crash resets the streams). */
export class SimPeerRpc {
  private readonly dials = new Map<string, Dial>();
  private running = true;
  readonly stats = { dials: 0, dialFailures: 0 };

  constructor(private readonly o: PeerRpcOptions) {
    o.net.listen(o.self, RPC_PORT, (end) => this.accept(end));
  }

  /** The process died: nothing more happens here. */
  halt(): void {
    this.running = false;
    for (const d of this.dials.values()) d.timer.cancel();
    this.dials.clear();
  }

  /** A shared connection to `peer` (opened on first use); `fail` when it cannot be reached. */
  connect(peer: string, ok: (conn: RpcConn) => void, fail: () => void): void {
    if (!this.running) return;
    const open = this.dials.get(peer);
    if (open?.conn && !open.conn.isClosed) {
      const conn = open.conn;
      this.o.scheduler.after(0, () => ok(conn));
      return;
    }
    if (open && !open.conn && open.end.open) {
      open.waiters.push({ ok, fail });
      return;
    }
    // A connection that broke (its close not yet noticed) fails its requests now, as FramedConnection does.
    if (open) this.forget(peer, open);
    this.stats.dials += 1;
    // The handlers need the dial, which needs the stream they come with.
    const ref: { dial?: Dial } = {};
    const handler: StreamHandler<PartFrame> = {
      data: (end, frame) => {
        const d = ref.dial!;
        if (!this.running || this.dials.get(peer) !== d) return;
        if (!d.conn) {
          if (frame.kind !== 'hello') return end.close();
          d.timer.cancel();
          d.conn = new RpcConn(end, this.o.scheduler);
          for (const w of d.waiters.splice(0)) w.ok(d.conn);
          return;
        }
        if (isResponse(frame)) d.conn.take(frame);
      },
      closed: () => {
        if (this.running) this.forget(peer, ref.dial!);
      },
    };
    const end = this.o.net.connect(this.o.self, peer, RPC_PORT, handler);
    const timer = this.o.scheduler.after(this.o.dialTimeoutMs(), () => {
      if (!ref.dial!.conn) this.forget(peer, ref.dial!);
    });
    ref.dial = { conn: undefined, end, waiters: [{ ok, fail }], timer };
    this.dials.set(peer, ref.dial);
    end.send({ kind: 'hello' });
  }

  /** Membership declared the member dead: close our connection to it. */
  drop(peer: string): void {
    const d = this.dials.get(peer);
    if (d) this.forget(peer, d);
  }

  /** Closes a dial (its open requests and waiting callers fail) and forgets it if it is still the current one. */
  private forget(peer: string, d: Dial): void {
    if (this.dials.get(peer) === d) this.dials.delete(peer);
    d.timer.cancel();
    if (d.conn) d.conn.close();
    else d.end.close();
    if (d.waiters.length > 0) this.stats.dialFailures += 1;
    for (const w of d.waiters.splice(0)) this.o.scheduler.after(0, w.fail);
  }

  /** Another member's request connection: the link is up once its hello arrives; we answer with ours. */
  private accept(end: StreamEnd<PartFrame>): StreamHandler<PartFrame> | undefined {
    if (!this.running) return undefined;
    let conn: RpcConn | undefined;
    return {
      data: (_end, frame) => {
        if (!this.running) return;
        if (!conn) {
          if (frame.kind !== 'hello') return end.close();
          conn = new RpcConn(end, this.o.scheduler);
          conn.send({ kind: 'hello' });
          return;
        }
        if (frame.kind === 'hello' || isResponse(frame)) return;
        this.o.serve(frame, conn);
      },
      closed: () => conn?.close(),
    };
  }
}
