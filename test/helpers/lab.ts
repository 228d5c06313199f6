/**
 * A multi-host lab from Linux network namespaces (DESIGN.md section 4, tier 3).
 *
 *   bridge namespace <run>-br:  br0 (multicast snooping off, so multicast floods)
 *                                 ├─ v0 ── eth0 in <run>-h0  10.77.0.1/24
 *                                 ├─ v1 ── eth0 in <run>-h1  10.77.0.2/24
 *                                 └─ ...
 *
 * Nothing is added to the root namespace: no veth end, address or route, so
 * lab traffic, multicast included, can never leave on the host's eth0. Each
 * host routes 224.0.0.0/4 to its own eth0 so multicast stays on the bridge.
 * Everything the lab creates is removed by destroy(), at process exit or on
 * SIGINT/SIGTERM/SIGHUP, or by the next run's cleanStale() after a crash.
 */
import { spawn as spawnChild } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PREFIX, bridgeNs, bridgePort, checkPrefix, hostNs, newRunName } from './lab-names.js';
import { removeNamespaces, removeNamespacesSync, staleNamespaces } from './lab-ns.js';
import type { StaleOptions } from './lab-ns.js';
import { RELAY_SCRIPT, openForward, relayReady } from './lab-relay.js';
import type { Forward } from './lab-relay.js';
import { mapLimit, run, runSync } from './lab-sh.js';
import type { RunOptions } from './lab-sh.js';

export { DEFAULT_PREFIX } from './lab-names.js';
export type { Forward } from './lab-relay.js';
export { labTestOptions, requireLab } from './lab-gate.js';

export const MAX_HOSTS = 250;
const SUBNET = '10.77.0';
const SETUP_PARALLELISM = 8;
const KILL_WAIT_MS = 3_000;

export interface LabOptions {
  readonly hosts: number;
  /** Namespace name prefix (default `gvlab`); cleanStale(prefix) only touches names of this pattern. */
  readonly prefix?: string;
  /** For the gvlab CLI: the lab outlives this process (no exit hooks; removed by `gvlab down`). */
  readonly keep?: boolean;
}

export interface LabHost {
  readonly index: number;
  readonly ns: string;
  readonly ip: string;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Labs alive in this process, destroyed synchronously if the process dies first. */
const liveLabs = new Set<Lab>();
let exitHooksInstalled = false;

export class Lab {
  /** Scratch directory (data dirs of nodes); removed by destroy(). */
  readonly tmpDir: string;
  private readonly hostList: LabHost[];
  private readonly procs = new Set<ChildProcess>();
  private readonly lossRules = new Map<number, string[][]>();
  private readonly relays = new Map<number, Promise<string>>(); // host index -> relay socket path
  private readonly forwards = new Set<Forward>();
  private created: string[] = []; // namespaces that exist, in creation order
  private destroyed = false;

  private constructor(
    readonly run: string,
    hosts: number,
    readonly keep: boolean,
  ) {
    this.hostList = Array.from({ length: hosts }, (_, i) => ({ index: i, ns: hostNs(run, i), ip: `${SUBNET}.${i + 1}` }));
    this.tmpDir = mkdtempSync(join(tmpdir(), `${run}-`));
  }

  /** Root, `ip netns` and iptables: what every lab needs. Cheap; call it before create(). */
  static canRun(): { ok: boolean; reason?: string } {
    if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
    if (typeof process.getuid === 'function' && process.getuid() !== 0) {
      return { ok: false, reason: `not root (uid ${process.getuid()}): creating network namespaces needs root` };
    }
    try {
      runSync(['ip', 'netns', 'list']);
    } catch (err) {
      return { ok: false, reason: `\`ip netns\` is not usable (install iproute2): ${firstLine(err)}` };
    }
    try {
      runSync(['iptables', '--version']);
    } catch (err) {
      return { ok: false, reason: `iptables is missing (apt-get install -y iptables): ${firstLine(err)}` };
    }
    return { ok: true };
  }

  static async create(opts: LabOptions): Promise<Lab> {
    const hosts = opts.hosts;
    if (!Number.isInteger(hosts) || hosts < 1 || hosts > MAX_HOSTS) throw new RangeError(`hosts must be 1..${MAX_HOSTS}, got ${hosts}`);
    const prefix = checkPrefix(opts.prefix ?? DEFAULT_PREFIX);
    const can = Lab.canRun();
    if (!can.ok) throw new Error(`lab cannot run: ${can.reason}`);
    await Lab.cleanStale(prefix);

    const lab = new Lab(newRunName(prefix, opts.keep === true), hosts, opts.keep === true);
    // Registered before anything exists, so a failure half-way is cleaned up too.
    if (!lab.keep) {
      liveLabs.add(lab);
      installExitHooks();
    }
    try {
      await lab.build();
    } catch (err) {
      await lab.destroy().catch(() => undefined);
      throw err;
    }
    return lab;
  }

  /**
   * Removes namespaces of this naming pattern left by runs whose process is
   * gone (crash, SIGKILL), killing what still runs inside them first. Labs of
   * live processes, e.g. a concurrent test file, are left alone.
   */
  static async cleanStale(prefix: string = DEFAULT_PREFIX, opts: StaleOptions = {}): Promise<string[]> {
    const stale = await staleNamespaces(prefix, opts);
    // Hosts before bridges: deleting a host takes its veth pair down with it.
    stale.sort((a, b) => Number(a.endsWith('-br')) - Number(b.endsWith('-br')));
    const errors = await removeNamespaces(stale);
    if (errors.length > 0) throw new Error(`cleanStale: ${errors.join('; ')}`);
    return stale;
  }

  get size(): number {
    return this.hostList.length;
  }

  get bridgeNs(): string {
    return bridgeNs(this.run);
  }

  get hosts(): readonly LabHost[] {
    return this.hostList;
  }

  host(i: number): LabHost {
    const h = this.hostList[i];
    if (!h) throw new RangeError(`no host ${i} in a lab of ${this.hostList.length}`);
    return h;
  }

  /** Runs argv inside host i and resolves with its stdout; rejects with its stderr on failure. */
  exec(i: number, argv: readonly string[], opts: RunOptions = {}): Promise<string> {
    return run(['ip', 'netns', 'exec', this.host(i).ns, ...argv], opts);
  }

  /**
   * Starts argv inside host i. `ip netns exec` switches namespace and then
   * execs argv in place, so proc.pid is the real process (kill -9 reaches it).
   * The lab remembers it and kills it in destroy().
   */
  spawn(i: number, argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const proc = spawnChild('ip', ['netns', 'exec', this.host(i).ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.procs.add(proc);
    proc.once('exit', () => this.procs.delete(proc));
    proc.once('error', () => this.procs.delete(proc));
    return proc;
  }

  /** kill -9 by PID; resolves once the process has exited. */
  kill9(proc: ChildProcess): Promise<ExitInfo> {
    return killAndWait(proc, 'SIGKILL');
  }

  /** Takes host i off the bridge (its bridge-side veth down). The host keeps its address and routes. */
  async cutLink(i: number): Promise<void> {
    await run(['ip', '-n', this.bridgeNs, 'link', 'set', bridgePort(this.host(i).index), 'down']);
  }

  async healLink(i: number): Promise<void> {
    await run(['ip', '-n', this.bridgeNs, 'link', 'set', bridgePort(this.host(i).index), 'up']);
  }

  /**
   * Drops each packet into and out of host i's eth0 with the given probability
   * (iptables statistic match; `tc netem` is not in this kernel). Loopback
   * traffic, e.g. a status query inside the host, is not affected. Replaces
   * any loss set before.
   */
  async addLoss(i: number, probability: number): Promise<void> {
    if (!(probability > 0 && probability <= 1)) throw new RangeError(`loss probability must be in (0, 1], got ${probability}`);
    await this.clearLoss(i);
    const p = String(probability);
    const rules = [
      ['INPUT', '-i', 'eth0'],
      ['OUTPUT', '-o', 'eth0'],
    ].map((head) => [...head, '-m', 'statistic', '--mode', 'random', '--probability', p, '-m', 'comment', '--comment', 'gvlab-loss', '-j', 'DROP']);
    this.lossRules.set(i, []);
    for (const rule of rules) {
      await this.exec(i, ['iptables', '-w', '-A', ...rule]);
      this.lossRules.get(i)!.push(rule);
    }
  }

  async clearLoss(i: number): Promise<void> {
    for (const rule of this.lossRules.get(i) ?? []) await this.exec(i, ['iptables', '-w', '-D', ...rule]);
    this.lossRules.delete(i);
  }

  /** The loss rules now installed in host i, as `iptables -S` prints them. */
  async listLossRules(i: number): Promise<string[]> {
    return (await this.exec(i, ['iptables', '-S'])).split('\n').filter((l) => l.includes('gvlab-loss'));
  }

  /**
   * A 127.0.0.1 port in this process that connects to ip:port from inside
   * host i (default: host i's own address), through a relay process started
   * once per host (see lab-relay.ts). For cheap, frequent polling of nodes.
   */
  async forward(i: number, port: number, ip: string = this.host(i).ip): Promise<Forward> {
    let relay = this.relays.get(i);
    if (!relay) {
      const socketPath = join(this.tmpDir, `relay-h${i}.sock`);
      const proc = this.spawn(i, [process.execPath, '-e', RELAY_SCRIPT, socketPath]);
      // 30 s: on a machine loaded by other labs a Node start took more than 10 s.
      relay = relayReady(proc, 30_000).then(() => socketPath);
      this.relays.set(i, relay);
      relay.catch(() => this.relays.delete(i)); // let the next call try again
    }
    const fwd = await openForward(await relay, ip, port);
    if (this.destroyed) {
      // destroy() ran while this forward was being set up (e.g. another host's relay failed):
      // a listening server left behind would keep the process alive.
      await fwd.close();
      throw new Error(`lab ${this.run} was destroyed while forwarding to host ${i}`);
    }
    this.forwards.add(fwd);
    return fwd;
  }

  /** Kills every process the lab started (by PID), then deletes every namespace it created. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.forwards].map((f) => f.close()));
    // allSettled: a process that will not die must not stop the namespaces from going
    // (removeNamespaces kills whatever still runs inside them anyway).
    const kills = await Promise.allSettled([...this.procs].map((p) => killAndWait(p, 'SIGKILL')));
    const errors = kills.flatMap((k) => (k.status === 'rejected' ? [String(k.reason)] : []));
    errors.push(...(await removeNamespaces([...this.created].reverse())));
    this.created = [];
    await rm(this.tmpDir, { recursive: true, force: true });
    liveLabs.delete(this);
    if (errors.length > 0) throw new Error(`lab destroy: ${errors.join('; ')}`);
  }

  /** Exit-time variant: nothing async can run in a process 'exit' handler. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const p of this.procs) {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    removeNamespacesSync([...this.created].reverse());
    this.created = [];
    rmSync(this.tmpDir, { recursive: true, force: true });
    liveLabs.delete(this);
  }

  private async addNs(ns: string): Promise<void> {
    await run(['ip', 'netns', 'add', ns]);
    this.created.push(ns);
  }

  private async build(): Promise<void> {
    const br = this.bridgeNs;
    await this.addNs(br);
    await run(['ip', '-n', br, 'link', 'set', 'lo', 'up']);
    // Snooping off: without an IGMP querier on the bridge, snooping may stop
    // forwarding a group once its membership times out; flooding never does.
    await run(['ip', '-n', br, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0']);
    await run(['ip', '-n', br, 'link', 'set', 'br0', 'up']);
    const snooping = (await run(['ip', 'netns', 'exec', br, 'cat', '/sys/class/net/br0/bridge/multicast_snooping'])).trim();
    if (snooping !== '0') throw new Error(`bridge multicast snooping is still ${snooping}`);

    await mapLimit(this.hostList, SETUP_PARALLELISM, (h) => this.buildHost(h));
  }

  private async buildHost(h: LabHost): Promise<void> {
    const br = this.bridgeNs;
    const port = bridgePort(h.index);
    await this.addNs(h.ns);
    // The peer is created directly inside the host namespace: no veth end ever exists in the root namespace.
    await run(['ip', '-n', br, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
    await run(['ip', '-n', br, 'link', 'set', port, 'master', 'br0', 'up']);
    // No IPv6 on the lab link: its router solicitations and MLD reports would be noise in idle-traffic figures.
    await run(['ip', 'netns', 'exec', h.ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
    await run(['ip', '-n', h.ns, 'link', 'set', 'lo', 'up']);
    await run(['ip', '-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
    await run(['ip', '-n', h.ns, 'link', 'set', 'eth0', 'up']);
    await run(['ip', '-n', h.ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
  }
}

function killAndWait(proc: ChildProcess, signal: NodeJS.Signals): Promise<ExitInfo> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pid ${proc.pid} did not exit ${KILL_WAIT_MS} ms after ${signal}`)), KILL_WAIT_MS);
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code, signal: sig });
    });
    try {
      process.kill(proc.pid!, signal);
    } catch {
      // exited between the check and the kill: the 'exit' event still comes
    }
  });
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/** Synchronous cleanup when the process exits or is told to stop, so a failing run leaves nothing behind. */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const destroyAll = (): void => {
    for (const lab of [...liveLabs]) lab.destroySync();
  };
  process.on('exit', destroyAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      destroyAll();
      process.removeListener(sig, onSignal);
      // Re-raise so the process still dies of the signal, unless someone else handles it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
