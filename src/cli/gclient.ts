#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseCli } from './args.js';
import { UsageError, runMain } from './exit.js';
import { runGossipOp } from './gossip-ops.js';
import type { GossipOp } from './gossip-ops.js';
import { TARGET_OPTIONS } from './target.js';

const HELP = `Usage: gclient (--id N [--cluster FILE] | --addr HOST:PORT) ACTION

Seed 003's gossip client. ACTION is one of:
  --message TEXT   submit TEXT at the node; prints the new message id
  --msgID ID       print the text of message ID held by the node
  --list           print every message the node holds, one per line (a newline
                   inside a message is printed as \\n, a backslash as \\\\)
  --watch          print "ID<TAB>TEXT" for each message the node stores from now
                   on, until Ctrl-C

The node is --id N from the cluster file (--cluster, $GRAPEVINE_CLUSTER or
./cluster.json) or --addr HOST:PORT. --timeout-ms MS bounds each request
(default 5000).

Exit status: 0 success; 1 node unreachable or message not found; 2 bad usage:
unknown node id, empty or oversized message, malformed message id.
`;

export async function gclientMain(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, {
    ...TARGET_OPTIONS,
    message: { type: 'string' },
    msgID: { type: 'string' },
    list: { type: 'boolean' },
    watch: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const ops: GossipOp[] = [];
  if (values.message !== undefined) ops.push({ kind: 'submit', text: values.message });
  if (values.msgID !== undefined) ops.push({ kind: 'get', id: values.msgID });
  if (values.list) ops.push({ kind: 'list' });
  if (values.watch) ops.push({ kind: 'watch' });
  if (ops.length !== 1) throw new UsageError('give exactly one of --message TEXT, --msgID ID, --list, --watch (see --help)');
  return runGossipOp(ops[0]!, values);
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runMain('gclient', () => gclientMain(process.argv.slice(2)));
}
