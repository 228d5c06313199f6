/**
 * Running the system tools the lab is built from (ip, iptables, ss), async
 * for tests and sync for exit-time cleanup, with errors that carry stderr.
 */
import { execFile, execFileSync } from 'node:child_process';

export interface RunOptions {
  readonly timeoutMs?: number;
  readonly input?: string;
}

const DEFAULT_TIMEOUT_MS = 15_000;
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    const why = stderr.trim() || stdout.trim() || 'no output';
    super(`\`${argv.join(' ')}\` failed (exit ${exitCode ?? 'signal/timeout'}): ${why}`);
    this.name = 'CommandError';
  }
}

/** Runs argv[0] with the rest as arguments (no shell) and resolves with stdout. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL', encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const code = typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
          const timedOut = (err as { killed?: boolean }).killed ? ` [killed after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms]` : '';
          reject(new CommandError(argv, code, `${stderr}${timedOut}`, stdout));
        } else {
          resolve(stdout);
        }
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Synchronous variant for process-exit cleanup, where nothing async can run. */
export function runSync(argv: readonly string[], timeoutMs = 5_000): string {
  const [file, ...args] = argv;
  if (!file) throw new Error('runSync: empty argv');
  try {
    return execFileSync(file, args, { timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { status?: number | null; stderr?: string; stdout?: string };
    throw new CommandError(argv, e.status ?? null, e.stderr ?? String(err), e.stdout ?? '');
  }
}

/** Runs fn over items with at most `limit` in flight (namespace setup is parallel but bounded). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
