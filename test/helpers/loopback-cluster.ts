// A cluster of real `grapevine node` processes on 127.0.0.1 from one cluster
// file, for the cache and lock e2e tests: free ports, a multicast channel of
// its own, a data dir per node, one client-library connection per node,
// start (waits for 'node up') and kill -9 by PID.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { writeClusterFile } from './gossip.js';
import { KvClients } from './kv.js';
import { freePort, GRAPEVINE, randomMcast, spawnNodeScript, tempDir } from './proc.js';
import type { Proc } from './proc.js';

export interface LoopbackCluster {
  readonly file: string;
  readonly dir: string;
  readonly ports: Map<string, number>;
  readonly clients: KvClients;
  readonly nodes: Map<string, Proc>;
  /** `--cluster FILE --id ID`. */
  at(id: string): string[];
  start(id: string): Promise<Proc>;
  kill9(id: string): Promise<void>;
}

export interface LoopbackClusterOptions {
  readonly ids: readonly string[];
  readonly name: string;
  /** Extra top-level fields of the cluster file (links, replicas). */
  readonly extra?: { readonly links?: [string, string][]; readonly replicas?: number };
  readonly clientTimeoutMs?: number;
  readonly upWithinMs?: number;
}

export async function loopbackCluster(t: TestContext, o: LoopbackClusterOptions): Promise<LoopbackCluster> {
  const dir = tempDir(t, `grapevine-${o.name}-`);
  const mc = randomMcast();
  const ports = new Map<string, number>();
  for (const id of o.ids) ports.set(id, await freePort());
  const file = writeClusterFile(join(dir, 'cluster.json'), {
    name: o.name,
    multicast: { group: mc.group, port: mc.port, interface: '127.0.0.1', ttl: 0 },
    nodes: o.ids.map((id) => ({ id, host: '127.0.0.1', port: ports.get(id)! })),
    ...o.extra,
  });
  const clients = new KvClients<string>((id) => ({ host: '127.0.0.1', port: ports.get(id)! }), o.clientTimeoutMs);
  t.after(() => clients.closeAll());
  const nodes = new Map<string, Proc>();
  const at = (id: string) => ['--cluster', file, '--id', id];
  return {
    file,
    dir,
    ports,
    clients,
    nodes,
    at,
    async start(id) {
      const p = spawnNodeScript(t, `node ${id}`, GRAPEVINE, ['node', ...at(id), '--data-dir', join(dir, `data-${id}`), '--log-level', 'info']);
      await p.waitForLine('stderr', (l) => l.includes('"msg":"node up"'), o.upWithinMs ?? 10_000, '"node up"');
      nodes.set(id, p);
      return p;
    },
    async kill9(id) {
      clients.drop(id);
      const e = await nodes.get(id)!.kill9();
      assert.equal(e.signal, 'SIGKILL');
      nodes.delete(id);
    },
  };
}
