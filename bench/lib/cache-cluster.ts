/**
 * `grapevine node --resp PORT` processes for the cache bench: a cluster of
 * nodes on 127.0.0.1 (one cluster file, full replication), and the nodes of
 * a lab (network namespaces) with their RESP ports reached through the lab's
 * relay. Plus what both need: "does every node hold the same versions"
 * (INFO's digest) and "is the overlay up".
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { GrapevineClient } from '../../src/api/client.js';
import { GRAPEVINE_JS, startNode } from '../../test/helpers/lab-cluster.js';
import type { Lab } from '../../test/helpers/lab.js';
import { GvNode } from './grapevine.js';
import { onLines, running, sleep } from './lines.js';
import { freePort, stopChild, track } from './procs.js';
import { RespClient, info } from './cache-resp.js';

export interface CacheNode {
  readonly id: string;
  /** Where this process reaches the node's peer port (the client library) and its RESP port. */
  readonly host: string;
  readonly port: number;
  readonly respPort: number;
  readonly proc: ChildProcess;
  readonly dataDir: string;
  readonly logTail: string[];
}

export interface LocalCluster {
  readonly name: string;
  readonly file: string;
  readonly nodes: CacheNode[];
}

/**
 * n nodes on 127.0.0.1 from one cluster file (no "replicas": every node
 * holds every key; no "links": ring + chord, i.e. every pair linked for
 * n <= 4). Multicast: a group and port of this run only, on 127.0.0.1
 * (named in the file), TTL 0.
 */
export async function startLocalCluster(dir: string, n: number, opts: { cpuProfDir?: string; profileNodes?: readonly number[] } = {}): Promise<LocalCluster> {
  mkdirSync(dir, { recursive: true });
  const name = `cachebench-${process.pid}`;
  const ports: number[] = [];
  const respPorts: number[] = [];
  while (ports.length < n) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  while (respPorts.length < n) {
    const p = await freePort();
    if (!ports.includes(p) && !respPorts.includes(p)) respPorts.push(p);
  }
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const file = join(dir, 'cluster.json');
  const mcastPort = 20_000 + (process.pid % 20_000);
  writeFileSync(
    file,
    `${JSON.stringify({ name, multicast: { group: '239.255.77.201', port: mcastPort, interface: '127.0.0.1', ttl: 0 }, nodes: ids.map((id, i) => ({ id, host: '127.0.0.1', port: ports[i] })) }, null, 2)}\n`,
  );
  const nodes: CacheNode[] = ids.map((id, i) => {
    const dataDir = join(dir, id);
    const prof = opts.cpuProfDir && (opts.profileNodes ?? [0]).includes(i) ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    const argv = [...prof, GRAPEVINE_JS, 'node', '--cluster', file, '--id', id, '--data-dir', dataDir, '--resp', String(respPorts[i]), '--log-level', 'info'];
    const proc = track(spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const logTail: string[] = [];
    onLines(proc, (line) => {
      logTail.push(line);
      if (logTail.length > 50) logTail.shift();
    });
    return { id, host: '127.0.0.1', port: ports[i]!, respPort: respPorts[i]!, proc, dataDir, logTail };
  });
  const cluster = { name, file, nodes };
  try {
    await waitOverlay(nodes, n, 60_000);
  } catch (err) {
    await stopCluster(cluster);
    throw err;
  }
  return cluster;
}

/** SIGTERM every node (a --cpu-prof profile is written on the way out), SIGKILL after 10 s. */
export async function stopCluster(c: { nodes: readonly CacheNode[] }): Promise<void> {
  await Promise.all(c.nodes.map((x) => stopChild(x.proc, 'SIGTERM', 10_000)));
}

/** Until every node answers on its RESP port, sees all n alive and has every overlay link connected, twice in a row. */
export async function waitOverlay(nodes: readonly CacheNode[], n: number, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  const deadline = Date.now() + timeoutMs;
  let good = 0;
  let last = 'no answer yet';
  while (good < 2) {
    if (Date.now() > deadline) throw new Error(`cache nodes not linked up within ${timeoutMs} ms: ${last}; ${nodes.map((x) => `${x.id}: ${x.logTail.slice(-2).join(' | ')}`).join('; ')}`);
    const dead = nodes.find((x) => !running(x.proc));
    if (dead) throw new Error(`node ${dead.id} exited: ${dead.logTail.slice(-5).join(' | ')}`);
    try {
      const ss = await Promise.all(nodes.map((x) => statusOnce(x)));
      const ok = ss.every((s) => s.alive === n && s.links > 0 && s.connected === s.links);
      last = ss.map((s, i) => `${nodes[i]!.id}: ${s.alive} alive, ${s.connected}/${s.links} links`).join(', ');
      const resp = await Promise.all(nodes.map((x) => RespClient.open(x.host, x.respPort, x.id, 2_000).then((c) => (c.close(), true), () => false)));
      good = ok && resp.every(Boolean) ? good + 1 : 0;
    } catch (err) {
      last = (err as Error).message;
      good = 0;
    }
    await sleep(200);
  }
  return performance.now() - t0;
}

async function statusOnce(x: CacheNode): Promise<{ alive: number; links: number; connected: number }> {
  const c = await GrapevineClient.connect(x.host, x.port, { timeoutMs: 3_000 });
  try {
    const s = await c.status();
    return { alive: s.members.filter((m) => m.state === 'alive').length, links: s.links.length, connected: s.linksConnected.length };
  } finally {
    c.close();
  }
}

export interface CacheInfo {
  readonly digest: string;
  readonly keys: number;
  readonly values: number;
  readonly pending: number;
  readonly fields: Record<string, string>;
}

/** INFO grapevine of one node (a persistent client). */
export async function cacheInfo(c: RespClient): Promise<CacheInfo> {
  const m = await info(c, 'grapevine');
  const digest = m.get('digest');
  if (digest === undefined) throw new Error(`${c.label}: INFO grapevine has no digest line`);
  return { digest, keys: Number(m.get('keys_held')), values: Number(m.get('values_held')), pending: Number(m.get('pending_writes')), fields: Object.fromEntries(m) };
}

/**
 * Polls INFO of every client every intervalMs until all digests are equal
 * (and nothing is pending); resolves with the ms that took (from the call),
 * or null after timeoutMs, with the last infos either way, and how long each
 * round of INFO took to be answered by the slowest node (a node busy with a
 * long synchronous step answers late: this bounds the figure's resolution).
 */
export async function waitSameDigest(clients: readonly RespClient[], timeoutMs: number, intervalMs = 50): Promise<{ ms: number | null; infos: CacheInfo[]; polls: number; pollMs: number[] }> {
  const t0 = performance.now();
  let infos: CacheInfo[] = [];
  const pollMs: number[] = [];
  for (;;) {
    const p0 = performance.now();
    try {
      infos = await Promise.all(clients.map((c) => cacheInfo(c)));
      pollMs.push(Math.round((performance.now() - p0) * 10) / 10);
      if (infos.every((x) => x.digest === infos[0]!.digest && x.pending === 0)) return { ms: performance.now() - t0, infos, polls: pollMs.length, pollMs };
    } catch {
      // a node not answering yet counts as "not the same"
      pollMs.push(Math.round((performance.now() - p0) * 10) / 10);
    }
    if (performance.now() - t0 > timeoutMs) return { ms: null, infos, polls: pollMs.length, pollMs };
    await sleep(intervalMs);
  }
}

// ---- the lab ---------------------------------------------------------------

export interface LabCacheNode extends CacheNode {
  readonly hostIndex: number;
  readonly gv: GvNode;
  /** The node's own address inside the lab (10.77.0.x). */
  readonly labIp: string;
}

/** One `grapevine node --resp` per lab host (defaults: multicast discovery on the lab bridge, full replication); every port reached through the lab relay. */
export async function startLabCluster(lab: Lab, port: number, respPort: number): Promise<LabCacheNode[]> {
  const nodes: LabCacheNode[] = [];
  for (const h of lab.hosts) {
    const dataDir = join(lab.tmpDir, `cache-h${h.index}`);
    const n = startNode(lab, h.index, { port, dataDir, extraArgs: ['--resp', String(respPort)], maxLogLines: 200 });
    const gv = new GvNode(h.index, n.proc, dataDir);
    nodes.push({ id: `h${h.index}`, host: '', port: 0, respPort: 0, proc: n.proc, dataDir, logTail: n.stderrLines, hostIndex: h.index, gv, labIp: h.ip });
  }
  // Forwards: 127.0.0.1 ports of this process relayed into each host.
  const out: LabCacheNode[] = [];
  for (const x of nodes) {
    const peer = await lab.forward(x.hostIndex, port);
    const resp = await lab.forward(x.hostIndex, respPort);
    out.push({ ...x, id: x.gv.id ?? x.id, host: peer.host, port: peer.port, respPort: resp.port });
  }
  await waitOverlay(out, out.length, 60_000);
  return out.map((x) => ({ ...x, id: x.gv.id ?? x.id }));
}
