import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { IdFilter } from './id-filter.js';
import { WalCheckpointer } from './wal-checkpointer.js';
import { streamKey } from '../core/gossip/message.js';
import type { GossipMessage } from '../core/gossip/message.js';

/**
 * The durable message store of one node: SQLite in WAL mode under the data
 * directory (`gossip.db`). A message is stored once (its id and its
 * (origin, incarnation, seq) are unique); rowid order is the order this node
 * stored them, which `list` pages through.
 *
 * Ids are random (hashes), so a B-tree keyed by them takes every insert on
 * another page: with a UNIQUE index on `messages.id` each message dirtied
 * one more page of the WAL, the largest single cost of a commit. The id
 * index is therefore a table of its own (`message_ids`) filled in bulk: the
 * ids of the newest rows (above `ids_indexed_through` in `meta`) are held in
 * memory and merged in sorted order every ID_MERGE_ROWS messages, so a
 * merge writes each page of the index once for many ids. The lookup by
 * stream coordinates (`message_seqs`, keyed (origin, incarnation, seq)) is
 * filled by the same merge: as an index on `messages` it put every commit on
 * one more page per origin (a commit of a few messages from 8 origins wrote
 * ~9 index pages to the WAL, 5 KB per message). A restart reads the unmerged
 * ids and coordinates back from `messages`. Retention keeps the newest
 * `retainCount` messages younger than `retainMs`, and records per stream
 * the highest seq it purged (the floor), so anti-entropy never fetches a
 * purged message back.
 *
 * WAL with synchronous=NORMAL: a commit survives a crash of the process
 * (kill -9); only a power loss may lose the last commits. Checkpoints run
 * in a worker thread (wal-checkpointer.ts), off the commit path.
 */
export interface StoredMessage extends GossipMessage {
  readonly rowid: number;
  readonly receivedMs: number;
}

export interface StreamFloor {
  readonly origin: string;
  readonly incarnation: number;
  readonly floor: number;
}

export interface RetentionPolicy {
  readonly retainCount: number;
  readonly retainMs: number;
}

/** Defaults: one million messages and 30 days, whichever is hit first. */
export const RETENTION_DEFAULTS: RetentionPolicy = Object.freeze({ retainCount: 1_000_000, retainMs: 30 * 24 * 3_600_000 });

interface Row {
  rowid: number;
  id: string;
  origin: string;
  incarnation: number;
  seq: number;
  text: string;
  created_ms: number;
  received_ms: number;
  path: string;
}

/** How often the checkpoint thread copies the WAL back into the database. */
const CHECKPOINT_INTERVAL_MS = 500;
/** What the WAL file is truncated to when it restarts after a burst. */
const WAL_BYTES_KEPT = 8 * 1024 * 1024;
/** SQLite's default, used again if the checkpoint thread fails. */
const WAL_AUTOCHECKPOINT_PAGES = 1_000;
/** Ids held in memory before they are merged into `message_ids` (about 100 bytes each), on average. */
const ID_MERGE_ROWS = 32_768;
/**
 * Each merge point is drawn from ID_MERGE_ROWS × [1 - this, 1 + this]. Every
 * node of a flood stores the same messages, so with one fixed point all of
 * them merged at the same moment (~100–200 ms of CPU each; 16 nodes on 2
 * cores stalled together for over a second, and anti-entropy then resent
 * what was stuck in flight). Apart, the cost is the same but spread out.
 */
const ID_MERGE_JITTER = 0.25;
/** A merge at open (a store from before `message_ids`) goes in steps of this many rows. */
const ID_MERGE_STEP_ROWS = 100_000;

/** The messages table's columns: created at open and by the migration from the UNIQUE-id layout. */
const MESSAGES_COLUMNS = `
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  origin TEXT NOT NULL,
  incarnation INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  text TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  path TEXT NOT NULL
`;

export class GossipStore {
  private readonly db: Database.Database;
  private readonly stmts;
  private checkpointer: WalCheckpointer | undefined;
  private checkpointerStarted = false;
  /** Built once: db.transaction() makes new wrapper functions on every call (a commit per turn under a trickle of messages). */
  private readonly insertTx: (items: readonly { message: GossipMessage; receivedMs: number }[], added: Added[]) => void;
  /** Ids of the rows above idsIndexedThrough (not in message_ids yet), with their rowids. */
  private readonly pendingIds = new Map<string, number>();
  /** The same rows by stream (streamKey) and seq (not in message_seqs yet), with their rowids. */
  private readonly pendingSeqs = new Map<string, Map<number, number>>();
  /** Every id stored or merged since open (may say "maybe" for one that is gone): most inserts skip the message_ids lookup. */
  private readonly idFilter = new IdFilter();
  /** Per stream (streamKey), at least the highest seq in message_seqs (read at the stream's first insert): a seq above it skips the lookup. */
  private readonly mergedTop = new Map<string, number>();
  private idsIndexedThrough = 0;
  /** Pending ids that trigger the next merge (idMergeRows, jittered). */
  private nextMergeAt: number;
  /**
   * Rows held, kept in memory: `SELECT count(*)` walks the whole table (12 ms
   * at 160k messages), and status() — which benches and tests poll every few
   * ms — asks for it.
   */
  private rows = 0;
  /** The highest rowid stored so far (read at open): rows above a mark taken before a commit are that commit's. */
  private topRowid = 0;
  /** The highest rowid in pendingIds (rowids only grow): a merge through it empties the maps at once. */
  private pendingTopRowid = 0;
  /** Id merges and retention passes so far, and the wall time they took (ms): their cost shows in a node's stats. */
  readonly work = { idMerges: 0, idMergeMs: 0, purges: 0, purgeMs: 0 };

  private constructor(
    private readonly path: string,
    private readonly idMergeRows: number,
    private readonly idMergeJitter: number,
  ) {
    this.nextMergeAt = this.drawMergePoint();
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    // SQLite's own checkpoints until the first message is stored (startCheckpointer).
    this.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    // Checkpoints come every CHECKPOINT_INTERVAL_MS, so a burst can grow the WAL; cut it back when it restarts.
    this.db.pragma(`journal_size_limit = ${WAL_BYTES_KEPT}`);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS messages (${MESSAGES_COLUMNS});
      CREATE TABLE IF NOT EXISTS message_ids (
        id TEXT PRIMARY KEY,
        msg INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS message_seqs (
        origin TEXT NOT NULL,
        incarnation INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        msg INTEGER NOT NULL,
        PRIMARY KEY (origin, incarnation, seq)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS id_filter (
        k INTEGER PRIMARY KEY,
        bits BLOB NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS floors (
        origin TEXT NOT NULL,
        incarnation INTEGER NOT NULL,
        floor INTEGER NOT NULL,
        PRIMARY KEY (origin, incarnation)
      );
    `);
    this.migrateUniqueId();
    this.migrateStreamIndex();
    // Age retention finds its cut by a binary search on storing order (lastReceivedBefore): an index on
    // received_ms wrote one more page per commit (at commits of 4 messages, 3.0 -> 1.7 KB of WAL per message).
    this.db.exec('DROP INDEX IF EXISTS messages_received');
    this.stmts = {
      insert: this.db.prepare(
        'INSERT INTO messages (id, origin, incarnation, seq, text, created_ms, received_ms, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      get: this.db.prepare<[string], Row>('SELECT m.rowid, m.* FROM message_ids i JOIN messages m ON m.rowid = i.msg WHERE i.id = ?'),
      byRowid: this.db.prepare<[number], Row>('SELECT rowid, * FROM messages WHERE rowid = ?'),
      idIndexed: this.db.prepare<[string], { msg: number }>('SELECT msg FROM message_ids WHERE id = ?'),
      seqIndexed: this.db.prepare<[string, number, number], { msg: number }>('SELECT msg FROM message_seqs WHERE origin = ? AND incarnation = ? AND seq = ?'),
      seqTop: this.db.prepare<[string, number], { s: number | null }>('SELECT max(seq) AS s FROM message_seqs WHERE origin = ? AND incarnation = ?'),
      idsAfter: this.db.prepare<[string], string>('SELECT id FROM message_ids WHERE id > ? ORDER BY id LIMIT 10000').pluck(),
      filterBits: this.db.prepare<[], Buffer>('SELECT bits FROM id_filter WHERE k = 1').pluck(),
      saveFilter: this.db.prepare('INSERT INTO id_filter (k, bits) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET bits = excluded.bits'),
      idsAbove: this.db.prepare<[number], { rowid: number; id: string; origin: string; incarnation: number; seq: number }>(
        'SELECT rowid, id, origin, incarnation, seq FROM messages WHERE rowid > ?',
      ),
      mergeIds: this.db.prepare(
        'INSERT OR IGNORE INTO message_ids (id, msg) SELECT id, rowid FROM messages WHERE rowid > ? AND rowid <= ? ORDER BY id',
      ),
      mergeSeqs: this.db.prepare(
        'INSERT OR IGNORE INTO message_seqs (origin, incarnation, seq, msg) SELECT origin, incarnation, seq, rowid FROM messages WHERE rowid > ? AND rowid <= ? ORDER BY origin, incarnation, seq',
      ),
      idsThrough: this.db.prepare<[], { value: number }>("SELECT value FROM meta WHERE name = 'ids_indexed_through'"),
      setIdsThrough: this.db.prepare(
        "INSERT INTO meta (name, value) VALUES ('ids_indexed_through', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      ),
      purgeIds: this.db.prepare(
        'DELETE FROM message_ids WHERE id IN (SELECT m.id FROM message_seqs s JOIN messages m ON m.rowid = s.msg WHERE s.origin = ? AND s.incarnation = ? AND s.seq <= ?)',
      ),
      purgeMerged: this.db.prepare(
        'DELETE FROM messages WHERE rowid IN (SELECT msg FROM message_seqs WHERE origin = ? AND incarnation = ? AND seq <= ?)',
      ),
      purgeSeqs: this.db.prepare('DELETE FROM message_seqs WHERE origin = ? AND incarnation = ? AND seq <= ?'),
      idAt: this.db.prepare<[number], string>('SELECT id FROM messages WHERE rowid = ?').pluck(),
      deleteRow: this.db.prepare('DELETE FROM messages WHERE rowid = ?'),
      bySeqRange: this.db.prepare<[string, number, number, number], Row>(
        'SELECT m.rowid, m.* FROM message_seqs s JOIN messages m ON m.rowid = s.msg WHERE s.origin = ? AND s.incarnation = ? AND s.seq BETWEEN ? AND ? ORDER BY s.seq',
      ),
      list: this.db.prepare<[number, number], Row>('SELECT rowid, * FROM messages WHERE rowid > ? ORDER BY rowid LIMIT ?'),
      count: this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM messages'),
      held: this.db.prepare<[], { origin: string; incarnation: number; seq: number }>('SELECT origin, incarnation, seq FROM messages'),
      floors: this.db.prepare<[], StreamFloor>('SELECT origin, incarnation, floor FROM floors'),
      maxRowid: this.db.prepare<[], { r: number | null }>('SELECT max(rowid) AS r FROM messages'),
      rowAtOrAfter: this.db.prepare<[number], { rowid: number; received_ms: number }>(
        'SELECT rowid, received_ms FROM messages WHERE rowid >= ? ORDER BY rowid LIMIT 1',
      ),
      purgeTops: this.db.prepare<[number], StreamFloor>(
        'SELECT origin, incarnation, max(seq) AS floor FROM messages WHERE rowid <= ? GROUP BY origin, incarnation',
      ),
      raiseFloor: this.db.prepare(
        'INSERT INTO floors (origin, incarnation, floor) VALUES (?, ?, ?) ON CONFLICT (origin, incarnation) DO UPDATE SET floor = max(floor, excluded.floor)',
      ),
    };
    const { insert, idIndexed, seqIndexed, seqTop } = this.stmts;
    this.insertTx = this.db.transaction((items: readonly { message: GossipMessage; receivedMs: number }[], added: Added[]) => {
      // A commit holds runs of the same stream: its map and merged top are looked up once per run.
      let lastOrigin = '';
      let lastIncarnation = -1;
      let seqs: Map<number, number> | undefined;
      let top = 0;
      for (const { message: m, receivedMs } of items) {
        if (seqs === undefined || m.origin !== lastOrigin || m.incarnation !== lastIncarnation) {
          lastOrigin = m.origin;
          lastIncarnation = m.incarnation;
          const key = streamKey(m.origin, m.incarnation);
          seqs = this.pendingSeqs.get(key);
          if (!seqs) this.pendingSeqs.set(key, (seqs = new Map()));
          let known = this.mergedTop.get(key);
          if (known === undefined) this.mergedTop.set(key, (known = seqTop.get(m.origin, m.incarnation)!.s ?? 0));
          top = known;
        }
        // The same id, and the same stream coordinates, are stored once. SQLite
        // is asked only when memory cannot rule it out (a new message's seq is
        // above what was merged, and its id is not in the filter).
        if (seqs.has(m.seq) || (m.seq <= top && seqIndexed.get(m.origin, m.incarnation, m.seq) !== undefined)) continue;
        if (this.idFilter.mightHave(m.id) && (this.pendingIds.has(m.id) || idIndexed.get(m.id) !== undefined)) continue;
        const r = insert.run(m.id, m.origin, m.incarnation, m.seq, m.text, m.createdMs, receivedMs, JSON.stringify(m.path));
        const rowid = Number(r.lastInsertRowid);
        this.pendingIds.set(m.id, rowid);
        this.pendingTopRowid = rowid;
        this.topRowid = rowid;
        this.idFilter.add(m.id);
        seqs.set(m.seq, rowid);
        added.push({ message: m, rowid });
      }
    });
    this.idsIndexedThrough = this.stmts.idsThrough.get()?.value ?? 0;
    this.loadIdFilter();
    this.rows = this.stmts.count.get()!.n;
    this.topRowid = this.stmts.maxRowid.get()!.r ?? 0;
  }

  /**
   * The filter is saved with every merge (it then holds every merged id):
   * read back at open instead of hashing every id again (100k ids: ~90 ms).
   * A store without it, or one that merges at open, builds it from
   * message_ids once.
   */
  private loadIdFilter(): void {
    const saved = this.stmts.filterBits.get();
    const mergedAtOpen = this.loadPendingIds();
    if (saved !== undefined && !mergedAtOpen && this.idFilter.load(saved)) return;
    for (let after = ''; ; ) {
      const ids = this.stmts.idsAfter.all(after);
      for (const id of ids) this.idFilter.add(id);
      if (ids.length === 0) break;
      after = ids[ids.length - 1]!;
    }
    const bits = this.idFilter.bytes();
    if (bits) this.stmts.saveFilter.run(bits);
  }

  /** The ids and coordinates not merged yet: read back into memory, or merged now when a store from before message_ids has many. */
  private loadPendingIds(): boolean {
    const above = this.stmts.maxRowid.get()!.r ?? 0;
    if (above - this.idsIndexedThrough > 2 * this.idMergeRows) {
      for (let from = this.idsIndexedThrough; from < above; from += ID_MERGE_STEP_ROWS) this.mergeIdsThrough(Math.min(above, from + ID_MERGE_STEP_ROWS));
      return true;
    }
    for (const r of this.stmts.idsAbove.iterate(this.idsIndexedThrough)) this.notePending(r.id, r.origin, r.incarnation, r.seq, r.rowid);
    return false;
  }

  private notePending(id: string, origin: string, incarnation: number, seq: number, rowid: number): void {
    this.pendingIds.set(id, rowid);
    if (rowid > this.pendingTopRowid) this.pendingTopRowid = rowid;
    this.idFilter.add(id);
    const key = streamKey(origin, incarnation);
    let seqs = this.pendingSeqs.get(key);
    if (!seqs) this.pendingSeqs.set(key, (seqs = new Map()));
    seqs.set(seq, rowid);
  }

  /** Moves the ids and coordinates of rows up to `through` into message_ids and message_seqs, each in key order (each page written once). */
  private mergeIdsThrough(through: number): void {
    const t0 = performance.now();
    this.db.transaction(() => {
      this.stmts.mergeIds.run(this.idsIndexedThrough, through);
      this.stmts.mergeSeqs.run(this.idsIndexedThrough, through);
      this.stmts.setIdsThrough.run(through);
      // Every id merged was pending, so in the filter (a merge at open rebuilds the filter after it).
      const bits = this.idFilter.bytes();
      if (bits) this.stmts.saveFilter.run(bits);
    })();
    this.idsIndexedThrough = through;
    if (through >= this.pendingTopRowid) {
      // The usual case (a merge takes every row stored so far): the maps are
      // emptied at once. Deleting 32k string keys one by one was about a
      // third of a merge's CPU, and every node of a flood merges at the same moment.
      for (const [key, seqs] of this.pendingSeqs) {
        let top = this.mergedTop.get(key);
        if (top === undefined) continue; // read at the stream's next insert
        for (const seq of seqs.keys()) if (seq > top) top = seq;
        this.mergedTop.set(key, top);
      }
      this.pendingIds.clear();
      this.pendingSeqs.clear();
    } else {
      this.mergePartOfPending(through);
    }
    this.work.idMerges += 1;
    this.work.idMergeMs += performance.now() - t0;
    this.nextMergeAt = this.drawMergePoint();
  }

  /** Drops the rows up to `through` from the maps of unmerged rows (a merge that leaves newer rows pending). */
  private mergePartOfPending(through: number): void {
    for (const [id, rowid] of this.pendingIds) if (rowid <= through) this.pendingIds.delete(id);
    for (const [key, seqs] of this.pendingSeqs) {
      // A stream whose top was not read yet reads it at its next insert.
      let top = this.mergedTop.get(key);
      for (const [seq, rowid] of seqs) {
        if (rowid > through) continue;
        seqs.delete(seq);
        if (top !== undefined && seq > top) top = seq;
      }
      if (top !== undefined) this.mergedTop.set(key, top);
      if (seqs.size === 0) this.pendingSeqs.delete(key);
    }
  }

  /** Fills message_seqs with every row (rows above the merge mark are then in both it and memory: lookups try memory first). */
  private indexAllSeqs(): void {
    this.db.exec(
      'INSERT OR IGNORE INTO message_seqs (origin, incarnation, seq, msg) SELECT origin, incarnation, seq, rowid FROM messages ORDER BY origin, incarnation, seq',
    );
  }

  /** A store from before message_seqs: an index messages_stream on messages (origin, incarnation, seq), updated on every insert. */
  private migrateStreamIndex(): void {
    if (!this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'messages_stream'").get()) return;
    this.db.transaction(() => {
      this.indexAllSeqs();
      this.db.exec('DROP INDEX messages_stream');
    })();
  }

  /** A store from before message_ids: `messages.id` was UNIQUE (an index updated on every insert). */
  private migrateUniqueId(): void {
    const sql = this.db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'").get()?.sql ?? '';
    if (!/id TEXT NOT NULL UNIQUE/.test(sql)) return;
    this.db.transaction(() => {
      this.db.exec(`
        CREATE TABLE messages_v2 (${MESSAGES_COLUMNS});
        INSERT INTO messages_v2 (rowid, id, origin, incarnation, seq, text, created_ms, received_ms, path)
          SELECT rowid, id, origin, incarnation, seq, text, created_ms, received_ms, path FROM messages;
        DROP TABLE messages;
        ALTER TABLE messages_v2 RENAME TO messages;
      `);
      this.indexAllSeqs();
    })();
  }

  /**
   * `idMergeRows`: ids held in memory before a merge into message_ids, and
   * `idMergeJitter` how far each merge point may stray from it (a fraction);
   * tests make the rows small, and exact unless they ask for jitter.
   */
  static open(dataDir: string, options: { idMergeRows?: number; idMergeJitter?: number } = {}): GossipStore {
    mkdirSync(dataDir, { recursive: true });
    const jitter = options.idMergeJitter ?? (options.idMergeRows === undefined ? ID_MERGE_JITTER : 0);
    return new GossipStore(join(dataDir, 'gossip.db'), options.idMergeRows ?? ID_MERGE_ROWS, jitter);
  }

  private drawMergePoint(): number {
    return Math.round(this.idMergeRows * (1 - this.idMergeJitter + 2 * this.idMergeJitter * Math.random()));
  }

  /** Stores messages in one transaction; returns how many were new. */
  insertMany(items: readonly { message: GossipMessage; receivedMs: number }[]): number {
    const added: Added[] = [];
    try {
      this.insertTx(items, added);
    } catch (err) {
      // Rolled back: these rows do not exist.
      for (const { message: m } of added) {
        this.pendingIds.delete(m.id);
        this.pendingSeqs.get(streamKey(m.origin, m.incarnation))?.delete(m.seq);
      }
      throw err;
    }
    this.rows += added.length;
    if (added.length > 0 && !this.checkpointerStarted) this.startCheckpointer();
    if (this.pendingIds.size >= this.nextMergeAt) this.mergeIdsThrough(added.length > 0 ? added[added.length - 1]!.rowid : this.stmts.maxRowid.get()!.r ?? 0);
    return added.length;
  }

  /**
   * Moves checkpoints to a worker thread at the first stored message, not at
   * open: the thread (an isolate loading better-sqlite3) costs tens of ms of
   * CPU, which 16 nodes starting at once on 2 cores felt in their join time
   * (bench:membership), and a node that gossips nothing never needs it.
   */
  private startCheckpointer(): void {
    this.checkpointerStarted = true;
    this.checkpointer = new WalCheckpointer(this.path, CHECKPOINT_INTERVAL_MS, () => {
      // Back to SQLite's own checkpoints: slower commits now and then, but a bounded WAL.
      this.checkpointer = undefined;
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    });
    this.db.pragma('wal_autocheckpoint = 0');
  }

  /** The highest rowid stored so far: the rows a later commit stores are above it. */
  get lastRowid(): number {
    return this.topRowid;
  }

  /** Seq → rowid of one stream's rows not merged into message_seqs yet (the newest): read-only, valid until the next insert. */
  unmergedRowids(origin: string, incarnation: number): ReadonlyMap<number, number> | undefined {
    return this.pendingSeqs.get(streamKey(origin, incarnation));
  }

  get(id: string): StoredMessage | undefined {
    const pending = this.pendingIds.get(id);
    const row = pending === undefined ? this.stmts.get.get(id) : this.stmts.byRowid.get(pending);
    return row && fromRow(row);
  }

  /** The messages of one stream with these seqs (those still held), in the order asked. */
  bySeqs(origin: string, incarnation: number, seqs: readonly number[]): StoredMessage[] {
    const out: StoredMessage[] = [];
    const pending = this.pendingSeqs.get(streamKey(origin, incarnation));
    // Consecutive seqs (a re-sync asks for thousands) are read as one range, not one query each.
    for (let i = 0; i < seqs.length; ) {
      let j = i;
      while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j += 1;
      const from = seqs[i]!;
      const to = seqs[j]!;
      // The merged rows of the run, in seq order; the gaps are looked up in memory (rows not merged yet).
      const rows = this.stmts.bySeqRange.all(origin, incarnation, from, to);
      let r = 0;
      for (let seq = from; seq <= to; seq++) {
        if (r < rows.length && rows[r]!.seq === seq) {
          out.push(fromRow(rows[r++]!));
          continue;
        }
        const rowid = pending?.get(seq);
        const row = rowid === undefined ? undefined : this.stmts.byRowid.get(rowid);
        if (row) out.push(fromRow(row));
      }
      i = j + 1;
    }
    return out;
  }

  /** Up to `limit` messages stored after rowid `after`, in storing order. */
  list(after: number, limit: number): StoredMessage[] {
    return this.stmts.list.all(after, limit).map(fromRow);
  }

  count(): number {
    return this.rows;
  }

  /** Every (stream, seq) held, for rebuilding the core's bookkeeping at start. */
  *held(): IterableIterator<{ origin: string; incarnation: number; seq: number }> {
    yield* this.stmts.held.iterate();
  }

  floors(): StreamFloor[] {
    return this.stmts.floors.all();
  }

  /**
   * Applies retention; returns the floors it raised (for the core). Purges
   * whole stream prefixes: everything of a stream up to the highest seq that
   * fell out of the window, so a floor is a clean "nothing at or below".
   */
  purge(policy: RetentionPolicy, nowMs: number): StreamFloor[] {
    const maxRowid = this.stmts.maxRowid.get()!.r ?? 0;
    const byCount = maxRowid - policy.retainCount;
    const byAge = this.lastReceivedBefore(nowMs - policy.retainMs, maxRowid);
    const cut = Math.max(byCount, byAge);
    if (cut <= 0) return [];
    const t0 = performance.now();
    const raised = this.stmts.purgeTops.all(cut);
    const forgotten: { id: string; origin: string; incarnation: number; seq: number }[] = [];
    let deleted = 0;
    this.db.transaction(() => {
      for (const f of raised) {
        // Rows not merged yet (the newest): found in memory, deleted one by one (no index on messages to scan by).
        const pending = this.pendingSeqs.get(streamKey(f.origin, f.incarnation));
        if (pending) {
          for (const [seq, rowid] of pending) {
            if (seq > f.floor) continue;
            const id = this.stmts.idAt.get(rowid);
            deleted += this.stmts.deleteRow.run(rowid).changes;
            if (id !== undefined) forgotten.push({ id, origin: f.origin, incarnation: f.incarnation, seq });
          }
        }
        this.stmts.purgeIds.run(f.origin, f.incarnation, f.floor);
        deleted += this.stmts.purgeMerged.run(f.origin, f.incarnation, f.floor).changes;
        this.stmts.purgeSeqs.run(f.origin, f.incarnation, f.floor);
        this.stmts.raiseFloor.run(f.origin, f.incarnation, f.floor);
      }
    })();
    // Only once committed: a failed purge leaves memory as the database is.
    this.rows -= deleted;
    for (const r of forgotten) {
      this.pendingIds.delete(r.id);
      this.pendingSeqs.get(streamKey(r.origin, r.incarnation))?.delete(r.seq);
    }
    this.work.purges += 1;
    this.work.purgeMs += performance.now() - t0;
    return raised;
  }

  /**
   * The last row, in storing order, received before `cutMs` (0 if none): a
   * binary search over rowids, as times received rise with storing order
   * (each is the wall clock when its commit was queued). Should the clock
   * step back, the age cut is off by at most that step.
   */
  private lastReceivedBefore(cutMs: number, maxRowid: number): number {
    const first = this.stmts.rowAtOrAfter.get(0);
    if (!first || first.received_ms >= cutMs) return 0;
    let good = first.rowid;
    let hi = maxRowid;
    while (good < hi) {
      const mid = good + Math.ceil((hi - good) / 2);
      const row = this.stmts.rowAtOrAfter.get(mid);
      if (row && row.rowid <= hi && row.received_ms < cutMs) good = row.rowid;
      else hi = mid - 1;
    }
    return good;
  }

  close(): void {
    this.checkpointerStarted = true; // none after close
    this.checkpointer?.stop();
    this.checkpointer = undefined;
    if (this.db.open) this.db.close();
  }
}

interface Added {
  readonly message: GossipMessage;
  readonly rowid: number;
}

function fromRow(r: Row): StoredMessage {
  return {
    rowid: r.rowid,
    id: r.id,
    origin: r.origin,
    incarnation: r.incarnation,
    seq: r.seq,
    text: r.text,
    createdMs: r.created_ms,
    receivedMs: r.received_ms,
    path: JSON.parse(r.path) as string[],
  };
}
