import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { LockRecord } from '../core/locks/types.js';

/**
 * A node's durable lock state (DATA_DIR/locks.db): per key the highest
 * token its grantor ever granted and the lease it gave, and the acquirer's
 * epoch (attempt ids stay unique across restarts). SQLite in WAL mode with
 * synchronous=NORMAL: a committed transaction survives a kill -9 of the
 * process (not a power cut). The caller commits before it answers.
 *
 * Bounded: beyond rowsMax keys, the least recently written keys without a
 * live lease are deleted and the store's floor rises to their highest
 * token; a key without a row reads as maxToken = floor. So tokens still grow
 * for every key, forgotten or not.
 */
export interface LockStoreOptions {
  readonly rowsMax: number;
  /** A lease is only pruned this long after its wall-clock expiry. */
  readonly pruneAfterMs: number;
}

export const LOCK_STORE_DEFAULTS: LockStoreOptions = Object.freeze({ rowsMax: 1_000_000, pruneAfterMs: 60_000 });

interface Row {
  key: string;
  max_token: bigint;
  holder: string | null;
  attempt: string | null;
  token: bigint | null;
  priority: string | null;
  ttl_ms: bigint | null;
  expires_wall_ms: bigint | null;
}

export class LockStore {
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly writeTransaction: (records: readonly LockRecord[], wallMs: number) => void;
  private rows: number;
  private floorToken: bigint;

  private constructor(path: string, private readonly options: LockStoreOptions) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS locks (
        key TEXT PRIMARY KEY,
        max_token INTEGER NOT NULL,
        holder TEXT,
        attempt TEXT,
        token INTEGER,
        priority TEXT,
        ttl_ms INTEGER,
        expires_wall_ms INTEGER,
        written_wall_ms INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS locks_written ON locks (written_wall_ms);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    this.stmts = {
      load: this.db.prepare<[string], Row>('SELECT key, max_token, holder, attempt, token, priority, ttl_ms, expires_wall_ms FROM locks WHERE key = ?').safeIntegers(true),
      insert: this.db.prepare('INSERT OR IGNORE INTO locks (key, max_token, written_wall_ms) VALUES (?, ?, ?)'),
      update: this.db.prepare(
        // max(): a record never lowers the stored maxToken, whatever order writes come in.
        'UPDATE locks SET max_token = max(max_token, ?), holder = ?, attempt = ?, token = ?, priority = ?, ttl_ms = ?, expires_wall_ms = ?, written_wall_ms = ? WHERE key = ?',
      ),
      count: this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM locks'),
      getMeta: this.db.prepare<[string], { value: bigint }>('SELECT value FROM meta WHERE key = ?').safeIntegers(true),
      setMeta: this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
      prunable: this.db.prepare<[number, number], { key: string; max_token: bigint }>(
        'SELECT key, max_token FROM locks WHERE expires_wall_ms IS NULL OR expires_wall_ms < ? ORDER BY written_wall_ms LIMIT ?',
      ).safeIntegers(true),
      delete: this.db.prepare('DELETE FROM locks WHERE key = ?'),
    };
    this.rows = this.stmts.count.get()!.n;
    this.floorToken = this.stmts.getMeta.get('floor')?.value ?? 0n;
    this.writeTransaction = this.db.transaction((records: readonly LockRecord[], wallMs: number) => {
      for (const r of records) {
        if (this.stmts.insert.run(r.key, r.maxToken, wallMs).changes === 1) this.rows += 1;
        const l = r.lease;
        this.stmts.update.run(
          r.maxToken,
          l?.holder ?? null, l ? l.attempt.toString() : null, l?.token ?? null, l ? l.priority.toString() : null,
          l?.ttlMs ?? null, l ? Math.ceil(l.expiresWallMs) : null, wallMs, r.key,
        );
      }
      if (this.rows > this.options.rowsMax) this.prune(wallMs);
    });
  }

  static open(dataDir: string, options: Partial<LockStoreOptions> = {}): LockStore {
    mkdirSync(dataDir, { recursive: true });
    return new LockStore(join(dataDir, 'locks.db'), { ...LOCK_STORE_DEFAULTS, ...options });
  }

  /** The key's record; a key never written (or pruned) reads as the floor token with no lease. */
  load(key: string): LockRecord | undefined {
    const row = this.stmts.load.get(key);
    if (!row) return this.floorToken > 0n ? { key, maxToken: this.floorToken, lease: undefined } : undefined;
    const maxToken = row.max_token > this.floorToken ? row.max_token : this.floorToken;
    const lease = row.holder !== null && row.attempt !== null && row.token !== null && row.priority !== null && row.ttl_ms !== null && row.expires_wall_ms !== null
      ? { holder: row.holder, attempt: BigInt(row.attempt), token: row.token, priority: BigInt(row.priority), ttlMs: Number(row.ttl_ms), expiresWallMs: Number(row.expires_wall_ms) }
      : undefined;
    return { key, maxToken, lease };
  }

  /** Commits the records in one transaction (before the grantor's answers leave). */
  write(records: readonly LockRecord[], wallMs: number): void {
    if (records.length > 0) this.writeTransaction(records, Math.floor(wallMs));
  }

  /** A new epoch for this process's attempt ids: 1 more than any before. */
  nextEpoch(): number {
    const epoch = Number(this.stmts.getMeta.get('epoch')?.value ?? 0n) + 1;
    this.stmts.setMeta.run('epoch', epoch);
    return epoch;
  }

  get rowCount(): number {
    return this.rows;
  }

  get floor(): bigint {
    return this.floorToken;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private prune(wallMs: number): void {
    const excess = this.rows - this.options.rowsMax;
    // A tenth more than needed, so pruning does not run on every write.
    const victims = this.stmts.prunable.all(wallMs - this.options.pruneAfterMs, excess + Math.ceil(this.options.rowsMax / 10));
    for (const v of victims) {
      if (v.max_token > this.floorToken) this.floorToken = v.max_token;
      this.stmts.delete.run(v.key);
      this.rows -= 1;
    }
    this.stmts.setMeta.run('floor', this.floorToken);
  }
}
