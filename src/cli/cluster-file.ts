import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { isValidClusterName, isValidNodeId } from '../core/ids.js';
import { isMulticastGroup } from '../runtime/multicast.js';
import { UsageError } from './exit.js';

/**
 * The cluster file of DESIGN.md section 1, validated once into a frozen
 * object. Every problem is a UsageError naming the file and the field, e.g.
 * "cluster.json: nodes[2].port must be an integer from 1 to 65535".
 */
export interface ClusterNode {
  readonly id: string;
  readonly host: string;
  readonly port: number;
}

export interface ClusterFile {
  readonly path: string;
  readonly name: string;
  readonly multicast: {
    readonly group: string;
    readonly port: number;
    /** Undefined when the file does not name one: each node then uses its own host. */
    readonly interface: string | undefined;
    readonly ttl: number;
  };
  readonly nodes: readonly ClusterNode[];
  readonly links: readonly (readonly [string, string])[] | undefined;
  /** Copies of each cache key (consistent hashing); undefined: every node holds every key. */
  readonly replicas: number | undefined;
}

export const DEFAULT_CLUSTER_NAME = 'grapevine';
export const DEFAULT_MULTICAST = Object.freeze({ group: '239.255.77.77', port: 7777, interface: '127.0.0.1', ttl: 1 });
const CLUSTER_NODES_MAX = 4_096;

export function readClusterFile(path: string): ClusterFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${path}: cannot read cluster file (${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)})`);
  }
  return parseClusterFile(text, path);
}

export function parseClusterFile(text: string, path: string): ClusterFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${path}: not valid JSON: ${jsonErrorWhere(text, (err as Error).message)}`);
  }
  const fail = (what: string): never => {
    throw new UsageError(`${path}: ${what}`);
  };
  if (!isObject(raw)) return fail('the top level must be a JSON object');
  checkKeys(raw, ['name', 'multicast', 'nodes', 'links', 'replicas'], '', fail);

  const name = raw.name === undefined ? DEFAULT_CLUSTER_NAME : raw.name;
  if (typeof name !== 'string' || !isValidClusterName(name)) fail('name must be 1-64 characters of [A-Za-z0-9_.-]');

  let multicast: ClusterFile['multicast'] = { ...DEFAULT_MULTICAST, interface: undefined };
  if (raw.multicast !== undefined) {
    const m = raw.multicast;
    if (!isObject(m)) return fail('multicast must be an object');
    checkKeys(m, ['group', 'port', 'interface', 'ttl'], 'multicast.', fail);
    const group = m.group ?? DEFAULT_MULTICAST.group;
    if (typeof group !== 'string' || !isIPv4(group) || !isMulticastGroup(group)) fail('multicast.group must be an IPv4 multicast address (224.0.0.0-239.255.255.255)');
    const port = m.port ?? DEFAULT_MULTICAST.port;
    if (!isPort(port)) fail('multicast.port must be an integer from 1 to 65535');
    const iface = m.interface;
    if (iface !== undefined && (typeof iface !== 'string' || !isIPv4(iface))) fail('multicast.interface must be a local IPv4 address such as 127.0.0.1');
    const ttl = m.ttl ?? DEFAULT_MULTICAST.ttl;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > 255) fail('multicast.ttl must be an integer from 0 to 255');
    multicast = { group: group as string, port: port as number, interface: iface as string | undefined, ttl: ttl as number };
  }

  if (!Array.isArray(raw.nodes)) return fail('nodes must be an array of {"id", "host", "port"}');
  if (raw.nodes.length > CLUSTER_NODES_MAX) fail(`nodes lists more than ${CLUSTER_NODES_MAX} nodes`);
  const nodes: ClusterNode[] = [];
  const ids = new Set<string>();
  const addrs = new Set<string>();
  raw.nodes.forEach((n: unknown, i: number) => {
    const at = `nodes[${i}]`;
    if (!isObject(n)) return fail(`${at} must be an object {"id", "host", "port"}`);
    checkKeys(n, ['id', 'host', 'port'], `${at}.`, fail);
    const id = typeof n.id === 'number' && Number.isInteger(n.id) && n.id >= 0 ? String(n.id) : n.id;
    if (typeof id !== 'string' || !isValidNodeId(id)) fail(`${at}.id must be 1-64 characters of [A-Za-z0-9_.-] (or a non-negative integer)`);
    if (typeof n.host !== 'string' || n.host.length === 0 || n.host.length > 253) fail(`${at}.host must be an IP address or host name`);
    if (!isPort(n.port)) fail(`${at}.port must be an integer from 1 to 65535`);
    if (ids.has(id as string)) fail(`${at}.id '${id as string}' appears twice`);
    const addr = `${n.host as string}:${n.port as number}`;
    if (addrs.has(addr)) fail(`${at} uses ${addr}, which another node already uses`);
    ids.add(id as string);
    addrs.add(addr);
    nodes.push(Object.freeze({ id: id as string, host: n.host as string, port: n.port as number }));
  });

  let links: [string, string][] | undefined;
  if (raw.links !== undefined) {
    if (!Array.isArray(raw.links)) return fail('links must be an array of ["id", "id"] pairs');
    links = raw.links.map((l: unknown, i: number) => {
      const at = `links[${i}]`;
      if (!Array.isArray(l) || l.length !== 2) return fail(`${at} must be a pair ["id", "id"]`);
      const [a, b] = l.map((x: unknown) => (typeof x === 'number' && Number.isInteger(x) ? String(x) : x));
      if (typeof a !== 'string' || !ids.has(a)) fail(`${at} names node '${String(a)}', which is not in nodes`);
      if (typeof b !== 'string' || !ids.has(b)) fail(`${at} names node '${String(b)}', which is not in nodes`);
      if (a === b) fail(`${at} links node '${String(a)}' to itself`);
      return [a, b] as [string, string];
    });
  }
  let replicas: number | undefined;
  if (raw.replicas !== undefined) {
    const r = raw.replicas;
    if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > CLUSTER_NODES_MAX) fail(`replicas must be an integer from 1 to ${CLUSTER_NODES_MAX} (copies of each key)`);
    replicas = r as number;
  }
  return Object.freeze({ path, name: name as string, multicast: Object.freeze(multicast), nodes: Object.freeze(nodes), links: links && Object.freeze(links), replicas });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPort(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65_535;
}

function checkKeys(o: Record<string, unknown>, allowed: string[], prefix: string, fail: (what: string) => never): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`unknown field '${prefix}${k}' (allowed: ${allowed.join(', ')})`);
}

/** Adds "at line L column C" to V8's JSON error so the user finds the spot. */
function jsonErrorWhere(text: string, message: string): string {
  const first = (message.split('\n')[0] ?? message).replace(/, ".*" is not valid JSON$/, '').replace(/ in JSON at position \d+.*$/, '');
  const m = /position (\d+)/.exec(message);
  const pos = m ? Number(m[1]) : locateJsonError(text);
  if (pos === undefined) return first;
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  return `${first} at line ${line} column ${column}`;
}

/**
 * Node 20 omits the position for some errors; find it as the shortest prefix
 * that fails for a reason other than ending early. Bounded: small files only.
 */
function locateJsonError(text: string): number | undefined {
  if (text.length > 20_000) return undefined;
  for (let i = 1; i <= text.length; i++) {
    try {
      JSON.parse(text.slice(0, i));
    } catch (err) {
      // A prefix that merely ends early fails at its own end; the first one
      // failing before its end has reached the real error.
      const msg = (err as Error).message;
      if (/end of JSON input/.test(msg)) continue;
      const at = /position (\d+)/.exec(msg);
      if (at && Number(at[1]) >= i) continue;
      return at ? Number(at[1]) : i - 1;
    }
  }
  return undefined;
}
