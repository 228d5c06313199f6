/** Child processes and ports of the single-machine benches (everything on 127.0.0.1). */
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { running } from './lines.js';

const started = new Set<ChildProcess>();

/** Remembers a child this bench started, so killStarted() can end it on any exit path. */
export function track(proc: ChildProcess): ChildProcess {
  started.add(proc);
  proc.once('exit', () => started.delete(proc));
  return proc;
}

/** SIGKILL to every tracked child still running (each by its own PID). */
export function killStarted(): void {
  for (const proc of started) if (running(proc)) proc.kill('SIGKILL');
}

/** A TCP port free on 127.0.0.1 now (the kernel's pick; released before it returns). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => (port > 0 ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

/**
 * A child process whose stdout lines can be awaited one by one (the
 * participant's answers, a receiver's "ok" lines); stderr is kept (last lines)
 * for error messages.
 */
export class LineProcess {
  readonly proc: ChildProcess;
  private readonly queue: string[] = [];
  private waiter: ((line: string | undefined) => void) | undefined;
  private exited = false;
  readonly stderrTail: string[] = [];

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    options: SpawnOptions = {},
  ) {
    this.proc = track(spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options }));
    createInterface({ input: this.proc.stdout!, crlfDelay: Infinity }).on('line', (line) => this.push(line));
    createInterface({ input: this.proc.stderr!, crlfDelay: Infinity }).on('line', (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 20) this.stderrTail.shift();
    });
    this.proc.stdin!.on('error', () => undefined);
    this.proc.on('exit', () => {
      this.exited = true;
      this.waiter?.(undefined);
      this.waiter = undefined;
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return running(this.proc);
  }

  write(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  /** Closes the child's standard input (end of input). */
  endInput(): void {
    this.proc.stdin!.end();
  }

  /** The next stdout line; rejects after timeoutMs or when the process exits. */
  nextLine(timeoutMs: number): Promise<string> {
    const ready = this.queue.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.exited) return Promise.reject(new Error(`${this.name} exited (${this.stderrTail.slice(-3).join(' | ')})`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`${this.name}: no answer within ${timeoutMs} ms (${this.stderrTail.slice(-3).join(' | ')})`));
      }, timeoutMs);
      this.waiter = (line) => {
        clearTimeout(timer);
        if (line === undefined) reject(new Error(`${this.name} exited (${this.stderrTail.slice(-3).join(' | ')})`));
        else resolve(line);
      };
    });
  }

  /** Writes a command and returns its answer line; throws unless it starts with 'ok'. */
  async command(line: string, timeoutMs = 30_000): Promise<string> {
    this.write(line);
    const answer = await this.nextLine(timeoutMs);
    if (!answer.startsWith('ok')) throw new Error(`${this.name}: '${line}' → ${answer}`);
    return answer;
  }

  /** SIGKILL to this child (by its PID) and wait for it to be gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 5_000): Promise<void> {
    await stopChild(this.proc, signal, timeoutMs);
  }

  private push(line: string): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(line);
    } else {
      this.queue.push(line);
    }
  }
}

/** Sends `signal` to the child (by its PID), escalates to SIGKILL after timeoutMs, resolves once it exited. */
export function stopChild(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000): Promise<void> {
  if (!running(proc)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (running(proc)) proc.kill('SIGKILL');
    }, timeoutMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill(signal);
  });
}
