import { existsSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { isValidNodeId } from '../core/ids.js';
import { isMulticastGroup } from '../runtime/multicast.js';
import { NODE_DEFAULTS } from '../runtime/node.js';
import type { NodeConfig } from '../runtime/node.js';
import { LOG_LEVELS } from '../runtime/log.js';
import type { LogLevel } from '../runtime/log.js';
import { parseHostPort, parsePort, parsePositiveInt } from './args.js';
import { DEFAULT_CLUSTER_NAME, DEFAULT_MULTICAST, readClusterFile } from './cluster-file.js';
import type { ClusterFile } from './cluster-file.js';
import { UsageError } from './exit.js';

/** Options of `grapevine node`, as parsed from the command line. */
export interface NodeArgs {
  cluster?: string;
  id?: string;
  host?: string;
  port?: string;
  'data-dir'?: string;
  'log-level'?: string;
  mcast?: string;
  'mcast-interface'?: string;
  'mcast-ttl'?: string;
  'cluster-name'?: string;
  seed?: string[];
  'heartbeat-ms'?: string;
  'suspect-ms'?: string;
  'dead-ms'?: string;
  'max-message-bytes'?: string;
  'retain-messages'?: string;
  'retain-days'?: string;
  resp?: string;
  'max-key-bytes'?: string;
  'max-value-bytes'?: string;
  'max-keys'?: string;
  replicas?: string;
}

export const NODE_OPTIONS = {
  cluster: { type: 'string' },
  id: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'data-dir': { type: 'string' },
  'log-level': { type: 'string' },
  mcast: { type: 'string' },
  'mcast-interface': { type: 'string' },
  'mcast-ttl': { type: 'string' },
  'cluster-name': { type: 'string' },
  seed: { type: 'string', multiple: true },
  'heartbeat-ms': { type: 'string' },
  'suspect-ms': { type: 'string' },
  'dead-ms': { type: 'string' },
  'max-message-bytes': { type: 'string' },
  'retain-messages': { type: 'string' },
  'retain-days': { type: 'string' },
  resp: { type: 'string' },
  'max-key-bytes': { type: 'string' },
  'max-value-bytes': { type: 'string' },
  'max-keys': { type: 'string' },
  replicas: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Where a cluster file comes from: --cluster, then $GRAPEVINE_CLUSTER, then ./cluster.json if it exists. */
export function findClusterFile(explicit: string | undefined, required: boolean): ClusterFile | undefined {
  const path = explicit ?? process.env.GRAPEVINE_CLUSTER ?? (existsSync('cluster.json') || required ? 'cluster.json' : undefined);
  return path === undefined ? undefined : readClusterFile(path);
}

/**
 * Turns `grapevine node` options into a frozen NodeConfig. Two ways to say
 * who the node is: `--cluster FILE --id ID` (host and port from the file), or
 * `--host H --port P [--id ID]` with no file at all.
 */
export function buildNodeConfig(args: NodeArgs): { config: NodeConfig; logLevel: LogLevel; clusterFile: ClusterFile | undefined; respPort: number | undefined } {
  const standalone = args.host !== undefined || args.port !== undefined;
  if (standalone && (args.host === undefined || args.port === undefined)) throw new UsageError('--host and --port go together');
  if (args.id !== undefined && !isValidNodeId(args.id)) throw new UsageError(`--id must be 1-64 characters of [A-Za-z0-9_.-], got '${args.id}'`);

  const file = findClusterFile(args.cluster, !standalone);
  const id = args.id;
  let host: string;
  let port: number;
  if (standalone) {
    host = args.host!;
    if (!isIPv4(host)) throw new UsageError(`--host must be an IPv4 address, got '${host}'`);
    port = parsePort(args.port!, '--port');
  } else {
    if (id === undefined) throw new UsageError(`--id is required with a cluster file (${file!.path}); or give --host and --port`);
    const entry = file!.nodes.find((n) => n.id === id);
    if (!entry) throw new UsageError(`${file!.path}: no node with id '${id}' (known: ${file!.nodes.map((n) => n.id).join(', ') || 'none'})`);
    host = entry.host;
    port = entry.port;
  }

  const logLevel = (args['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${args['log-level']}'`);

  let group = file?.multicast.group ?? DEFAULT_MULTICAST.group;
  let mcastPort = file?.multicast.port ?? DEFAULT_MULTICAST.port;
  if (args.mcast !== undefined) {
    const gp = parseHostPort(args.mcast, '--mcast');
    if (!isIPv4(gp.host) || !isMulticastGroup(gp.host)) throw new UsageError(`--mcast group must be an IPv4 multicast address, got '${gp.host}'`);
    group = gp.host;
    mcastPort = gp.port;
  }
  // Multicast leaves only on a named interface: the option, the file, else
  // the node's own address (so a node on 10.77.0.5 beacons there), else loopback.
  const iface = args['mcast-interface'] ?? file?.multicast.interface ?? (host !== '0.0.0.0' ? host : DEFAULT_MULTICAST.interface);
  if (!isIPv4(iface)) throw new UsageError(`--mcast-interface must be a local IPv4 address, got '${iface}'`);
  const ttl = args['mcast-ttl'] !== undefined ? parseIntIn(args['mcast-ttl'], '--mcast-ttl', 0, 255) : (file?.multicast.ttl ?? DEFAULT_MULTICAST.ttl);

  const clusterName = args['cluster-name'] ?? file?.name ?? DEFAULT_CLUSTER_NAME;
  const seeds = (args.seed ?? []).map((s) => parseHostPort(s, '--seed'));

  const m = NODE_DEFAULTS.membership;
  const heartbeatIntervalMs = args['heartbeat-ms'] ? parsePositiveInt(args['heartbeat-ms'], '--heartbeat-ms', 60_000) : m.heartbeatIntervalMs;
  const suspectAfterMs = args['suspect-ms'] ? parsePositiveInt(args['suspect-ms'], '--suspect-ms') : m.suspectAfterMs;
  const deadAfterMs = args['dead-ms'] ? parsePositiveInt(args['dead-ms'], '--dead-ms') : m.deadAfterMs;
  if (deadAfterMs <= suspectAfterMs) throw new UsageError(`--dead-ms (${deadAfterMs}) must be greater than --suspect-ms (${suspectAfterMs})`);
  if (suspectAfterMs < 2 * heartbeatIntervalMs) throw new UsageError(`--suspect-ms (${suspectAfterMs}) must be at least twice --heartbeat-ms (${heartbeatIntervalMs})`);

  const g = NODE_DEFAULTS.gossip;
  const messageBytesMax = args['max-message-bytes'] ? parsePositiveInt(args['max-message-bytes'], '--max-message-bytes', MESSAGE_BYTES_LIMIT) : g.messageBytesMax;
  const retainCount = args['retain-messages'] ? parsePositiveInt(args['retain-messages'], '--retain-messages') : g.retention.retainCount;
  const retainMs = args['retain-days'] ? parsePositiveInt(args['retain-days'], '--retain-days', 36_500) * 86_400_000 : g.retention.retainMs;
  if (standalone && file?.links) throw new UsageError(`${file.path} has links, which name nodes of the file: start this node with --cluster and --id, not --host/--port`);

  const k = NODE_DEFAULTS.kv;
  const keyBytesMax = args['max-key-bytes'] ? parsePositiveInt(args['max-key-bytes'], '--max-key-bytes', 64 * 1024) : k.limits.keyBytesMax;
  const valueBytesMax = args['max-value-bytes'] ? parsePositiveInt(args['max-value-bytes'], '--max-value-bytes', VALUE_BYTES_LIMIT) : k.limits.valueBytesMax;
  const keysMax = args['max-keys'] ? parsePositiveInt(args['max-keys'], '--max-keys', 100_000_000) : k.keysMax;
  const replicas = args.replicas !== undefined ? parsePositiveInt(args.replicas, '--replicas', 1_000) : file?.replicas;
  const respPort = args.resp !== undefined ? parsePort(args.resp, '--resp') : undefined;
  if (respPort !== undefined && respPort === port) throw new UsageError(`--resp ${respPort} is the node's own port; give the Redis protocol a port of its own`);

  const dataDir = args['data-dir'] ?? join('data', id ?? `${host}-${port}`);
  const config: NodeConfig = Object.freeze({
    id,
    host,
    port,
    dataDir,
    clusterName,
    multicast: Object.freeze({ group, port: mcastPort, interface: iface, ttl }),
    seeds: Object.freeze(seeds),
    // A suspect whose port still answers gets the same extra time past --dead-ms as by default.
    membership: Object.freeze({ ...m, heartbeatIntervalMs, suspectAfterMs, deadAfterMs, deadAfterAnsweringMs: deadAfterMs + (m.deadAfterAnsweringMs - m.deadAfterMs) }),
    limits: NODE_DEFAULTS.limits,
    connectionsMax: NODE_DEFAULTS.connectionsMax,
    inboundBudgetBytes: NODE_DEFAULTS.inboundBudgetBytes,
    helloTimeoutMs: NODE_DEFAULTS.helloTimeoutMs,
    dialTimeoutMs: NODE_DEFAULTS.dialTimeoutMs,
    staticLinks: file?.links,
    clusterNodes: file?.nodes ?? [],
    gossip: Object.freeze({ ...g, messageBytesMax, retention: Object.freeze({ retainCount, retainMs }) }),
    kv: Object.freeze({ ...k, keysMax, replicas, limits: Object.freeze({ keyBytesMax, valueBytesMax }) }),
  });
  return { config, logLevel, clusterFile: file, respPort };
}

/** A message must fit in one frame with room for its envelope. */
const MESSAGE_BYTES_LIMIT = 1024 * 1024;
/** A value must fit in one frame (4 MiB) with its key and envelope. */
const VALUE_BYTES_LIMIT = 3 * 1024 * 1024;

function parseIntIn(value: string, option: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new UsageError(`${option} must be an integer from ${min} to ${max}, got '${value}'`);
  return Number(value);
}
