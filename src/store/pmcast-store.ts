import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { CoordinatorState, PmMember, PmSeqRange, PmStatus } from '../core/pmcast/coordinator.js';

/**
 * The coordinator's durable state (seed 004): the group's members with their
 * delivery positions, and the messages of the last td seconds (plus those a
 * member may still claim). SQLite in WAL mode: a committed transaction is
 * in the WAL file when `commit` returns, so an acknowledged command survives
 * a kill -9 (synchronous=NORMAL), and with `fsync` it is on the disk too
 * (synchronous=FULL: survives a power cut). The caller batches every command
 * of one event-loop turn into one `commit` (group commit) and acknowledges
 * only after it.
 */
export interface StoredPmMessage {
  readonly seq: number;
  readonly sender: string;
  readonly text: string;
  readonly acceptedMs: number;
}

export interface PmWrites {
  readonly members: readonly PmMember[];
  readonly deletedMembers: readonly string[];
  readonly messages: readonly StoredPmMessage[];
  /** Delivery positions that moved (acks): written in the same transaction, no caller waits on them. */
  readonly acks: readonly { readonly id: string; readonly ackedSeq: number }[];
}

interface MemberRow {
  id: string;
  status: string;
  host: string;
  port: number;
  joined_seq: number;
  acked_seq: number;
  offline_since_ms: number;
  offline_after_seq: number | null;
  not_owed: string | null;
}

/** Pages of WAL between checkpoints (SQLite's default is 1,000): 40 MiB of 4 KiB pages. */
const WAL_AUTOCHECKPOINT_PAGES = 10_000;
/** What the WAL file is cut back to when it restarts after a checkpoint. */
const WAL_BYTES_KEPT = 16 * 1024 * 1024;

export class PmStore {
  private readonly db: Database.Database;
  private readonly stmts;
  /** Built once: better-sqlite3's transaction() wrapper is costly to make per commit. */
  private readonly commitTransaction: (w: PmWrites) => void;
  private readonly purgeTransaction: (upToSeq: number) => number;

  private constructor(path: string, fsync: boolean) {
    this.db = new Database(path);
    // Only this process opens the store: holding its locks for good spares
    // every transaction the lock calls on the shared-memory index (and makes
    // a second coordinator on the same directory fail at once).
    this.db.pragma('locking_mode = EXCLUSIVE');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${fsync ? 'FULL' : 'NORMAL'}`);
    // A checkpoint runs inside a commit and fsyncs (milliseconds here): fewer, larger ones.
    this.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    this.db.pragma(`journal_size_limit = ${WAL_BYTES_KEPT}`);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS members (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        joined_seq INTEGER NOT NULL,
        acked_seq INTEGER NOT NULL,
        offline_since_ms INTEGER NOT NULL,
        offline_after_seq INTEGER,
        not_owed TEXT
      );
      CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        accepted_ms INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    // Stores made before members kept their pre-disconnect position gain the columns.
    const columns = new Set(this.db.prepare<[], { name: string }>('PRAGMA table_info(members)').all().map((c) => c.name));
    if (!columns.has('offline_after_seq')) this.db.exec('ALTER TABLE members ADD COLUMN offline_after_seq INTEGER');
    if (!columns.has('not_owed')) this.db.exec('ALTER TABLE members ADD COLUMN not_owed TEXT');
    this.stmts = {
      saveMember: this.db.prepare(
        'INSERT OR REPLACE INTO members (id, status, host, port, joined_seq, acked_seq, offline_since_ms, offline_after_seq, not_owed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      deleteMember: this.db.prepare('DELETE FROM members WHERE id = ?'),
      ack: this.db.prepare('UPDATE members SET acked_seq = max(acked_seq, ?) WHERE id = ?'),
      saveMessage: this.db.prepare('INSERT INTO messages (seq, sender, text, accepted_ms) VALUES (?, ?, ?, ?)'),
      setMeta: this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)'),
      getMeta: this.db.prepare<[string], { value: number }>('SELECT value FROM meta WHERE key = ?'),
      members: this.db.prepare<[], MemberRow>('SELECT * FROM members'),
      times: this.db.prepare<[], { seq: number; acceptedMs: number }>('SELECT seq, accepted_ms AS acceptedMs FROM messages ORDER BY seq'),
      range: this.db.prepare<[number, number], { seq: number; sender: string; text: string; acceptedMs: number }>(
        'SELECT seq, sender, text, accepted_ms AS acceptedMs FROM messages WHERE seq > ? ORDER BY seq LIMIT ?',
      ),
      purge: this.db.prepare('DELETE FROM messages WHERE seq <= ?'),
      lastPurged: this.db.prepare<[number], { seq: number | null }>('SELECT max(seq) AS seq FROM messages WHERE seq <= ?'),
    };
    this.commitTransaction = this.db.transaction((w: PmWrites) => {
      for (const m of w.members) {
        const notOwed = m.notOwed && m.notOwed.length > 0 ? JSON.stringify(m.notOwed) : null;
        this.stmts.saveMember.run(m.id, m.status, m.host, m.port, m.joinedSeq, m.ackedSeq, m.offlineSinceMs, m.offlineAfterSeq ?? null, notOwed);
      }
      for (const id of w.deletedMembers) this.stmts.deleteMember.run(id);
      // The last seq is the newest message's; meta keeps it only once purge deletes that (below).
      for (const m of w.messages) this.stmts.saveMessage.run(m.seq, m.sender, m.text, m.acceptedMs);
      for (const a of w.acks) this.stmts.ack.run(a.ackedSeq, a.id);
    });
    this.purgeTransaction = this.db.transaction((upToSeq: number) => {
      const last = this.stmts.lastPurged.get(upToSeq)?.seq ?? null;
      if (last !== null) this.stmts.setMeta.run('last_seq', last);
      return this.stmts.purge.run(upToSeq).changes;
    });
  }

  static open(dataDir: string, fsync: boolean): PmStore {
    mkdirSync(dataDir, { recursive: true });
    return new PmStore(join(dataDir, 'coordinator.db'), fsync);
  }

  /** Everything a restarted coordinator needs to rebuild its core. */
  load(): CoordinatorState {
    const members = this.stmts.members.all().map(
      (r): PmMember => ({
        id: r.id,
        status: r.status as PmStatus,
        host: r.host,
        port: r.port,
        joinedSeq: r.joined_seq,
        ackedSeq: r.acked_seq,
        offlineSinceMs: r.offline_since_ms,
        ...(r.offline_after_seq === null ? {} : { offlineAfterSeq: r.offline_after_seq }),
        ...(r.not_owed === null ? {} : { notOwed: JSON.parse(r.not_owed) as PmSeqRange[] }),
      }),
    );
    const messages = this.stmts.times.all();
    const lastSeq = Math.max(this.stmts.getMeta.get('last_seq')?.value ?? 0, messages.at(-1)?.seq ?? 0);
    return { members, lastSeq, messages };
  }

  /** One transaction; with fsync, flushed to the disk before it returns. */
  commit(w: PmWrites): void {
    this.commitTransaction(w);
  }

  /** Up to `limit` messages with seq > `after`, ascending. */
  after(after: number, limit: number): StoredPmMessage[] {
    return this.stmts.range.all(after, limit);
  }

  /** Deletes the messages up to `upToSeq`, keeping the last seq in meta so seqs are never reused. */
  purge(upToSeq: number): number {
    return this.purgeTransaction(upToSeq);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
