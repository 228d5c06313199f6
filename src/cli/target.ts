import { parseHostPort } from './args.js';
import { findClusterFile } from './node-config.js';
import { UsageError } from './exit.js';

/** Options every client command takes to pick its node. */
export const TARGET_OPTIONS = {
  id: { type: 'string' },
  addr: { type: 'string' },
  cluster: { type: 'string' },
  'timeout-ms': { type: 'string' },
} as const;

/** Resolves `--addr HOST:PORT`, or `--id N` through the cluster file. */
export function resolveTarget(values: { id?: string; addr?: string; cluster?: string }): { host: string; port: number; label: string } {
  if (values.addr !== undefined) {
    const { host, port } = parseHostPort(values.addr, '--addr');
    return { host, port, label: values.addr };
  }
  if (values.id === undefined) throw new UsageError('say which node: --id N (through the cluster file) or --addr HOST:PORT');
  const file = findClusterFile(values.cluster, true)!;
  const node = file.nodes.find((n) => n.id === values.id);
  if (!node) throw new UsageError(`${file.path}: no node with id '${values.id}' (known: ${file.nodes.map((n) => n.id).join(', ') || 'none'})`);
  return { host: node.host, port: node.port, label: `node ${node.id} (${node.host}:${node.port})` };
}
