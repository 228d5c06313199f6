/**
 * Exit codes and user-facing failures of every binary (DESIGN.md section 1):
 * 0 success, 1 operational failure, 2 bad usage or configuration.
 * A UsageError or OperationalError is printed as one line on stderr, never a stack.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {
  override name = 'UsageError';
  readonly exitCode = EXIT_USAGE;
}

export class OperationalError extends Error {
  override name = 'OperationalError';
  readonly exitCode = EXIT_FAILURE;
}

/** Runs a CLI entry point, mapping known errors to one stderr line and an exit code. */
export async function runMain(program: string, main: () => Promise<number | void>): Promise<void> {
  try {
    const code = await main();
    if (typeof code === 'number') process.exitCode = code;
  } catch (err) {
    if (err instanceof UsageError || err instanceof OperationalError) {
      process.stderr.write(`${program}: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${program}: internal error: ${message}\n`);
    if (process.env.GRAPEVINE_DEBUG) process.stderr.write(`${err instanceof Error ? err.stack : ''}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}
