import { serveClients } from '../api/server.js';
import { DataDirError } from '../runtime/identity.js';
import { createLogger } from '../runtime/log.js';
import { GrapevineNode } from '../runtime/node.js';
import { parseCli } from './args.js';
import { OperationalError, UsageError } from './exit.js';
import { NODE_OPTIONS, buildNodeConfig } from './node-config.js';

const HELP = `Usage: grapevine node --cluster FILE --id ID [options]
       grapevine node --host IP --port PORT [--id ID] [options]

Runs one node in the foreground until SIGINT/SIGTERM. It finds its peers by
multicast beacons (and --seed peers over TCP), keeps the member table, and
connects to its two ring neighbours. Logs are JSON lines on stderr.

Options:
  --cluster FILE          cluster file (default $GRAPEVINE_CLUSTER or ./cluster.json)
  --id ID                 node id; with --host/--port optional (made up once and
                          kept in the data dir)
  --host IP --port PORT   listen address, without a cluster file
  --data-dir DIR          identity and state (default ./data/ID, or ./data/HOST-PORT)
  --cluster-name NAME     cluster name (default: the file's name, or grapevine)
  --mcast GROUP:PORT      multicast group (default 239.255.77.77:7777)
  --mcast-interface IP    interface for multicast (default: the file's, else --host)
  --mcast-ttl N           multicast TTL (default 1)
  --seed HOST:PORT        a peer beyond multicast reach (repeatable)
  --heartbeat-ms MS       beacon interval (default 200)
  --suspect-ms MS         silence before suspect (default 1000)
  --dead-ms MS            silence before dead (default 1600; 1000 more while its port answers)
  --max-message-bytes N   largest gossip message (default 65536, at most 1 MiB)
  --retain-messages N     gossip messages kept (default 1000000; oldest go first)
  --retain-days D         gossip messages older than this are purged (default 30)
  --resp PORT             also speak the Redis protocol (RESP2) on PORT, on the
                          node's host, for the replicated cache
  --max-key-bytes N       largest cache key (default 8192)
  --max-value-bytes N     largest cache value (default 1048576, at most 3 MiB)
  --replicas R            copies of each cache key, placed by consistent hashing
                          (default: the cluster file's "replicas", else every
                          node holds every key)
  --max-keys N            keys (incl. deleted ones not yet purged) a node holds
                          before it refuses new keys (default 2000000)
  --log-level LEVEL       trace|debug|info|warn|error|fatal|silent (default info)

With a cluster file that has "links", the node connects to exactly its
linked nodes (the static gossip overlay); without, to its ring neighbours
plus one chord (degree 3). Gossip messages are kept in DATA_DIR/gossip.db,
the cache in DATA_DIR/cache.db.
`;

export async function nodeMain(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, NODE_OPTIONS);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const { config, logLevel, respPort } = buildNodeConfig(values);
  const log = createLogger(logLevel, { node: config.id ?? `${config.host}:${config.port}` });
  const node = new GrapevineNode(config, log);
  serveClients(node);
  // SIGUSR2: one 'stats' line with the counters, for a bench that diffs them per phase (no port, no timer).
  // Installed before the start: the signal's default action would end the process.
  const dumpStats = (): void => {
    try {
      log.info({ gossip: { ...node.status().gossip, ...node.gossip.storeWork() }, cpuUs: process.cpuUsage() }, 'stats');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'no stats yet');
    }
  };
  process.on('SIGUSR2', dumpStats);
  try {
    await node.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (err instanceof DataDirError) throw new OperationalError(err.message);
    if (e.code === 'EADDRINUSE') throw new OperationalError(`${config.host}:${config.port} is already in use`);
    if (e.code === 'EADDRNOTAVAIL') throw new UsageError(`${config.host} is not an address of this machine`);
    throw err;
  }
  let resp: { close(): Promise<void> } | undefined;
  if (respPort !== undefined) {
    try {
      // Loaded only when asked for: a node without --resp does not pay for it.
      const { startRespServer } = await import('../api/resp/server.js');
      resp = await startRespServer({ host: config.host, port: respPort, kv: node.kv, log: log.child({ component: 'resp' }) });
    } catch (err) {
      await node.stop();
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') throw new OperationalError(`--resp ${config.host}:${respPort} is already in use`);
      throw err;
    }
  }
  log.info({ id: node.id, addr: `${config.host}:${config.port}`, dataDir: config.dataDir, resp: respPort }, 'node up');
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping');
      void (resp?.close() ?? Promise.resolve()).then(() => node.stop()).then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  process.off('SIGUSR2', dumpStats);
  return 0;
}
