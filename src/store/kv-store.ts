import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { KvEntry } from '../core/kv/entry.js';

/**
 * The durable replica of one node's cache: SQLite in WAL mode under the data
 * directory (`cache.db`), kept as a log. Each group commit appends the
 * winning versions of its turn as new rows (the last pages of one table, so
 * a commit writes a few pages, not one page per key as updates in place
 * would); a row whose key was written again later is garbage, and a cleaner
 * moves the log's tail forward in the background: it copies the still-live
 * rows of the oldest stretch to the head and deletes the stretch as one range.
 * Loading replays the log in order. A key the cache forgets (a purged
 * tombstone, a bucket handed over) gets a forget row (node ''), which hides
 * the key's older rows until the cleaner has dropped them all.
 *
 * WAL with synchronous=NORMAL: a commit survives a kill -9 of the process;
 * only a power loss may lose the last commits.
 */
interface Row {
  seq: number;
  key: Buffer;
  value: Buffer | null;
  hlc: number;
  node: string;
  expires_ms: number;
}

/** The node id of a forget row (no real node has the empty id). */
const FORGET_NODE = '';
/** Rows the cleaner looks at per step (one transaction). */
const CLEAN_STEP_ROWS = 4_096;
/** The log is cleaned while it holds more than this many rows per live key... */
const CLEAN_ABOVE_RATIO = 2;
/** ...and more garbage rows than this. */
const CLEAN_ABOVE_GARBAGE = 10_000;

export class KvStore {
  private readonly db: Database.Database;
  private readonly append: Database.Statement;
  private readonly setMeta: Database.Statement;
  private readonly oldest: Database.Statement;
  private readonly copyRow: Database.Statement;
  private readonly deleteBelow: Database.Statement;
  private readonly writeBatch: (entries: readonly KvEntry[]) => void;
  private readonly deleteBatch: (keys: readonly string[]) => void;
  private readonly cleanBatch: () => number;
  /** Each key's current row (a forget row included). */
  private readonly rowOf = new Map<string, number>();
  private rows = 0;
  /** Keys whose current row is a forget row. */
  private forgotten = 0;

  private constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS log (
        seq INTEGER PRIMARY KEY,
        key BLOB NOT NULL,
        value BLOB,
        hlc INTEGER NOT NULL,
        node TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `);
    this.append = this.db.prepare('INSERT INTO log (key, value, hlc, node, expires_ms) VALUES (?, ?, ?, ?, ?)');
    this.setMeta = this.db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value');
    this.oldest = this.db.prepare('SELECT seq, key, node FROM log ORDER BY seq LIMIT ?');
    this.copyRow = this.db.prepare('INSERT INTO log (key, value, hlc, node, expires_ms) SELECT key, value, hlc, node, expires_ms FROM log WHERE seq = ?');
    this.deleteBelow = this.db.prepare('DELETE FROM log WHERE seq <= ?');
    this.writeBatch = this.db.transaction((entries: readonly KvEntry[]) => {
      for (const e of entries) {
        const { lastInsertRowid } = this.append.run(Buffer.from(e.key, 'latin1'), e.value ?? null, e.hlc, e.node, e.expiresMs);
        this.rowOf.set(e.key, Number(lastInsertRowid));
      }
      this.rows += entries.length;
    });
    this.deleteBatch = this.db.transaction((keys: readonly string[]) => {
      for (const k of keys) {
        if (!this.rowOf.has(k)) continue;
        const { lastInsertRowid } = this.append.run(Buffer.from(k, 'latin1'), null, 0, FORGET_NODE, 0);
        this.rowOf.set(k, Number(lastInsertRowid));
        this.forgotten += 1;
        this.rows += 1;
      }
    });
    this.cleanBatch = this.db.transaction((): number => {
      const stretch = this.oldest.all(CLEAN_STEP_ROWS) as { seq: number; key: Buffer; node: string }[];
      if (stretch.length === 0) return 0;
      let copied = 0;
      for (const r of stretch) {
        const key = r.key.toString('latin1');
        if (this.rowOf.get(key) !== r.seq) continue;
        if (r.node === FORGET_NODE) {
          // Every older row of the key is gone with this stretch: the forget row goes too.
          this.rowOf.delete(key);
          this.forgotten -= 1;
          continue;
        }
        const { lastInsertRowid } = this.copyRow.run(r.seq);
        this.rowOf.set(key, Number(lastInsertRowid));
        copied += 1;
      }
      this.deleteBelow.run(stretch[stretch.length - 1]!.seq);
      this.rows += copied - stretch.length;
      return stretch.length - copied;
    });
    this.migrate();
  }

  static open(dataDir: string): KvStore {
    mkdirSync(dataDir, { recursive: true });
    return new KvStore(join(dataDir, 'cache.db'));
  }

  /** Appends the winning versions of one group commit in one transaction. */
  write(entries: readonly KvEntry[]): void {
    if (entries.length > 0) this.writeBatch(entries);
  }

  /** Removes purged keys (tombstones and expired values past the horizon, buckets handed over). */
  remove(keys: readonly string[]): void {
    if (keys.length > 0) this.deleteBatch(keys);
  }

  /** Rows that are garbage (keys written again since). */
  get garbage(): number {
    return this.rows - this.rowOf.size + this.forgotten;
  }

  /** Whether the log holds enough garbage to clean. */
  needsCleaning(): boolean {
    const garbage = this.garbage;
    return garbage > CLEAN_ABOVE_GARBAGE && this.rows > CLEAN_ABOVE_RATIO * (this.rowOf.size - this.forgotten);
  }

  /** One cleaning step (a few ms); returns the garbage rows it dropped. */
  clean(): number {
    return this.cleanBatch();
  }

  /** The clock ceiling: every stamp this node issued is below it. Written before such a stamp leaves the node. */
  setCeiling(hlc: number): void {
    this.setMeta.run('hlc_ceiling', hlc);
  }

  ceiling(): number {
    const row = this.db.prepare("SELECT value FROM meta WHERE name = 'hlc_ceiling'").get() as { value: number } | undefined;
    return row?.value ?? 0;
  }

  /** Every version held: the log replayed in order (a later row of a key supersedes an earlier one). */
  all(): KvEntry[] {
    const rows = this.db.prepare('SELECT seq, key, value, hlc, node, expires_ms FROM log ORDER BY seq').iterate() as IterableIterator<Row>;
    this.rowOf.clear();
    this.rows = 0;
    this.forgotten = 0;
    const held = new Map<string, KvEntry>();
    for (const r of rows) {
      const key = r.key.toString('latin1');
      if (this.rowOf.has(key) && held.get(key) === undefined) this.forgotten -= 1;
      this.rowOf.set(key, r.seq);
      this.rows += 1;
      if (r.node === FORGET_NODE) {
        held.delete(key);
        this.forgotten += 1;
      } else held.set(key, { key, value: r.value === null ? undefined : new Uint8Array(r.value), hlc: r.hlc, node: r.node, expiresMs: r.expires_ms });
    }
    return [...held.values()];
  }

  /** Keys held (tombstones included). */
  count(): number {
    return this.rowOf.size - this.forgotten;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** A cache.db from before the log (one row per key in table kv) becomes the log's first rows. */
  private migrate(): void {
    const old = this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'kv'").get();
    if (!old) return;
    this.db.exec('BEGIN; INSERT INTO log (key, value, hlc, node, expires_ms) SELECT key, value, hlc, node, expires_ms FROM kv; DROP TABLE kv; COMMIT;');
  }
}
