import { ClientError, GrapevineClient } from '../api/client.js';
import { parseCli, parsePositiveInt } from './args.js';
import { OperationalError, UsageError } from './exit.js';
import { TARGET_OPTIONS, resolveTarget } from './target.js';

const HELP = `Usage: grapevine kv (--id N [--cluster FILE] | --addr HOST:PORT) SUBCOMMAND

  put KEY VALUE [--ttl MS]   store VALUE under KEY (replicated to every node)
  get KEY                    print the value of KEY (exit 1 when absent)
  del KEY...                 delete keys; prints how many existed
  list [--match GLOB]        print every key, one "KEY<TAB>VALUE" per line

Keys and values are UTF-8 text here (any bytes through the client library or
the Redis port). In list output a backslash, newline or tab inside a key or
value is written as \\\\, \\n or \\t, so each pair stays one line.
Exit status: 0 success; 1 node unreachable, key absent, or the node refused
(full, busy); 2 bad usage (also: empty or oversized key or value).
`;

const KV_OPTIONS = { ...TARGET_OPTIONS, ttl: { type: 'string' }, match: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

export async function kvMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, KV_OPTIONS, true);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [sub, ...rest] = positionals;
  const arity = (n: number) => {
    if (rest.length !== n) throw new UsageError(`kv ${sub} takes ${n} argument${n === 1 ? '' : 's'} (see grapevine kv --help)`);
  };
  const only = (allowed: 'ttl' | 'match' | undefined) => {
    if (values.ttl !== undefined && allowed !== 'ttl') throw new UsageError(`--ttl goes with kv put only`);
    if (values.match !== undefined && allowed !== 'match') throw new UsageError(`--match goes with kv list only`);
  };
  switch (sub) {
    case 'put': {
      arity(2);
      only('ttl');
      if (rest[0]!.length === 0) throw new UsageError('the key is empty');
      const ttlMs = values.ttl !== undefined ? parsePositiveInt(values.ttl, '--ttl', 365 * 86_400_000) : 0;
      return withClient(values, async (c) => {
        await c.kvPut(rest[0]!, rest[1]!, { ttlMs });
        return 0;
      });
    }
    case 'get':
      arity(1);
      only(undefined);
      if (rest[0]!.length === 0) throw new UsageError('the key is empty');
      return withClient(values, async (c, label) => {
        const v = await c.kvGet(rest[0]!);
        if (v === undefined) throw new OperationalError(`${label} has no key '${rest[0]}'`);
        process.stdout.write(`${Buffer.from(v).toString('utf8')}\n`);
        return 0;
      });
    case 'del':
      if (rest.length === 0) throw new UsageError('kv del needs at least one key');
      only(undefined);
      return withClient(values, async (c) => {
        process.stdout.write(`${await c.kvDel(...rest)}\n`);
        return 0;
      });
    case 'list':
      arity(0);
      only('match');
      return withClient(values, async (c) => {
        for await (const { key, value } of c.kvList({ pattern: values.match })) {
          const line = `${escapeField(Buffer.from(key).toString('utf8'))}\t${escapeField(Buffer.from(value).toString('utf8'))}\n`;
          if (!process.stdout.write(line)) await new Promise((r) => process.stdout.once('drain', r));
        }
        return 0;
      });
    default:
      throw new UsageError(sub === undefined ? 'kv needs a subcommand: put, get, del or list' : `unknown kv subcommand '${sub}'`);
  }
}

/** Error codes of the node that mean the request itself was bad (exit 2). */
const KV_USAGE_CODES: ReadonlySet<string> = new Set(['empty_key', 'too_large']);

function escapeField(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
}

/** Connects to the chosen node, runs `fn`, maps the client's errors to exit codes. */
export async function withClient(
  values: { id?: string; addr?: string; cluster?: string; 'timeout-ms'?: string },
  fn: (c: GrapevineClient, label: string) => Promise<number>,
  usageCodes: ReadonlySet<string> = KV_USAGE_CODES,
): Promise<number> {
  const target = resolveTarget(values);
  const timeoutMs = values['timeout-ms'] ? parsePositiveInt(values['timeout-ms'], '--timeout-ms', 600_000) : 5_000;
  let client: GrapevineClient | undefined;
  try {
    client = await GrapevineClient.connect(target.host, target.port, { timeoutMs });
    return await fn(client, target.label);
  } catch (err) {
    if (err instanceof ClientError) {
      if (usageCodes.has(err.code)) throw new UsageError(err.message);
      throw new OperationalError(err.message);
    }
    throw err;
  } finally {
    client?.close();
  }
}
