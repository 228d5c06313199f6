/** Line-by-line reading of a child's output, each line stamped with its arrival time (epoch ms). */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type LineHandler = (line: string, arrivalMs: number) => void;

export function onLines(proc: ChildProcess, handler: LineHandler): void {
  for (const stream of [proc.stdout, proc.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => handler(line, Date.now()));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls cond every intervalMs; resolves true as soon as it holds, false after timeoutMs. */
export async function waitFor(cond: () => boolean, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

export function running(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}
