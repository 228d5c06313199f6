import { CoordinatorCore, COORDINATOR_DEFAULTS } from '../core/pmcast/coordinator.js';
import type { PmCommand, PmEffect, PmMember } from '../core/pmcast/coordinator.js';
import { PmStore } from '../store/pmcast-store.js';
import type { StoredPmMessage } from '../store/pmcast-store.js';
import type { Envelope } from '../wire/index.js';
import { CONNECTION_LIMITS_DEFAULT } from './connection.js';
import type { FramedConnection } from './connection.js';
import { Listener } from './listener.js';
import type { Logger } from './log.js';
import { DeliverySession } from './pm-delivery.js';
import { decodePmSendFrame, encodePmOkFrame, encodePmOkFrameInto, pmOkFrameBytes } from './pm-frame.js';

/**
 * Seed 004's coordinator: one TCP port for participants' commands; a delivery
 * session to every online member. Commands of one event-loop turn are
 * applied to the core, written in one transaction (group commit; fsynced with
 * --fsync), and only then acknowledged and acted on — so an acknowledged
 * message survives a kill -9, and nothing is delivered that a crash could take
 * back.
 */
export interface CoordinatorOptions {
  readonly host: string;
  readonly port: number;
  readonly tdMs: number;
  readonly dataDir: string;
  readonly log: Logger;
  readonly messageBytesMax?: number;
  /** Flush every group commit to the disk (power-loss durability), not only to the OS (kill -9 durability). */
  readonly fsync: boolean;
}

/** Recently accepted messages kept in memory so fan-out rarely reads the disk. */
const RECENT_MAX = 65_536;
const PURGE_INTERVAL_MS = 250;
const DIAL_TIMEOUT_MS = 2_000;
/**
 * A disconnect or deregister waits (at most this long) until the member has
 * acknowledged every message accepted before it: those were sent while it was
 * online and are its to get "at once", whatever comes after (guarantee 1).
 */
const DRAIN_TIMEOUT_MS = 2_000;

interface Draining {
  readonly requestId: number;
  readonly conn: FramedConnection;
  readonly cmd: PmCommand;
  readonly targetSeq: number;
  readonly timer: NodeJS.Timeout;
}

/** A command applied to the core, answered once its batch is committed. */
interface Pending {
  readonly conn: FramedConnection;
  readonly requestId: number;
  /** What the answer says: the message's seq for an msend, else the last seq then. */
  readonly seq: number;
  readonly acceptedMs: number;
  /** An msend's message (the hot path carries no effect list)... */
  readonly message: StoredPmMessage | undefined;
  /** ...any other command's effects. */
  readonly effects: readonly PmEffect[] | undefined;
}

/** Participant ids already checked against PARTICIPANT_ID, so a stream of msends checks its id once. */
const VALID_IDS_MAX = 4_096;

export class CoordinatorServer {
  private store!: PmStore;
  private core!: CoordinatorCore;
  private listener!: Listener;
  private readonly sessions = new Map<string, DeliverySession>();
  private readonly recent = new RecentMessages(RECENT_MAX);
  private pending: Pending[] = [];
  private acks = new Map<string, number>();
  private readonly validIds = new Set<string>();
  private commitScheduled = false;
  private purgeTimer: NodeJS.Timeout | undefined;
  private purgedSeq = 0;
  /**
   * The last seq of the store: delivery never goes beyond it. A message is in
   * the core (and `recent`) from its msend on, but delivered before its commit
   * a crash could take it back, and the restarted coordinator would give its
   * seq to another message, which the participant then drops as already logged.
   */
  private committedSeq = 0;
  private readonly draining = new Map<string, Draining>();

  constructor(private readonly options: CoordinatorOptions) {}

  async start(): Promise<void> {
    this.store = PmStore.open(this.options.dataDir, this.options.fsync);
    const state = this.store.load();
    this.core = new CoordinatorCore(
      { ...COORDINATOR_DEFAULTS, tdMs: this.options.tdMs, messageBytesMax: this.options.messageBytesMax ?? COORDINATOR_DEFAULTS.messageBytesMax },
      state,
    );
    this.purgedSeq = (state.messages[0]?.seq ?? state.lastSeq + 1) - 1;
    this.committedSeq = state.lastSeq;
    this.listener = new Listener({
      host: this.options.host,
      port: this.options.port,
      me: () => ({ cluster: 'pmcast', id: 'coordinator', incarnation: 0, role: 'peer' }),
      limits: CONNECTION_LIMITS_DEFAULT,
      connectionsMax: 4_096,
      inboundBudgetBytes: 64 * 1024 * 1024,
      helloTimeoutMs: 5_000,
      log: this.options.log.child({ component: 'listener' }),
      clock: () => performance.now(),
      onPeer: (_hello, conn) => conn.close({ kind: 'local', why: 'participants connect as clients' }),
      onClient: (conn) => {
        conn.setFrameHook((payload) => this.onMsendFrame(payload, conn));
        conn.on('envelope', (env) => this.onCommand(env, conn));
      },
    });
    await this.listener.start((err) => this.options.log.error({ err: err.message }, 'listener error'));
    // Members online when we stopped are owed the rest: resume delivering at once.
    for (const m of this.core.allMembers()) if (m.status === 'online') this.openSession(m.id, m.host, m.port);
    this.purgeTimer = setInterval(() => this.purge(), PURGE_INTERVAL_MS);
    this.options.log.info({ port: this.options.port, tdMs: this.options.tdMs, members: this.core.allMembers().length, lastSeq: state.lastSeq, retained: state.messages.length }, 'coordinator up');
  }

  async stop(): Promise<void> {
    clearInterval(this.purgeTimer);
    for (const id of [...this.draining.keys()]) this.finishDrain(id);
    this.commit();
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
    await this.listener.stop();
    this.store.close();
  }

  /**
   * The hot path: an msend in its canonical encoding, read without the
   * generated decoder (anything else returns false and takes onCommand's way).
   */
  private onMsendFrame(payload: Uint8Array, conn: FramedConnection): boolean {
    const f = decodePmSendFrame(payload);
    if (!f) return false;
    if (!this.validIds.has(f.participant)) {
      if (!PARTICIPANT_ID.test(f.participant)) {
        replyError(conn, f.requestId, 'bad_request', 'not a valid coordinator command: pmSend');
        return true;
      }
      if (this.validIds.size >= VALID_IDS_MAX) this.validIds.clear();
      this.validIds.add(f.participant);
    }
    const result = this.core.accept(f.participant, f.text, Date.now());
    if (!result.ok) {
      replyError(conn, f.requestId, result.code, result.message);
      return true;
    }
    const message = { seq: result.seq, sender: f.participant, text: f.text, acceptedMs: result.acceptedMs };
    this.recent.set(message);
    this.pending.push({ conn, requestId: f.requestId, seq: result.seq, acceptedMs: result.acceptedMs, message, effects: undefined });
    this.scheduleCommit();
    return true;
  }

  private onCommand(env: Envelope, conn: FramedConnection): void {
    const cmd = toCommand(env);
    if (!cmd) {
      replyError(conn, env.requestId, 'bad_request', `not a valid coordinator command: ${env.body.case ?? 'empty'}`);
      return;
    }
    if ((cmd.kind === 'disconnect' || cmd.kind === 'deregister') && this.mustDrain(cmd.id)) {
      if (this.draining.has(cmd.id)) {
        replyError(conn, env.requestId, 'bad_request', `a ${cmd.kind} of ${cmd.id} is already in progress`);
        return;
      }
      const timer = setTimeout(() => this.finishDrain(cmd.id), DRAIN_TIMEOUT_MS);
      this.draining.set(cmd.id, { requestId: env.requestId, conn, cmd, targetSeq: this.core.lastSequence, timer });
      return;
    }
    this.applyCommand(env.requestId, conn, cmd);
  }

  /** Online, reachable, and behind: its in-flight messages should land before it leaves. */
  private mustDrain(id: string): boolean {
    const m = this.core.member(id);
    return m !== undefined && m.status === 'online' && m.ackedSeq < this.core.lastSequence && (this.sessions.get(id)?.connected ?? false);
  }

  private finishDrain(id: string): void {
    const d = this.draining.get(id);
    if (!d) return;
    clearTimeout(d.timer);
    this.draining.delete(id);
    this.applyCommand(d.requestId, d.conn, d.cmd);
  }

  private applyCommand(requestId: number, conn: FramedConnection, cmd: PmCommand): void {
    const { result, effects } = this.core.apply(cmd, Date.now());
    if (!result.ok) {
      replyError(conn, requestId, result.code, result.message);
      return;
    }
    let message: StoredPmMessage | undefined;
    for (const e of effects) {
      if (e.kind === 'save-message') {
        message = { seq: e.seq, sender: e.sender, text: e.text, acceptedMs: e.acceptedMs };
        this.recent.set(message);
      }
    }
    // An msend answers with its seq; the other commands with the last seq at the time.
    const seq = message ? message.seq : this.core.lastSequence;
    this.pending.push({ conn, requestId, seq, acceptedMs: result.acceptedMs, message, effects });
    this.scheduleCommit();
  }

  private scheduleCommit(): void {
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    setImmediate(() => this.commit());
  }

  /** Group commit: one fsynced transaction, then acknowledgements, then the effects. */
  private commit(): void {
    this.commitScheduled = false;
    const batch = this.pending;
    const acks = this.acks;
    if (batch.length === 0 && acks.size === 0) return;
    this.pending = [];
    this.acks = new Map();
    // Every message applied so far is in this batch (or an earlier one).
    const upToSeq = this.core.lastSequence;
    const members: PmMember[] = [];
    const deletedMembers: string[] = [];
    const messages: StoredPmMessage[] = [];
    for (const p of batch) {
      if (p.message) messages.push(p.message);
      if (!p.effects) continue;
      for (const e of p.effects) {
        if (e.kind === 'save-member') members.push(e.member);
        else if (e.kind === 'delete-member') deletedMembers.push(e.id);
      }
    }
    try {
      this.store.commit({ members, deletedMembers, messages, acks: [...acks].map(([id, ackedSeq]) => ({ id, ackedSeq })) });
    } catch (err) {
      // Nothing of this batch was acknowledged; the coordinator cannot keep its promises any more.
      this.options.log.fatal({ err: (err as Error).message }, 'coordinator store failed; exiting');
      process.exit(1);
    }
    this.committedSeq = upToSeq;
    if (batch.length === 0) return;
    sendAnswers(batch);
    let fanout = messages.length > 0;
    for (const p of batch) {
      if (!p.effects) continue;
      for (const e of p.effects) {
        if (e.kind === 'connect') this.openSession(e.id, e.host, e.port);
        else if (e.kind === 'disconnect') this.closeSession(e.id);
        else if (e.kind === 'fanout') fanout = true;
      }
    }
    if (fanout) for (const s of this.sessions.values()) s.pump();
  }

  private openSession(id: string, host: string, port: number): void {
    this.closeSession(id);
    this.sessions.set(
      id,
      new DeliverySession({
        id,
        host,
        port,
        log: this.options.log,
        dialTimeoutMs: DIAL_TIMEOUT_MS,
        ackedSeq: () => this.core.member(id)?.ackedSeq ?? Number.MAX_SAFE_INTEGER,
        lastSeq: () => this.committedSeq,
        load: (after, limit) => this.load(id, after, limit),
        onAck: (seq) => {
          const moved = this.core.ack(id, seq);
          if (moved) {
            this.acks.set(id, moved.ackedSeq);
            this.scheduleCommit();
            const d = this.draining.get(id);
            if (d && moved.ackedSeq >= d.targetSeq) this.finishDrain(id);
          }
        },
      }),
    );
  }

  private closeSession(id: string): void {
    this.sessions.get(id)?.close();
    this.sessions.delete(id);
  }

  /**
   * What member `id` is owed above `after` (the core skips ranges that are not
   * its), from memory when recent, else from the store in contiguous runs.
   */
  private load(id: string, after: number, limit: number): StoredPmMessage[] {
    const seqs = this.core.owed(id, after, limit);
    const committed = seqs.findIndex((seq) => seq > this.committedSeq);
    if (committed >= 0) seqs.length = committed;
    const out: StoredPmMessage[] = [];
    let i = 0;
    while (i < seqs.length) {
      const cached = this.recent.get(seqs[i]!);
      if (cached) {
        out.push(cached);
        i += 1;
        continue;
      }
      let j = i + 1;
      while (j < seqs.length && seqs[j] === seqs[j - 1]! + 1 && !this.recent.has(seqs[j]!)) j += 1;
      out.push(...this.store.after(seqs[i]! - 1, j - i));
      i = j;
    }
    return out;
  }

  private purge(): void {
    const upTo = this.core.purgeableUpTo(Date.now());
    if (upTo <= this.purgedSeq) return;
    this.store.purge(upTo);
    this.core.purged(upTo);
    for (let s = this.purgedSeq + 1; s <= upTo; s++) this.recent.delete(s);
    this.purgedSeq = upTo;
  }
}

/** The answers of a batch leave in one write per connection, not one system call each. */
function sendAnswers(batch: readonly Pending[]): void {
  if (batch.length === 1) {
    const p = batch[0]!;
    p.conn.sendFrame(encodePmOkFrame(p.requestId, p.seq, p.acceptedMs));
    return;
  }
  const bytes = new Map<FramedConnection, number>();
  for (const p of batch) bytes.set(p.conn, (bytes.get(p.conn) ?? 0) + pmOkFrameBytes(p.requestId, p.seq, p.acceptedMs));
  const out = new Map<FramedConnection, { buf: Uint8Array; at: number }>();
  for (const [conn, n] of bytes) out.set(conn, { buf: new Uint8Array(n), at: 0 });
  for (const p of batch) {
    const o = out.get(p.conn)!;
    o.at = encodePmOkFrameInto(o.buf, o.at, p.requestId, p.seq, p.acceptedMs);
  }
  for (const [conn, o] of out) conn.sendFrame(o.buf);
}

function replyError(conn: FramedConnection, requestId: number, code: string, message: string): void {
  conn.send({ requestId, response: true, body: { case: 'error', value: { code, message } } });
}

/**
 * The last RECENT_MAX accepted messages by seq, in a ring: a message pushes
 * out the one RECENT_MAX seqs before it.
 */
class RecentMessages {
  private readonly slots: (StoredPmMessage | undefined)[];

  constructor(private readonly capacity: number) {
    this.slots = new Array<StoredPmMessage | undefined>(capacity).fill(undefined);
  }

  set(m: StoredPmMessage): void {
    this.slots[m.seq % this.capacity] = m;
  }

  get(seq: number): StoredPmMessage | undefined {
    const m = this.slots[seq % this.capacity];
    return m !== undefined && m.seq === seq ? m : undefined;
  }

  has(seq: number): boolean {
    return this.get(seq) !== undefined;
  }

  delete(seq: number): void {
    if (this.has(seq)) this.slots[seq % this.capacity] = undefined;
  }
}

/** Participant ids: non-empty, at most 64 characters, no white space or control characters. */
const PARTICIPANT_ID = /^[\p{L}\p{N}\p{P}\p{S}]{1,64}$/u;

function toCommand(env: Envelope): PmCommand | undefined {
  const cmd = parseCommandBody(env);
  if (!cmd || !PARTICIPANT_ID.test(cmd.id)) return undefined;
  if ((cmd.kind === 'register' || cmd.kind === 'reconnect') && (!(cmd.port >= 1 && cmd.port <= 65_535) || cmd.host.length === 0 || cmd.host.length > 64)) return undefined;
  return cmd;
}

function parseCommandBody(env: Envelope): PmCommand | undefined {
  const b = env.body;
  switch (b.case) {
    case 'pmRegister':
      return { kind: 'register', id: b.value.participant, host: b.value.host, port: b.value.port };
    case 'pmDeregister':
      return { kind: 'deregister', id: b.value.participant };
    case 'pmDisconnect':
      return { kind: 'disconnect', id: b.value.participant };
    case 'pmReconnect':
      return { kind: 'reconnect', id: b.value.participant, host: b.value.host, port: b.value.port };
    case 'pmSend':
      return { kind: 'msend', id: b.value.participant, text: b.value.text };
    default:
      return undefined;
  }
}
