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
 * The store keeps no index of its own of where each key's record is (a
 * second per-key map cost every replicated write one more lookup in a large
 * hash table: about 1 µs of cache misses per write per node on the bench
 * machine). Instead each commit keeps, in memory, the version each of its
 * records holds while the cache holds it, and a held version knows its
 * commit and place (KvEntry.storedIn/storedAt). The cache tells the store
 * when it stops holding a version (`dropped`, from the replica's
 * onDropped): its record's slot empties at once, without a lookup. The
 * cleaner then copies what is left in a stretch of commits, with no read of
 * the log and no lookup per record (reading the log back and asking the
 * cache about each record was a fifth of a replica's CPU under a SET load).
 *
 * WAL with synchronous=NORMAL: a commit survives a kill -9 of the process;
 * only a power loss may lose the last commits.
 */
/** One commit of the log in memory: per record, the version it holds while the cache holds it (else undefined: garbage or a forget record). */
interface Commit {
  readonly seq: number;
  readonly held: (KvEntry | undefined)[];
}

/** storedAt of a version the cache dropped before it was written: its record is garbage from the start. */
const DROPPED_UNSTORED = -1;

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
  private readonly deleteThrough: Database.Statement;
  private readonly writer = new LogBlobWriter();
  /** The commits of the log, in seq order (a Map iterates in insertion order, and seqs only grow). */
  private readonly commits = new Map<number, Commit>();
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
    const commit = this.append(this.writer.entries(entries), entries.length);
    // On disk: now the versions learn where they are.
    for (let i = 0; i < entries.length; i++) this.place(entries[i]!, commit, i);
  }

  /** Removes purged keys (tombstones and expired values past the horizon, buckets handed over): a forget record each. */
  remove(keys: readonly string[]): void {
    if (keys.length === 0) return;
    this.append(this.writer.forgets(keys), keys.length);
  }

  /**
   * The cache no longer holds this version (a newer one replaced it, or its
   * key was forgotten): its record is garbage. Also for a version not
   * written yet: its record will be garbage when it is.
   */
  dropped(entry: KvEntry): void {
    const commit = entry.storedIn as Commit | undefined;
    if (commit === undefined) {
      entry.storedAt = DROPPED_UNSTORED;
      return;
    }
    if (commit.held[entry.storedAt!] === entry) commit.held[entry.storedAt!] = undefined;
    entry.storedIn = undefined;
    entry.storedAt = DROPPED_UNSTORED;
  }

  /** A record of `commit` at `index` holds `entry` (unless the cache dropped it already); an earlier record of the same object is garbage now. */
  private place(entry: KvEntry, commit: Commit, index: number): void {
    if (entry.storedAt === DROPPED_UNSTORED && entry.storedIn === undefined) return;
    const before = entry.storedIn as Commit | undefined;
    if (before !== undefined && before.held[entry.storedAt!] === entry) before.held[entry.storedAt!] = undefined;
    commit.held[index] = entry;
    entry.storedIn = commit;
    entry.storedAt = index;
  }

  private append(blob: Buffer, records: number): Commit {
    const seq = this.nextSeq;
    this.insert.run(seq, blob);
    this.nextSeq = seq + 1;
    const commit: Commit = { seq, held: new Array<KvEntry | undefined>(records).fill(undefined) };
    this.commits.set(seq, commit);
    this.rows += records;
    return commit;
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
   * records, are dropped, the records of the versions the cache still holds
   * written again as one new commit at the head. Forget records go: every
   * older record of their key is gone with the stretch. The caller's cache
   * must have every version it holds on disk when it calls this (an older
   * record would otherwise go while the newer one is not yet stored), and
   * must have reported every version it dropped (`dropped`). Returns the
   * records it dropped.
   */
  clean(): number {
    const stretch: Commit[] = [];
    let records = 0;
    for (const commit of this.commits.values()) {
      stretch.push(commit);
      records += commit.held.length;
      if (records >= CLEAN_STEP_ROWS) break;
    }
    if (stretch.length === 0) return 0;
    const live: KvEntry[] = [];
    for (const commit of stretch) for (const e of commit.held) if (e !== undefined) live.push(e);
    const seq = this.nextSeq;
    const blob = live.length > 0 ? this.writer.entries(live) : undefined;
    this.db.transaction(() => {
      this.deleteThrough.run(stretch[stretch.length - 1]!.seq);
      if (blob) this.insert.run(seq, blob);
    })();
    // The disk has it: now the bookkeeping.
    for (const commit of stretch) this.commits.delete(commit.seq);
    if (blob) {
      const commit: Commit = { seq, held: live };
      for (let i = 0; i < live.length; i++) {
        live[i]!.storedIn = commit;
        live[i]!.storedAt = i;
      }
      this.commits.set(seq, commit);
      this.nextSeq = seq + 1;
    }
    this.rows += live.length - records;
    return records - live.length;
  }

  /** The clock ceiling: every stamp this node issued is below it. Written before such a stamp leaves the node. */
  setCeiling(hlc: number): void {
    this.setMeta.run('hlc_ceiling', hlc);
  }

  ceiling(): number {
    const row = this.db.prepare("SELECT value FROM meta WHERE name = 'hlc_ceiling'").get() as { value: number } | undefined;
    return row?.value ?? 0;
  }

  /**
   * Every version held: the log replayed in order (a later record of a key
   * supersedes an earlier one). The cache must hold exactly these (and
   * report what it drops of them from then on).
   */
  all(): KvEntry[] {
    const rows = this.db.prepare('SELECT seq, records FROM commits ORDER BY seq').iterate() as IterableIterator<{ seq: number; records: Buffer }>;
    this.commits.clear();
    this.rows = 0;
    const held = new Map<string, KvEntry>();
    let last = 0;
    for (const { seq, records } of rows) {
      const commit: Commit = { seq, held: [] };
      const r = new LogBlobReader(records);
      while (r.next()) {
        const before = held.get(r.key);
        if (before) this.dropped(before);
        if (r.kind === RECORD_FORGET) {
          held.delete(r.key);
          commit.held.push(undefined);
        } else {
          const e = r.entry();
          held.set(r.key, e);
          commit.held.push(undefined);
          this.place(e, commit, commit.held.length - 1);
        }
      }
      this.commits.set(seq, commit);
      this.rows += commit.held.length;
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
