import { MemberState } from '../wire/index.js';
import type { Envelope } from '../wire/index.js';
import type { FramedConnection } from '../runtime/connection.js';
import type { GrapevineNode } from '../runtime/node.js';

/**
 * The client protocol of a node: requests arrive on the node's TCP port
 * after a client Hello and are answered on the same connection with the
 * same request id. Unknown requests get an Error frame, never silence.
 */
export function serveClients(node: GrapevineNode): void {
  node.setClientHandler((env, conn) => handleRequest(node, env, conn));
}

const STATE_TO_WIRE = { alive: MemberState.ALIVE, suspect: MemberState.SUSPECT, dead: MemberState.DEAD } as const;

function handleRequest(node: GrapevineNode, env: Envelope, conn: FramedConnection): void {
  switch (env.body.case) {
    case 'statusRequest': {
      const s = node.status();
      conn.reply(env, {
        body: {
          case: 'statusResponse',
          value: {
            id: s.id,
            cluster: s.cluster,
            incarnation: BigInt(s.incarnation),
            members: s.members.map((m) => ({ id: m.id, host: m.host, port: m.port, state: STATE_TO_WIRE[m.state], incarnation: BigInt(m.incarnation) })),
            neighbours: [...s.neighbours],
            connected: [...s.connected],
          },
        },
      });
      return;
    }
    default:
      conn.reply(env, { body: { case: 'error', value: { code: 'unsupported', message: `request '${env.body.case ?? 'empty'}' is not supported by this node` } } });
  }
}
