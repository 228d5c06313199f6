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
 * The store keeps no index of its own of where each key's record is: which
 * record is live is what the caller's replica holds (`clean` asks it), and
 * how much is garbage follows from the records in the log and the keys the
 * replica holds. A second per-key map here cost every replicated write one
 * more lookup in a large hash table (measured: about 1 µs of cache misses per
 * write per node on the bench machine).
 *
 * WAL with synchronous=NORMAL: a commit survives a kill -9 of the process;
 * only a power loss may lose the last commits.
 */
/** Is this version the one the cache holds of its key? (The cleaner keeps exactly those records.) */
export type IsCurrent = (key: string, hlc: number, node: string) => boolean;

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
  /** Records in each commit of the log, in seq order (a Map iterates in insertion order, and seqs only grow). */
  private readonly commits = new Map<number, number>();
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

  /**
   * Appends the winning versions of one group commit: one row, committed on
   * its own. A key twice in it is stored twice; loading keeps the last one,
   * and the cleaner drops the other.
   */
  write(entries: readonly KvEntry[]): void {
    if (entries.length === 0) return;
    this.append(this.writer.entries(entries), entries.length);
  }

  /** Removes purged keys (tombstones and expired values past the horizon, buckets handed over): a forget record each. */
  remove(keys: readonly string[]): void {
    if (keys.length === 0) return;
    this.append(this.writer.forgets(keys), keys.length);
  }

  private append(blob: Buffer, records: number): void {
    const seq = this.nextSeq;
    this.insert.run(seq, blob);
    this.nextSeq = seq + 1;
    this.commits.set(seq, records);
    this.rows += records;
  }

  /** Records in the log: one per key the cache holds, the rest garbage (older versions, forget records). */
  get records(): number {
    return this.rows;
  }

  /** Whether the log holds enough garbage to clean, for a cache that holds `heldKeys` keys (tombstones included). */
  needsCleaning(heldKeys: number): boolean {
    return this.rows - heldKeys > CLEAN_ABOVE_GARBAGE && this.rows > CLEAN_ABOVE_RATIO * heldKeys;
  }

  /**
   * One cleaning step (a few ms): the oldest commits, about CLEAN_STEP_ROWS
   * records, are dropped, the records of the versions the cache holds
   * (`isCurrent`) copied into one new commit at the head. Forget records go:
   * every older record of their key is gone with the stretch. The caller's
   * cache must have every version it holds on disk when it calls this (an
   * older record would otherwise go while the newer one is not yet stored).
   * Returns the records it dropped.
   */
  clean(isCurrent: IsCurrent): number {
    const stretch: number[] = [];
    let records = 0;
    for (const [seq, n] of this.commits) {
      stretch.push(seq);
      records += n;
      if (records >= CLEAN_STEP_ROWS) break;
    }
    if (stretch.length === 0) return 0;
    const copies: Uint8Array[] = [];
    for (const seq of stretch) {
      const r = new LogBlobReader(this.blobOf.get(seq) as Buffer);
      while (r.next()) if (r.kind !== RECORD_FORGET && isCurrent(r.key, r.hlc, r.node)) copies.push(r.bytes());
    }
    const seq = this.nextSeq;
    this.db.transaction(() => {
      this.deleteThrough.run(stretch[stretch.length - 1]!);
      if (copies.length > 0) this.insert.run(seq, Buffer.concat(copies));
    })();
    // The disk has it: now the bookkeeping.
    for (const s of stretch) this.commits.delete(s);
    if (copies.length > 0) {
      this.commits.set(seq, copies.length);
      this.nextSeq = seq + 1;
    }
    this.rows += copies.length - records;
    return records - copies.length;
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
    this.commits.clear();
    this.rows = 0;
    const held = new Map<string, KvEntry>();
    let last = 0;
    for (const { seq, records } of rows) {
      let n = 0;
      const r = new LogBlobReader(records);
      while (r.next()) {
        n += 1;
        if (r.kind === RECORD_FORGET) held.delete(r.key);
        else held.set(r.key, r.entry());
      }
      this.commits.set(seq, n);
      this.rows += n;
      last = seq;
    }
    this.nextSeq = Math.max(this.nextSeq, last + 1);
    return [...held.values()];
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
