#!/usr/bin/env node
import { EXIT_USAGE, UsageError, runMain } from './exit.js';
// Subcommands load lazily: `grapevine status` should not pay for the node's modules.

const HELP = `Usage: grapevine COMMAND [options]   (grapevine COMMAND --help for more)

Commands:
  node         run one cluster node (multicast discovery, membership, ring)
  up           start a demo cluster of N nodes on 127.0.0.1 in the foreground
  status       show a node's member table and ring neighbours
  kv           replicated cache: put, get, del, list
  lock         distributed locks: acquire (prints a fencing token), release
  gossip       gossip messaging: submit, get, list, watch (as gclient)
  coordinator  persistent asynchronous multicast coordinator (as the coordinator binary)
  participant  persistent asynchronous multicast participant (as the participant binary)
  mserver      print every line multicast to a group
  mclient      multicast lines to a group

Exit status: 0 success, 1 operational failure, 2 bad usage or configuration.
`;


export async function grapevineMain(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
      process.stderr.write(HELP);
      return EXIT_USAGE;
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return 0;
    case 'node':
      return (await import('./cmd-node.js')).nodeMain(rest);
    case 'status':
      return (await import('./cmd-status.js')).statusMain(rest);
    case 'up':
      return (await import('./cmd-up.js')).upMain(rest);
    case 'gossip':
      return (await import('./cmd-gossip.js')).gossipMain(rest);
    case 'lock':
      return (await import('./cmd-lock.js')).lockMain(rest);
    case 'kv':
      return (await import('./cmd-kv.js')).kvMain(rest);
    case 'coordinator':
      return (await import('./coordinator.js')).coordinatorMain(rest);
    case 'participant':
      return (await import('./participant.js')).participantMain(rest);
    case 'mserver':
      return (await import('./mserver.js')).mserverMain(rest);
    case 'mclient':
      return (await import('./mclient.js')).mclientMain(rest);
    default:
      throw new UsageError(`unknown command '${command}' (see grapevine --help)`);
  }
}

await runMain('grapevine', () => grapevineMain(process.argv.slice(2)));
