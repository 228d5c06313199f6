import { parseCli, parsePositiveInt } from './args.js';
import { OperationalError, UsageError } from './exit.js';
import { withClient } from './cmd-kv.js';
import { TARGET_OPTIONS } from './target.js';

const HELP = `Usage: grapevine lock (--id N [--cluster FILE] | --addr HOST:PORT) SUBCOMMAND

  acquire KEY [--ttl MS] [--wait MS]   take the lock; prints its fencing token
  release KEY TOKEN                    give it back

A lock is a lease held by a majority of the cluster's nodes: it ends by
itself after --ttl (default 10000 ms, at most 600000) unless released, and
its token is greater than every token issued before for KEY, so a resource
can refuse a holder whose lease ran out (pass it the token). --wait (default
0: try once) queues fairly behind earlier contenders for up to MS.
Exit status: 0 acquired / released; 1 not acquired within the wait, not
held with that token, node unreachable, no quorum; 2 bad usage (key over
1 KiB, ttl or wait out of range).
`;

const LOCK_OPTIONS = { ...TARGET_OPTIONS, ttl: { type: 'string' }, wait: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;
const TTL_MAX_MS = 600_000;
/** The lock service's key limit (src/core/locks), checked here too so it is bad usage even when the node is down. */
const LOCK_KEY_BYTES_MAX = 1_024;
const USAGE_CODES = new Set(['bad_key', 'bad_ttl', 'bad_wait']);

export async function lockMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, LOCK_OPTIONS, true);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [sub, ...rest] = positionals;
  switch (sub) {
    case 'acquire': {
      if (rest.length !== 1) throw new UsageError('lock acquire takes one argument, the key (see grapevine lock --help)');
      const key = rest[0]!;
      if (key.length === 0) throw new UsageError('the key is empty');
      if (Buffer.byteLength(key) > LOCK_KEY_BYTES_MAX) throw new UsageError(`the key is ${Buffer.byteLength(key)} bytes; the limit is ${LOCK_KEY_BYTES_MAX}`);
      const ttlMs = values.ttl !== undefined ? parsePositiveInt(values.ttl, '--ttl', TTL_MAX_MS) : 0;
      const waitMs = values.wait !== undefined ? parseNonNegativeInt(values.wait, '--wait', TTL_MAX_MS) : 0;
      return withLockClient(values, async (c, label) => {
        const r = await c.lockAcquire(key, { ttlMs, waitMs });
        if (!r.acquired) throw new OperationalError(`lock '${key}' not acquired within ${waitMs} ms at ${label} (held by another)`);
        process.stdout.write(`${r.token}\n`);
        return 0;
      });
    }
    case 'release': {
      if (values.ttl !== undefined || values.wait !== undefined) throw new UsageError('--ttl and --wait go with lock acquire');
      if (rest.length !== 2) throw new UsageError('lock release takes two arguments, the key and the token');
      const [key, tokenText] = rest as [string, string];
      if (!/^[1-9]\d{0,19}$/.test(tokenText) || BigInt(tokenText) > 2n ** 64n - 1n) throw new UsageError(`'${tokenText}' is not a token (a positive whole number, as lock acquire printed it)`);
      return withLockClient(values, async (c) => {
        if (!(await c.lockRelease(key, BigInt(tokenText)))) throw new OperationalError(`lock '${key}' is not held with token ${tokenText} (expired, released, or another's)`);
        return 0;
      });
    }
    default:
      throw new UsageError(sub === undefined ? 'lock needs a subcommand: acquire or release' : `unknown lock subcommand '${sub}'`);
  }
}

function parseNonNegativeInt(value: string, option: string, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) > max) throw new UsageError(`${option} must be a whole number of ms from 0 to ${max}, got '${value}'`);
  return Number(value);
}

/** withClient, with the lock service's usage errors (bad key, ttl, wait) as exit 2. */
function withLockClient(values: Parameters<typeof withClient>[0], fn: Parameters<typeof withClient>[1]): Promise<number> {
  return withClient(values, fn, USAGE_CODES);
}
