import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { KvEntry } from '../core/kv/entry.js';
import { LogBlobReader, LogBlobWriter, RECORD_FORGET } from './kv-log-codec.js';

/**
 * The durable replica of one node's cache: SQLite in WAL mode under the data
 * directory (`cache.db`), kept as a log of group commits. Each commit is one
 * row: one blob with the winning versions of its turn (src/store/kv-log-codec.ts),
 * so a commit is one INSERT of a few pages, whatever the number of writes in
 * it. A version whose key was written again later is garbage, and a cleaner
 * moves the log's tail forward in the background: it copies the still-live
 * records of the oldest commits into a new one at the head and deletes the
 * old ones as one range. Loading replays the log in order. A key the cache
 * forgets (a purged tombstone, a bucket handed over) gets a forget record,
 * which hides the key's older records until the cleaner has dropped them all.
 *
 * WAL with synchronous=NORMAL: a commit survives a kill -9 of the process;
 * only a power loss may lose the last commits.
 */
interface Commit {
  /** Records in the commit's blob. */
  records: number;
  /** Of them, the current record of their key (a forget record included). */
  live: number;
}

/** Records the cleaner takes per step (one transaction), about. */
const CLEAN_STEP_ROWS = 4_096;
/** The log is cleaned while it holds more than this many records per live key... */
const CLEAN_ABOVE_RATIO = 2;
/** ...and more garbage records than this. */
const CLEAN_ABOVE_GARBAGE = 10_000;
/** Versions per commit row when an older layout is carried over. */
const MIGRATE_CHUNK = 4_096;

export class KvStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly setMeta: Database.Statement;
  private readonly blobOf: Database.Statement;
  private readonly deleteThrough: Database.Statement;
  private readonly writer = new LogBlobWriter();
  /** Each key's current record: the seq of the commit holding it (a forget record included). */
  private readonly rowOf = new Map<string, number>();
  /** Every commit in the log, in seq order (a Map iterates in insertion order, and seqs only grow). */
  private readonly commits = new Map<number, Commit>();
  /** Keys whose current record is a forget record. */
  private readonly forgotten = new Set<string>();
  /** Records in the log. */
  private rows = 0;
  private nextSeq: number;

  private constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS commits (
        seq INTEGER PRIMARY KEY,
        records BLOB NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `);
    this.insert = this.db.prepare('INSERT INTO commits (seq, records) VALUES (?, ?)');
    this.setMeta = this.db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value');
    this.blobOf = this.db.prepare('SELECT records FROM commits WHERE seq = ?').pluck();
    this.deleteThrough = this.db.prepare('DELETE FROM commits WHERE seq <= ?');
    this.nextSeq = this.maxSeq() + 1;
    this.migrate();
  }

  static open(dataDir: string): KvStore {
    mkdirSync(dataDir, { recursive: true });
    return new KvStore(join(dataDir, 'cache.db'));
  }

  /** Appends the winning versions of one group commit: one row, committed on its own. */
  write(entries: readonly KvEntry[]): void {
    if (entries.length === 0) return;
    const seq = this.nextSeq;
    let live = 0;
    let repeated = false;
    for (let i = 0; i < entries.length; i++) {
      const key = entries[i]!.key;
      const old = this.rowOf.get(key);
      if (old === seq) {
        // The key twice in one commit: only its last version is kept.
        repeated = true;
        continue;
      }
      if (old !== undefined) this.commits.get(old)!.live -= 1;
      if (this.forgotten.size > 0) this.forgotten.delete(key);
      this.rowOf.set(key, seq);
      live += 1;
    }
    const blob = this.writer.entries(entries, repeated ? earlierRepeats(entries) : undefined);
    this.insert.run(seq, blob);
    this.nextSeq = seq + 1;
    this.commits.set(seq, { records: live, live });
    this.rows += live;
  }

  /** Removes purged keys (tombstones and expired values past the horizon, buckets handed over). */
  remove(keys: readonly string[]): void {
    const seq = this.nextSeq;
    const forget: string[] = [];
    for (const k of keys) {
      const old = this.rowOf.get(k);
      if (old === undefined || old === seq || this.forgotten.has(k)) continue;
      this.commits.get(old)!.live -= 1;
      this.rowOf.set(k, seq);
      this.forgotten.add(k);
      forget.push(k);
    }
    if (forget.length === 0) return;
    this.insert.run(seq, this.writer.forgets(forget));
    this.nextSeq = seq + 1;
    this.commits.set(seq, { records: forget.length, live: forget.length });
    this.rows += forget.length;
  }

  /** Records that are garbage (keys written again since, and forget records). */
  get garbage(): number {
    return this.rows - this.rowOf.size + this.forgotten.size;
  }

  /** Whether the log holds enough garbage to clean. */
  needsCleaning(): boolean {
    const garbage = this.garbage;
    return garbage > CLEAN_ABOVE_GARBAGE && this.rows > CLEAN_ABOVE_RATIO * (this.rowOf.size - this.forgotten.size);
  }

  /**
   * One cleaning step (a few ms): the oldest commits, about CLEAN_STEP_ROWS
   * records, are dropped, their still-current records copied into one new
   * commit at the head. Returns the garbage records it dropped.
   */
  clean(): number {
    const stretch: number[] = [];
    let records = 0;
    for (const [seq, c] of this.commits) {
      stretch.push(seq);
      records += c.records;
      if (records >= CLEAN_STEP_ROWS) break;
    }
    if (stretch.length === 0) return 0;
    const copies: Uint8Array[] = [];
    const copied: string[] = [];
    const dropped: string[] = [];
    for (const seq of stretch) {
      // A commit without a current record is dropped unread.
      if (this.commits.get(seq)!.live === 0) continue;
      const r = new LogBlobReader(this.blobOf.get(seq) as Buffer);
      while (r.next()) {
        if (this.rowOf.get(r.key) !== seq) continue;
        // A current forget record: every older record of its key is gone with this stretch, so it goes too.
        if (r.kind === RECORD_FORGET) dropped.push(r.key);
        else {
          copies.push(r.bytes());
          copied.push(r.key);
        }
      }
    }
    const seq = this.nextSeq;
    this.db.transaction(() => {
      this.deleteThrough.run(stretch[stretch.length - 1]!);
      if (copied.length > 0) this.insert.run(seq, Buffer.concat(copies));
    })();
    // The disk has it: now the bookkeeping.
    for (const s of stretch) this.commits.delete(s);
    for (const k of dropped) {
      this.rowOf.delete(k);
      this.forgotten.delete(k);
    }
    if (copied.length > 0) {
      for (const k of copied) this.rowOf.set(k, seq);
      this.commits.set(seq, { records: copied.length, live: copied.length });
      this.nextSeq = seq + 1;
    }
    this.rows += copied.length - records;
    return records - copied.length;
  }

  /** The clock ceiling: every stamp this node issued is below it. Written before such a stamp leaves the node. */
  setCeiling(hlc: number): void {
    this.setMeta.run('hlc_ceiling', hlc);
  }

  ceiling(): number {
    const row = this.db.prepare("SELECT value FROM meta WHERE name = 'hlc_ceiling'").get() as { value: number } | undefined;
    return row?.value ?? 0;
  }

  /** Every version held: the log replayed in order (a later record of a key supersedes an earlier one). */
  all(): KvEntry[] {
    const rows = this.db.prepare('SELECT seq, records FROM commits ORDER BY seq').iterate() as IterableIterator<{ seq: number; records: Buffer }>;
    this.rowOf.clear();
    this.commits.clear();
    this.forgotten.clear();
    this.rows = 0;
    const held = new Map<string, KvEntry>();
    let last = 0;
    for (const { seq, records } of rows) {
      const commit: Commit = { records: 0, live: 0 };
      this.commits.set(seq, commit);
      const r = new LogBlobReader(records);
      while (r.next()) {
        const old = this.rowOf.get(r.key);
        if (old !== undefined) this.commits.get(old)!.live -= 1;
        this.rowOf.set(r.key, seq);
        commit.live += 1;
        commit.records += 1;
        this.rows += 1;
        if (r.kind === RECORD_FORGET) {
          held.delete(r.key);
          this.forgotten.add(r.key);
        } else {
          this.forgotten.delete(r.key);
          held.set(r.key, r.entry());
        }
      }
      last = seq;
    }
    this.nextSeq = Math.max(this.nextSeq, last + 1);
    return [...held.values()];
  }

  /** Keys held (tombstones included). */
  count(): number {
    return this.rowOf.size - this.forgotten.size;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private maxSeq(): number {
    return (this.db.prepare('SELECT max(seq) FROM commits').pluck().get() as number | null) ?? 0;
  }

  /**
   * A cache.db of an earlier layout becomes the log's first commits: the
   * one-row-per-version log (table `log`, with forget rows of node ''), or
   * before it the one-row-per-key table `kv`.
   */
  private migrate(): void {
    const tables = new Set((this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]).filter((t) => t === 'log' || t === 'kv'));
    if (tables.size === 0) return;
    type Old = { key: Buffer; value: Buffer | null; hlc: number; node: string; expires_ms: number };
    const held = new Map<string, KvEntry>();
    const take = (rows: Iterable<Old>): void => {
      for (const r of rows) {
        const key = r.key.toString('latin1');
        if (r.node === '') held.delete(key);
        else held.set(key, { key, value: r.value === null ? undefined : new Uint8Array(r.value), hlc: r.hlc, node: r.node, expiresMs: r.expires_ms });
      }
    };
    this.db.transaction(() => {
      // The kv table predates the log: its rows come first.
      if (tables.has('kv')) take(this.db.prepare('SELECT key, value, hlc, node, expires_ms FROM kv').all() as Old[]);
      if (tables.has('log')) take(this.db.prepare('SELECT key, value, hlc, node, expires_ms FROM log ORDER BY seq').all() as Old[]);
      const entries = [...held.values()];
      for (let i = 0; i < entries.length; i += MIGRATE_CHUNK) this.insert.run(this.nextSeq++, this.writer.entries(entries.slice(i, i + MIGRATE_CHUNK)));
      for (const t of tables) this.db.exec(`DROP TABLE ${t}`);
    })();
  }
}

/** For a commit that holds a key more than once: true at every version but the key's last. */
function earlierRepeats(entries: readonly KvEntry[]): boolean[] {
  const seen = new Set<string>();
  const skip = new Array<boolean>(entries.length).fill(false);
  for (let i = entries.length - 1; i >= 0; i--) {
    const key = entries[i]!.key;
    if (seen.has(key)) skip[i] = true;
    else seen.add(key);
  }
  return skip;
}
