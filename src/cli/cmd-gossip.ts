import { parseCli } from './args.js';
import { UsageError } from './exit.js';
import { runGossipOp } from './gossip-ops.js';
import { TARGET_OPTIONS } from './target.js';

const HELP = `Usage: grapevine gossip (--id N [--cluster FILE] | --addr HOST:PORT) SUBCOMMAND

  submit TEXT    submit TEXT at the node; prints the new message id
  get ID         print the text of message ID (exit 1 if the node lacks it)
  list           print every message the node holds, one per line
  watch          print "ID<TAB>TEXT" for each new message until Ctrl-C

The same as gclient --message / --msgID / --list / --watch.
Exit status: 0 success; 1 node unreachable or message not found; 2 bad usage.
`;

export async function gossipMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { ...TARGET_OPTIONS, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [sub, ...rest] = positionals;
  const arity = (n: number) => {
    if (rest.length !== n) throw new UsageError(`gossip ${sub} takes ${n === 0 ? 'no argument' : 'one argument'} (see grapevine gossip --help)`);
  };
  switch (sub) {
    case 'submit':
      arity(1);
      return runGossipOp({ kind: 'submit', text: rest[0]! }, values);
    case 'get':
      arity(1);
      return runGossipOp({ kind: 'get', id: rest[0]! }, values);
    case 'list':
      arity(0);
      return runGossipOp({ kind: 'list' }, values);
    case 'watch':
      arity(0);
      return runGossipOp({ kind: 'watch' }, values);
    default:
      throw new UsageError(sub === undefined ? 'gossip needs a subcommand: submit, get, list or watch' : `unknown gossip subcommand '${sub}'`);
  }
}
