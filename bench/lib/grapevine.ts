/**
 * `grapevine node` processes in lab hosts, as the membership bench sees them:
 * every JSON log line (stderr) is kept with the node's own `time` (epoch ms)
 * and its arrival time in this process.
 */
import type { ChildProcess } from 'node:child_process';
import { startNode } from '../../test/helpers/lab-cluster.js';
import type { Lab } from '../../test/helpers/lab.js';
import { onLines, running } from './lines.js';

export interface GvRecord {
  readonly msg: string;
  /** The node's own timestamp (pino epoch ms). */
  readonly time: number;
  /** When this process read the line (epoch ms). */
  readonly arrival: number;
  readonly member?: string;
  readonly alive?: number;
  readonly id?: string;
  readonly stalledMs?: number;
  /** A 'stats' line (SIGUSR2): the gossip counters and the process's cpuUsage (µs). */
  readonly gossip?: Record<string, number>;
  readonly cpuUs?: { user: number; system: number };
  /** The whole line, kept only when BENCH_LOG_DIR asks for the logs. */
  readonly raw?: string;
}

const KEEP_RAW = (process.env.BENCH_LOG_DIR ?? '') !== '';

export const BACK_MSGS = ['member joined', 'member restarted', 'member recovered'] as const;

export class GvNode {
  readonly records: GvRecord[] = [];

  constructor(
    readonly hostIndex: number,
    readonly proc: ChildProcess,
    readonly dataDir: string,
  ) {
    onLines(proc, (line, arrival) => {
      if (!line.startsWith('{')) return;
      let v: Record<string, unknown>;
      try {
        v = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (typeof v.msg !== 'string' || typeof v.time !== 'number') return;
      this.records.push({
        msg: v.msg,
        time: v.time,
        arrival,
        ...(typeof v.member === 'string' ? { member: v.member } : {}),
        ...(typeof v.alive === 'number' ? { alive: v.alive } : {}),
        ...(typeof v.id === 'string' ? { id: v.id } : {}),
        ...(typeof v.stalledMs === 'number' ? { stalledMs: v.stalledMs } : {}),
        ...(v.msg === 'stats' ? { gossip: v.gossip as Record<string, number>, cpuUs: v.cpuUs as { user: number; system: number } } : {}),
        ...(KEEP_RAW ? { raw: line } : {}),
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return running(this.proc);
  }

  /** The node's id, from its 'node starting' line. */
  get id(): string | undefined {
    return this.records.find((r) => r.msg === 'node starting')?.id;
  }

  /** Time of 'node starting' (logged once the TCP listener is bound, before any beacon). */
  get startedAt(): number | undefined {
    return this.records.find((r) => r.msg === 'node starting')?.time;
  }

  /** The first time this node counted at least n alive members (itself included). */
  fullAt(n: number): number | undefined {
    return this.records.find((r) => r.alive !== undefined && r.alive >= n && r.msg !== 'member dead')?.time;
  }

  /** Time of the first record with one of msgs about member at or after sinceMs. */
  firstAbout(msgs: readonly string[], member: string, sinceMs: number): number | undefined {
    return this.records.find((r) => r.member === member && r.time >= sinceMs && msgs.includes(r.msg))?.time;
  }

  /** Asks the node for a 'stats' line and waits for it (undefined if none within timeoutMs). */
  async stats(timeoutMs = 2_000): Promise<GvRecord | undefined> {
    const before = this.records.length;
    if (!this.running) return undefined;
    this.proc.kill('SIGUSR2');
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (let i = before; i < this.records.length; i++) if (this.records[i]!.msg === 'stats') return this.records[i];
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }

  between(msg: string, fromMs: number, toMs: number): GvRecord[] {
    return this.records.filter((r) => r.msg === msg && r.time >= fromMs && r.time <= toMs);
  }
}

export function startGv(lab: Lab, hostIndex: number, port: number, dataDir: string): GvNode {
  const n = startNode(lab, hostIndex, { port, dataDir, maxLogLines: 50 });
  return new GvNode(hostIndex, n.proc, dataDir);
}
