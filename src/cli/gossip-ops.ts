import { ClientError, GrapevineClient } from '../api/client.js';
import { isMessageId } from '../core/gossip/message.js';
import { parsePositiveInt } from './args.js';
import { OperationalError, UsageError } from './exit.js';
import { resolveTarget } from './target.js';

/**
 * The gossip operations behind both `gclient` (seed 003's client) and
 * `grapevine gossip`: submit prints the new id, get prints the text, list
 * prints one message per line (a newline inside a message as \n, a backslash
 * as \\, so each message stays one line), watch prints new ones as they come.
 */
export type GossipOp = { kind: 'submit'; text: string } | { kind: 'get'; id: string } | { kind: 'list' } | { kind: 'watch' };

export interface TargetValues {
  id?: string;
  addr?: string;
  cluster?: string;
  'timeout-ms'?: string;
}

export async function runGossipOp(op: GossipOp, values: TargetValues): Promise<number> {
  if (op.kind === 'submit' && op.text.length === 0) throw new UsageError('the message is empty');
  if (op.kind === 'get' && !isMessageId(op.id)) throw new UsageError(`'${op.id}' is not a message id (11 characters of [0-9A-Za-z])`);
  const target = resolveTarget(values);
  const timeoutMs = values['timeout-ms'] ? parsePositiveInt(values['timeout-ms'], '--timeout-ms', 600_000) : 5_000;
  let client: GrapevineClient | undefined;
  try {
    client = await GrapevineClient.connect(target.host, target.port, { timeoutMs });
    switch (op.kind) {
      case 'submit':
        process.stdout.write(`${await client.submit(op.text)}\n`);
        return 0;
      case 'get': {
        const m = await client.get(op.id);
        if (!m) throw new OperationalError(`${target.label} has no message ${op.id}`);
        process.stdout.write(`${m.text}\n`);
        return 0;
      }
      case 'list':
        for await (const m of client.list()) {
          if (!process.stdout.write(`${escapeLine(m.text)}\n`)) await new Promise((r) => process.stdout.once('drain', r));
        }
        return 0;
      case 'watch': {
        // Until Ctrl-C / SIGTERM (exit 0), or until the node goes away (exit 1, one line).
        const lost = await new Promise<ClientError | undefined>((resolve, reject) => {
          process.once('SIGINT', () => resolve(undefined));
          process.once('SIGTERM', () => resolve(undefined));
          client!.watch((m) => process.stdout.write(`${m.id}\t${escapeLine(m.text)}\n`), resolve).catch(reject);
        });
        if (lost) throw lost;
        return 0;
      }
    }
    return 0;
  } catch (err) {
    if (err instanceof ClientError) {
      if (err.code === 'empty' || err.code === 'too_large') throw new UsageError(err.message);
      throw new OperationalError(err.message);
    }
    throw err;
  } finally {
    client?.close();
  }
}

export function escapeLine(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
