import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { KvEntry } from '../core/kv/entry.js';

/**
 * The durable replica of one node's cache: SQLite in WAL mode under the data
 * directory (`cache.db`), one row per key holding the winning version
 * (tombstones included until purged). Writes arrive in batches, one
 * transaction per batch (the runtime's group commit).
 *
 * WAL with synchronous=NORMAL: a commit survives a kill -9 of the process;
 * only a power loss may lose the last commits.
 */
interface Row {
  key: Buffer;
  value: Buffer | null;
  hlc: number;
  node: string;
  expires_ms: number;
}

export class KvStore {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;
  private readonly deleteKey: Database.Statement;
  private readonly setMeta: Database.Statement;
  private readonly writeBatch: (entries: readonly KvEntry[]) => void;
  private readonly deleteBatch: (keys: readonly string[]) => void;

  private constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS kv (
        key BLOB PRIMARY KEY,
        value BLOB,
        hlc INTEGER NOT NULL,
        node TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `);
    this.setMeta = this.db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value');
    this.upsert = this.db.prepare(
      'INSERT INTO kv (key, value, hlc, node, expires_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, hlc = excluded.hlc, node = excluded.node, expires_ms = excluded.expires_ms',
    );
    this.deleteKey = this.db.prepare('DELETE FROM kv WHERE key = ?');
    this.writeBatch = this.db.transaction((entries: readonly KvEntry[]) => {
      for (const e of entries) this.upsert.run(Buffer.from(e.key, 'latin1'), e.value ?? null, e.hlc, e.node, e.expiresMs);
    });
    this.deleteBatch = this.db.transaction((keys: readonly string[]) => {
      for (const k of keys) this.deleteKey.run(Buffer.from(k, 'latin1'));
    });
  }

  static open(dataDir: string): KvStore {
    mkdirSync(dataDir, { recursive: true });
    return new KvStore(join(dataDir, 'cache.db'));
  }

  /** Stores the winning versions of one group commit in one transaction. */
  write(entries: readonly KvEntry[]): void {
    if (entries.length > 0) this.writeBatch(entries);
  }

  /** Removes purged keys (tombstones and expired values past the horizon). */
  remove(keys: readonly string[]): void {
    if (keys.length > 0) this.deleteBatch(keys);
  }

  /** The clock ceiling: every stamp this node issued is below it. Written before such a stamp leaves the node. */
  setCeiling(hlc: number): void {
    this.setMeta.run('hlc_ceiling', hlc);
  }

  ceiling(): number {
    const row = this.db.prepare("SELECT value FROM meta WHERE name = 'hlc_ceiling'").get() as { value: number } | undefined;
    return row?.value ?? 0;
  }

  *all(): Generator<KvEntry> {
    const rows = this.db.prepare('SELECT key, value, hlc, node, expires_ms FROM kv').iterate() as IterableIterator<Row>;
    for (const r of rows) {
      yield { key: r.key.toString('latin1'), value: r.value === null ? undefined : new Uint8Array(r.value), hlc: r.hlc, node: r.node, expiresMs: r.expires_ms };
    }
  }

  count(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM kv').get() as { n: number }).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
