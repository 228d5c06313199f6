/**
 * Node-side timestamps of the gossip bench: each node's SQLite store
 * (`DATA_DIR/gossip.db`, src/store/gossip-store.ts) records, per message, the
 * origin's wall clock at submit (created_ms) and this node's wall clock when
 * it received the message (received_ms, just before the group commit that
 * stores it). The lab's namespaces share the machine's clock, so these
 * compare across nodes without any relay in between (ms resolution).
 * Opened read-only; the store is in WAL mode, so a running node is fine.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export interface NodeSideRecord {
  readonly createdMs: number;
  readonly receivedMs: number;
}

/** id → (created, received) for the messages created at or after sinceCreatedMs. */
export function receivedTimes(dataDir: string, sinceCreatedMs: number): Map<string, NodeSideRecord> {
  const out = new Map<string, NodeSideRecord>();
  const path = join(dataDir, 'gossip.db');
  if (!existsSync(path)) return out;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare<[number], { id: string; created_ms: number; received_ms: number }>('SELECT id, created_ms, received_ms FROM messages WHERE created_ms >= ?')
      .all(sinceCreatedMs);
    for (const r of rows) out.set(r.id, { createdMs: r.created_ms, receivedMs: r.received_ms });
  } finally {
    db.close();
  }
  return out;
}

/** How many messages the store holds (for a node that is not running). */
export function storedCount(dataDir: string): number {
  const path = join(dataDir, 'gossip.db');
  if (!existsSync(path)) return 0;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare<[], { n: number }>('SELECT count(*) AS n FROM messages').get()!.n;
  } finally {
    db.close();
  }
}
