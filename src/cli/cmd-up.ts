import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startRespServer } from '../api/resp/server.js';
import type { RespServer } from '../api/resp/server.js';
import { serveClients } from '../api/server.js';
import { DataDirError } from '../runtime/identity.js';
import { createLogger } from '../runtime/log.js';
import type { LogLevel } from '../runtime/log.js';
import { GrapevineNode } from '../runtime/node.js';
import { parseCli, parsePort, parsePositiveInt } from './args.js';
import { OperationalError, UsageError } from './exit.js';
import { DEFAULT_MULTICAST } from './cluster-file.js';
import { buildNodeConfig } from './node-config.js';

const HELP = `Usage: grapevine up [--nodes N] [--base-port PORT] [--resp-base-port PORT] [--dir DIR] [--log-level LEVEL]

Starts N nodes (default 5) on 127.0.0.1, ports PORT..PORT+N-1 (default 7001),
in this one process, in the foreground, each also speaking the Redis protocol
for the cache on RESP..RESP+N-1 (default 6381; 0: none). Writes their cluster
file to DIR/cluster.json (default ./data/up), keeps each node's data in
DIR/ID, prints the members once they have found each other and how to talk
to them, and stops them all on Ctrl-C. Logs (default level warn) go to stderr.
`;

const UP_NODES_MAX = 64;

export async function upMain(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, {
    nodes: { type: 'string', short: 'n' },
    'base-port': { type: 'string' },
    'resp-base-port': { type: 'string' },
    dir: { type: 'string' },
    'log-level': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const count = values.nodes ? parsePositiveInt(values.nodes, '--nodes', UP_NODES_MAX) : 5;
  const basePort = values['base-port'] ? parsePort(values['base-port'], '--base-port') : 7001;
  if (basePort + count - 1 > 65_535) throw new UsageError(`--base-port ${basePort} leaves no room for ${count} nodes`);
  const respBase = values['resp-base-port'] === '0' ? 0 : values['resp-base-port'] ? parsePort(values['resp-base-port'], '--resp-base-port') : 6381;
  if (respBase + count - 1 > 65_535) throw new UsageError(`--resp-base-port ${respBase} leaves no room for ${count} nodes`);
  if (respBase !== 0 && respBase < basePort + count && basePort < respBase + count) throw new UsageError(`--resp-base-port ${respBase} overlaps the nodes' ports ${basePort}-${basePort + count - 1}`);
  const dir = resolve(values.dir ?? join('data', 'up'));
  mkdirSync(dir, { recursive: true });
  const clusterPath = join(dir, 'cluster.json');
  const cluster = {
    name: 'demo',
    multicast: DEFAULT_MULTICAST,
    nodes: Array.from({ length: count }, (_, i) => ({ id: String(i + 1), host: '127.0.0.1', port: basePort + i })),
  };
  writeFileSync(clusterPath, `${JSON.stringify(cluster, null, 2)}\n`);

  const nodes: GrapevineNode[] = [];
  const resps: RespServer[] = [];
  const stopAll = async () => {
    await Promise.all(resps.map((r) => r.close()));
    await Promise.all(nodes.map((n) => n.stop()));
  };
  for (const n of cluster.nodes) {
    const { config, logLevel } = buildNodeConfig({ cluster: clusterPath, id: n.id, 'data-dir': join(dir, n.id), 'log-level': values['log-level'] ?? 'warn' });
    const node = new GrapevineNode(config, createLogger(logLevel as LogLevel, { node: n.id }));
    serveClients(node);
    try {
      await node.start();
    } catch (err) {
      await stopAll();
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') throw new OperationalError(`127.0.0.1:${n.port} is already in use (another grapevine up? choose --base-port)`);
      if (err instanceof DataDirError) throw new OperationalError(err.message);
      throw err;
    }
    nodes.push(node);
    if (respBase !== 0) {
      const respPort = respBase + nodes.length - 1;
      try {
        resps.push(await startRespServer({ host: '127.0.0.1', port: respPort, kv: node.kv, log: createLogger(logLevel as LogLevel, { node: n.id, component: 'resp' }) }));
      } catch (err) {
        await stopAll();
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new OperationalError(`127.0.0.1:${respPort} (Redis protocol) is already in use (choose --resp-base-port, or 0 for none)`);
        throw err;
      }
    }
  }

  const converged = await waitForFullMembership(nodes, count, 5_000);
  const first = nodes[0]!.status();
  const out = process.stdout;
  out.write(`grapevine: ${count} nodes up in cluster '${cluster.name}' on 127.0.0.1 (multicast ${DEFAULT_MULTICAST.group}:${DEFAULT_MULTICAST.port} on 127.0.0.1)${converged ? '' : ' — membership not yet complete'}\n\n`);
  out.write('ID  ADDRESS          STATE   NEIGHBOURS\n');
  for (const node of nodes) {
    const s = node.status();
    const me = s.members.find((m) => m.id === s.id)!;
    out.write(`${s.id.padEnd(3)} ${`${me.host}:${me.port}`.padEnd(16)} ${me.state.padEnd(7)} ${s.neighbours.join(', ')}\n`);
  }
  const rel = clusterPath.startsWith(process.cwd()) ? clusterPath.slice(process.cwd().length + 1) : clusterPath;
  out.write(`\n${first.members.filter((m) => m.state === 'alive').length} members alive as seen by node ${first.id}. Talk to them from another terminal:\n`);
  out.write(`  npx grapevine status --cluster ${rel} --id 1\n`);
  out.write(`  npx grapevine status --addr 127.0.0.1:${basePort} --json\n`);
  out.write(`  npx gclient --cluster ${rel} --id 1 --message hello      (prints the message id)\n`);
  out.write(`  npx gclient --cluster ${rel} --id ${count} --list            (every node has it)\n`);
  out.write(`  npx grapevine kv --cluster ${rel} --id 2 put greeting hi   then   npx grapevine kv --cluster ${rel} --id 4 get greeting\n`);
  if (respBase !== 0) out.write(`  redis-cli -p ${respBase} SET k v   then   redis-cli -p ${respBase + count - 1} GET k      (the Redis protocol, ports ${respBase}-${respBase + count - 1})\n`);
  out.write(`  npx grapevine lock --cluster ${rel} --id 1 acquire job --ttl 30000   (prints a fencing token)\n`);
  out.write(`  npx grapevine node --host 127.0.0.1 --port ${basePort + count} --cluster-name demo --data-dir ${rel.replace(/cluster\.json$/, String(count + 1))}   (one more node joins by multicast)\n`);
  out.write('Press Ctrl-C to stop them all.\n');

  await new Promise<void>((resolveStop) => {
    const stop = () => {
      out.write('\nstopping...\n');
      void stopAll().then(() => resolveStop(), () => resolveStop());
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

async function waitForFullMembership(nodes: GrapevineNode[], count: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (nodes.every((n) => n.status().members.filter((m) => m.state === 'alive').length === count)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
