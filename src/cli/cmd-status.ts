import { ClientError, GrapevineClient } from '../api/client.js';
import { parseCli, parsePositiveInt } from './args.js';
import { OperationalError } from './exit.js';
import { TARGET_OPTIONS, resolveTarget } from './target.js';

const HELP = `Usage: grapevine status (--id N [--cluster FILE] | --addr HOST:PORT) [--json]

Prints the node's id, its member table (id, host, port, state, incarnation)
and its current ring neighbours. With --json: one JSON object
{"id", "members": [{"id","host","port","state","incarnation"}], "neighbours": [ids]}
plus "connected" (neighbours with an open connection), "cluster", "links" (the
gossip overlay), "linksConnected" and "messages" (gossip messages held).
Exit status: 0 success, 1 node unreachable, 2 bad usage.
`;

export async function statusMain(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, { ...TARGET_OPTIONS, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const target = resolveTarget(values);
  const timeoutMs = values['timeout-ms'] ? parsePositiveInt(values['timeout-ms'], '--timeout-ms', 600_000) : 5_000;
  let client: GrapevineClient | undefined;
  try {
    client = await GrapevineClient.connect(target.host, target.port, { timeoutMs });
    const s = await client.status();
    if (values.json) {
      const out = {
        id: s.id,
        members: s.members.map((m) => ({ id: m.id, host: m.host, port: m.port, state: m.state, incarnation: m.incarnation })),
        neighbours: s.neighbours,
        connected: s.connected,
        cluster: s.cluster,
        links: s.links,
        linksConnected: s.linksConnected,
        messages: s.messages,
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } else {
      process.stdout.write(formatStatus(s));
    }
    return 0;
  } catch (err) {
    if (err instanceof ClientError) throw new OperationalError(err.message);
    throw err;
  } finally {
    client?.close();
  }
}

function formatStatus(s: Awaited<ReturnType<GrapevineClient['status']>>): string {
  const rows = s.members.map((m) => [m.id, `${m.host}:${m.port}`, m.state, String(m.incarnation), m.id === s.id ? '(self)' : s.neighbours.includes(m.id) ? (s.connected.includes(m.id) ? 'neighbour, connected' : 'neighbour') : '']);
  const header = ['ID', 'ADDRESS', 'STATE', 'INCARNATION', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const alive = s.members.filter((m) => m.state === 'alive').length;
  return [
    `node ${s.id} in cluster ${s.cluster}: ${alive}/${s.members.length} alive; neighbours: ${s.neighbours.join(', ') || 'none'}; gossip links: ${s.links.map((l) => (s.linksConnected.includes(l) ? l : `${l} (down)`)).join(', ') || 'none'}; ${s.messages} messages`,
    line(header),
    ...rows.map(line),
    '',
  ].join('\n');
}
