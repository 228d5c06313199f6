import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Structured JSON logs on stderr (stdout belongs to command output). */
export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.epochTime }, pino.destination({ fd: 2, sync: true }));
}

/**
 * Logs an offence at most once per key (peer + kind) per interval, counting
 * the ones it held back, so a peer spraying garbage cannot flood the log.
 * The key table is bounded; the oldest key is evicted first.
 */
export class RateLimitedLog {
  private readonly seen = new Map<string, { lastLoggedMs: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
    private readonly keysMax = 1_024,
  ) {}

  warn(key: string, nowMs: number, fields: Record<string, unknown>, message: string): void {
    const entry = this.seen.get(key);
    if (entry && nowMs - entry.lastLoggedMs < this.intervalMs) {
      entry.suppressed += 1;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.seen.delete(key);
    if (this.seen.size >= this.keysMax) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, { lastLoggedMs: nowMs, suppressed: 0 });
    this.log.warn({ ...fields, offenceKey: key, suppressedSinceLast: suppressed }, message);
  }
}
