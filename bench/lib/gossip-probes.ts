/**
 * The gossip bench's side of gossip-probe.mjs: one probe per lab host, each
 * inside its host's namespace, watching (and, at the submit hosts, submitting
 * to) its node directly. Stamps use CLOCK_MONOTONIC in every process
 * (monoMs() here, process.hrtime.bigint() in the probes), so they compare
 * across processes and namespaces without any clock offset.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../../test/helpers/lab.js';
import { cpuSeconds } from './host-stats.js';
import { onLines } from './lines.js';

const PROBE_JS = fileURLToPath(new URL('./gossip-probe.mjs', import.meta.url));
/** The compiled client (npm run build), so a probe needs no TypeScript loader. */
const CLIENT_JS = join(fileURLToPath(new URL('../../', import.meta.url)), 'dist', 'api', 'client.js');
const ANSWER_TIMEOUT_MS = 30_000;

/** CLOCK_MONOTONIC in ms: the probes' clock. */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface ProbeDump {
  /** The node's id. */
  readonly node: string;
  /** [message id, monotonic ms of the watch event, the message's path as stored (ids, space-separated)]. */
  readonly events: [string, number, string][];
  /** [k, id (null: failed), monotonic ms just before the submit call, ms until it was acknowledged]. */
  readonly submits: [number, string | null, number, number][];
}

export class Probe {
  private readonly waiting: { prefix: string; resolve: (rest: string) => void; reject: (e: Error) => void }[] = [];
  private failure: string | null = null;

  private constructor(
    readonly host: number,
    readonly proc: ChildProcess,
  ) {
    onLines(proc, (line) => {
      if (line.startsWith('error ')) {
        this.failure = line.slice(6);
        for (const w of this.waiting.splice(0)) w.reject(new Error(`probe at host ${host}: ${this.failure}`));
        return;
      }
      const i = this.waiting.findIndex((w) => line === w.prefix || line.startsWith(`${w.prefix} `));
      if (i < 0) return;
      const [w] = this.waiting.splice(i, 1);
      w!.resolve(line.slice(w!.prefix.length + 1));
    });
    proc.once('exit', (code, sig) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`probe at host ${host} exited (${code ?? sig})`));
    });
  }

  /**
   * niceness < 0 runs the probe ahead of the nodes when both are runnable: a
   * stamp then waits less for a CPU after the node's event was sent (the
   * probe's own work per event is tiny), so it is closer to the commit.
   */
  static async start(lab: Lab, host: number, port: number, niceness = 0): Promise<Probe> {
    const argv = [process.execPath, PROBE_JS, CLIENT_JS, lab.host(host).ip, String(port)];
    const proc = lab.spawn(host, niceness === 0 ? argv : ['nice', '-n', String(niceness), ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new Probe(host, proc);
    await p.expect('ready', ANSWER_TIMEOUT_MS);
    return p;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  private expect(prefix: string, timeoutMs: number): Promise<string> {
    if (this.failure !== null) return Promise.reject(new Error(`probe at host ${this.host}: ${this.failure}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`probe at host ${this.host}: no '${prefix}' within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        prefix,
        resolve: (rest) => {
          clearTimeout(timer);
          resolve(rest);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  private ask(command: string, answer: string, timeoutMs = ANSWER_TIMEOUT_MS): Promise<string> {
    const p = this.expect(answer, timeoutMs);
    this.proc.stdin!.write(`${command}\n`);
    return p;
  }

  /** Submits k = first, first+step, … (count of them), the j-th at startMs + j·step·spacingMs (monotonic). */
  submit(startMs: number, spacingMs: number, first: number, count: number, step: number, bytes: number, timeoutMs: number): Promise<string> {
    return this.ask(`submit ${startMs} ${spacingMs} ${first} ${count} ${step} ${bytes}`, 'ok submit', timeoutMs);
  }

  async count(): Promise<number> {
    return Number(await this.ask('count', 'count'));
  }

  async dump(): Promise<ProbeDump> {
    return JSON.parse(await this.ask('dump', 'dump')) as ProbeDump;
  }

  cpuSeconds(): Promise<number | null> {
    return cpuSeconds(this.pid);
  }

  quit(): void {
    this.proc.stdin?.write('quit\n');
  }
}

/** One probe per listed host, in that order (the lab kills them in destroy() like every process it started). */
export function startProbes(lab: Lab, hosts: readonly number[], port: number, niceness = 0): Promise<Probe[]> {
  return Promise.all(hosts.map((h) => Probe.start(lab, h, port, niceness)));
}
