import type { KvEntry } from '../core/kv/entry.js';

/**
 * The simulated durable store of one cache node (src/store/kv-store.ts):
 * one row per key, each group commit upserts its entries in order, and it
 * is all that survives a crash.
 */
export class SimKvDisk {
  private readonly rows = new Map<string, KvEntry>();
  /** Group commits so far. */
  commits = 0;
  /** The clock ceiling (KvStore.setCeiling): written at once, before the stamp leaves. */
  ceiling = 0;

  get size(): number {
    return this.rows.size;
  }

  write(entries: readonly KvEntry[]): void {
    if (entries.length === 0) return;
    this.commits += 1;
    for (const e of entries) this.rows.set(e.key, e);
  }

  get(key: string): KvEntry | undefined {
    return this.rows.get(key);
  }

  all(): KvEntry[] {
    return [...this.rows.values()];
  }
}
