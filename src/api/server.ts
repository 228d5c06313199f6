import { MemberState } from '../wire/index.js';
import type { Envelope } from '../wire/index.js';
import type { FramedConnection } from '../runtime/connection.js';
import type { GrapevineNode } from '../runtime/node.js';
import { GossipError } from '../runtime/gossip-service.js';
import { messageToWire } from '../runtime/gossip-codec.js';
import { gossipEventFrame } from '../runtime/gossip-frame.js';
import { isMessageId } from '../core/gossip/message.js';
import { handleKv } from './kv-handler.js';
import { handleLockClientRequest } from '../runtime/lock-client.js';

/**
 * The client protocol of a node: requests arrive on the node's TCP port
 * after a client Hello and are answered on the same connection with the
 * same request id. Unknown requests get an Error frame, never silence.
 */
export function serveClients(node: GrapevineNode): void {
  node.setClientHandler((env, conn) => handleRequest(node, env, conn));
}

/** Largest page of a list answer: bounded frames whatever the store holds. */
const LIST_PAGE_MAX = 1_000;

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
            links: s.links.map((l) => l.id),
            linksConnected: s.links.filter((l) => l.connected).map((l) => l.id),
            messages: BigInt(s.gossip.messages),
          },
        },
      });
      return;
    }
    case 'submitRequest':
      // A client with many submits in flight gets the acknowledgements of one commit in one write.
      node.gossip.submit(env.body.value.text).then(
        (m) => {
          conn.corkForTick();
          conn.reply(env, { body: { case: 'submitResponse', value: { id: m.id } } });
        },
        (err: Error & { code?: string }) => {
          conn.corkForTick();
          conn.reply(env, { body: { case: 'error', value: { code: err instanceof GossipError ? err.code : 'internal', message: err.message } } });
        },
      );
      return;
    case 'getRequest': {
      const m = isMessageId(env.body.value.id) ? node.gossip.get(env.body.value.id) : undefined;
      if (!m) {
        conn.reply(env, { body: { case: 'error', value: { code: 'not_found', message: `node ${node.id} has no message ${env.body.value.id}` } } });
        return;
      }
      conn.reply(env, { body: { case: 'getResponse', value: { message: messageToWire(m) } } });
      return;
    }
    case 'listRequest': {
      const limit = Math.min(env.body.value.limit || LIST_PAGE_MAX, LIST_PAGE_MAX);
      const after = Number(env.body.value.after);
      const page = node.gossip.list(after, limit + 1);
      const more = page.length > limit;
      const messages = page.slice(0, limit);
      const next = messages.length > 0 ? messages[messages.length - 1]!.rowid : after;
      conn.reply(env, { body: { case: 'listResponse', value: { messages: messages.map(messageToWire), next: BigInt(next), more } } });
      return;
    }
    case 'watchRequest': {
      let unwatch: () => void;
      try {
        unwatch = node.gossip.watch((_m, encoded) => {
          conn.sendFrame(gossipEventFrame(env.requestId, encoded));
        });
      } catch (err) {
        conn.reply(env, { body: { case: 'error', value: { code: 'busy', message: (err as Error).message } } });
        return;
      }
      conn.once('close', unwatch);
      conn.reply(env, { body: { case: 'watchResponse', value: {} } });
      return;
    }
    case 'kvApplyRequest':
    case 'kvBatch':
    case 'kvSyncRequest':
    case 'kvFetchRequest':
      // Another node's cache, over a request connection (a partitioned cache's owners).
      node.kv.onRpcEnvelope(env, conn);
      return;
    case 'lockPropose':
    case 'lockRelease':
      // Another node's lock attempt, over a request connection.
      node.locks.onRequest(env, conn);
      return;
    case 'lockAcquireRequest':
    case 'lockReleaseRequest':
      handleLockClientRequest(node.locks, env, conn);
      return;
    case 'kvPutRequest':
    case 'kvGetRequest':
    case 'kvDelRequest':
    case 'kvListRequest':
      handleKv(node, env, conn);
      return;
    default:
      conn.reply(env, { body: { case: 'error', value: { code: 'unsupported', message: `request '${env.body.case ?? 'empty'}' is not supported by this node` } } });
  }
}
