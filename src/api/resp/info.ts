// INFO and CONFIG GET: what Redis clients and tools read about the server.
// redis-benchmark asks CONFIG GET save / appendonly at start; monitoring
// tools parse INFO's `# Section` + `name:value` lines.

import { arch, hostname, release, type } from 'node:os';
import type { KvAccess } from '../../runtime/kv-access.js';
import { globMatch } from '../../core/kv/glob.js';

/** What the command table sees of the server that runs it. */
export interface RespServerView {
  readonly host: string;
  readonly port: number;
  readonly startedAtMs: number;
  readonly connectionsMax: number;
  readonly bulkBytesMax: number;
  counters(): RespCounters;
}

export interface RespCounters {
  /** Connections open now. */
  readonly connections: number;
  readonly connectionsTotal: number;
  readonly connectionsRefused: number;
  readonly commands: number;
  readonly protocolErrors: number;
  readonly idleDisconnects: number;
  readonly outboundDisconnects: number;
}

/** The version INFO, HELLO and tools see; the suffix says what answers. */
export const REDIS_VERSION = '7.0.0-grapevine';

type Section = (kv: KvAccess, server: RespServerView) => Record<string, string | number>;

const SECTIONS: ReadonlyMap<string, { title: string; fields: Section }> = new Map([
  [
    'server',
    {
      title: 'Server',
      fields: (_kv: KvAccess, server: RespServerView) => {
        const uptimeSeconds = Math.floor((Date.now() - server.startedAtMs) / 1000);
        return {
          redis_version: REDIS_VERSION,
          redis_mode: 'standalone',
          os: `${type()} ${release()} ${arch()}`,
          arch_bits: 64,
          process_id: process.pid,
          node_version: process.version,
          hostname: hostname(),
          tcp_port: server.port,
          uptime_in_seconds: uptimeSeconds,
          uptime_in_days: Math.floor(uptimeSeconds / 86_400),
        };
      },
    },
  ],
  [
    'clients',
    {
      title: 'Clients',
      fields: (_kv: KvAccess, server: RespServerView) => ({ connected_clients: server.counters().connections, maxclients: server.connectionsMax }),
    },
  ],
  [
    'memory',
    {
      title: 'Memory',
      fields: () => {
        const m = process.memoryUsage();
        return { used_memory: m.heapUsed + m.external, used_memory_rss: m.rss, maxmemory: 0, maxmemory_policy: 'noeviction' };
      },
    },
  ],
  [
    'stats',
    {
      title: 'Stats',
      fields: (_kv: KvAccess, server: RespServerView) => {
        const c = server.counters();
        return {
          total_connections_received: c.connectionsTotal,
          total_commands_processed: c.commands,
          rejected_connections: c.connectionsRefused,
          protocol_errors: c.protocolErrors,
          idle_half_command_disconnects: c.idleDisconnects,
          slow_reader_disconnects: c.outboundDisconnects,
        };
      },
    },
  ],
  ['keyspace', { title: 'Keyspace', fields: (kv: KvAccess) => ({ db0: `keys=${kv.size()},expires=0,avg_ttl=0` }) }],
  ['grapevine', { title: 'Grapevine', fields: (kv: KvAccess) => kv.info() }],
]);

/** INFO [section ...]: no section, `default`, `all` or `everything` give them all; unknown ones give nothing. */
export function infoText(kv: KvAccess, server: RespServerView, wanted: readonly string[]): string {
  const all = wanted.length === 0 || wanted.some((w) => w === 'all' || w === 'default' || w === 'everything');
  const blocks: string[] = [];
  for (const [name, section] of SECTIONS) {
    if (!all && !wanted.includes(name)) continue;
    let text = `# ${section.title}\r\n`;
    for (const [k, v] of Object.entries(section.fields(kv, server))) text += `${oneLine(k)}:${oneLine(String(v))}\r\n`;
    blocks.push(text);
  }
  return blocks.join('\r\n');
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]/g, ' ');
}

/** CONFIG GET pattern [pattern ...]: a flat [name, value, ...] of the settings matching any pattern (glob, no case). */
export function configGet(server: RespServerView, patterns: readonly Uint8Array[]): string[] {
  const settings: [string, string][] = [
    ['save', ''],
    ['appendonly', 'no'],
    ['databases', '1'],
    ['maxclients', String(server.connectionsMax)],
    ['port', String(server.port)],
    ['bind', server.host],
    ['timeout', '0'],
    ['maxmemory', '0'],
    ['maxmemory-policy', 'noeviction'],
    ['proto-max-bulk-len', String(server.bulkBytesMax)],
  ];
  const out: string[] = [];
  for (const [name, value] of settings) {
    const subject = Buffer.from(name, 'latin1');
    if (patterns.some((p) => globMatch(p, subject, true))) out.push(name, value);
  }
  return out;
}
