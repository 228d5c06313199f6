import { backoffDelayMs } from '../core/backoff.js';
import type { StoredPmMessage } from '../store/pmcast-store.js';
import type { FramedConnection } from './connection.js';
import { connectAndGreet } from './handshake.js';
import { encodePmDeliverFrame } from './pm-frame.js';
import type { Logger } from './log.js';

/**
 * The coordinator's delivery stream to one online member: it dials the
 * member's receiver (seed 004's thread-B), sends every message above the
 * member's acknowledged position in order, in batches, with at most
 * `windowMax` unacknowledged, and on a broken connection dials again (capped,
 * jittered backoff) and resends from the acknowledged position — the
 * receiver drops what it already logged.
 */
export interface DeliveryDeps {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly log: Logger;
  /** The member's acknowledged position now (from the core). */
  readonly ackedSeq: () => number;
  readonly lastSeq: () => number;
  /** Messages with seq > after, ascending, at most limit. */
  readonly load: (after: number, limit: number) => StoredPmMessage[];
  readonly onAck: (seq: number) => void;
  readonly dialTimeoutMs: number;
}

export const DELIVERY_LIMITS = Object.freeze({
  /** Unacknowledged messages in flight per member. */
  windowMax: 20_000,
  /** Messages per PmDeliver frame. */
  batchMax: 1_000,
  /** Text bytes per PmDeliver frame (well under the 4 MiB frame limit). */
  batchBytesMax: 1024 * 1024,
});

export class DeliverySession {
  private conn: FramedConnection | undefined;
  private sentSeq = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private dialing = false;

  constructor(private readonly deps: DeliveryDeps) {
    this.dial();
  }

  get connected(): boolean {
    return this.conn !== undefined && !this.conn.isClosed;
  }

  /** Sends what is owed and fits the window (call after new messages or acks). */
  pump(): void {
    const conn = this.conn;
    if (!conn || conn.isClosed || this.closed) return;
    for (;;) {
      const acked = this.deps.ackedSeq();
      if (this.sentSeq < acked) this.sentSeq = acked;
      const room = DELIVERY_LIMITS.windowMax - (this.sentSeq - acked);
      if (room <= 0 || this.sentSeq >= this.deps.lastSeq()) return;
      const batch = this.deps.load(this.sentSeq, Math.min(room, DELIVERY_LIMITS.batchMax));
      if (batch.length === 0) return;
      let bytes = 0;
      let n = 0;
      while (n < batch.length && (n === 0 || bytes + batch[n]!.text.length * 3 <= DELIVERY_LIMITS.batchBytesMax)) bytes += batch[n++]!.text.length * 3;
      if (!conn.sendFrame(encodePmDeliverFrame(n === batch.length ? batch : batch.slice(0, n)))) return;
      this.sentSeq = batch[n - 1]!.seq;
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.conn?.close({ kind: 'local', why: 'member offline' });
    this.conn = undefined;
  }

  private dial(): void {
    if (this.closed || this.dialing) return;
    this.dialing = true;
    const { host, port, id } = this.deps;
    connectAndGreet(host, port, { cluster: 'pmcast', id: 'coordinator', incarnation: 0, role: 'peer' }, { timeoutMs: this.deps.dialTimeoutMs, expectId: id })
      .then(({ conn }) => {
        this.dialing = false;
        if (this.closed) return conn.close({ kind: 'local', why: 'member offline' });
        this.conn = conn;
        this.attempt = 0;
        this.sentSeq = this.deps.ackedSeq();
        this.deps.log.info({ member: id, addr: `${host}:${port}`, from: this.sentSeq + 1 }, 'delivering');
        conn.on('envelope', (env) => {
          if (env.body.case === 'pmAck') {
            this.deps.onAck(Number(env.body.value.seq));
            this.pump();
          }
        });
        conn.on('close', () => {
          if (this.conn !== conn) return;
          this.conn = undefined;
          this.retryLater();
        });
        this.pump();
      })
      .catch((err: Error) => {
        this.dialing = false;
        this.deps.log.debug({ member: id, addr: `${host}:${port}`, err: err.message }, 'member receiver unreachable');
        this.retryLater();
      });
  }

  private retryLater(): void {
    if (this.closed || this.timer) return;
    const delayMs = backoffDelayMs(this.attempt++, Math.random, { initialMs: 50, maxMs: 2_000, factor: 2 });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dial();
    }, delayMs);
  }
}
