import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * Checkpoints a WAL database from a worker thread. SQLite's automatic
 * checkpoint runs inside a commit on the event loop and fsyncs: measured
 * here at 5–120 ms every ~140 commits per node, which on a 16-node flood
 * put one node of the path in a checkpoint for about one message in ten
 * (the latency's p99). The owner turns automatic checkpoints off and this
 * thread runs PASSIVE ones (they never block writers) on its own connection.
 * If the thread fails, the owner gets `onFailure` and turns them back on.
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.modulePath);
const db = new Database(workerData.dbPath);
db.pragma('busy_timeout = 1000');
setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch { /* busy: next round */ }
}, workerData.intervalMs);
`;

const requireHere = createRequire(import.meta.url);

export class WalCheckpointer {
  private readonly worker: Worker;
  private stopped = false;

  constructor(dbPath: string, intervalMs: number, onFailure: (err: Error) => void) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { dbPath, intervalMs, modulePath: requireHere.resolve('better-sqlite3') },
      // A plain CommonJS script: the parent's loaders (tsx in tests) are not needed.
      execArgv: [],
    });
    this.worker.unref();
    this.worker.on('error', (err) => {
      if (!this.stopped) onFailure(err);
    });
    this.worker.on('exit', (code) => {
      if (!this.stopped) onFailure(new Error(`WAL checkpoint thread exited with code ${code}`));
    });
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    void this.worker.terminate();
  }
}
