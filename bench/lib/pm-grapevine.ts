/**
 * grapevine's seed-004 processes for the pmcast bench: the real `coordinator`
 * binary, the real `participant` binary (commands on stdin, its message log),
 * and a load-generating client that speaks the coordinator's protocol directly
 * (framed protobuf after the pmcast handshake) so one connection can carry one
 * request at a time or many (pipelining).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FramedConnection } from '../../src/runtime/connection.js';
import { connectAndGreet } from '../../src/runtime/handshake.js';
import { decodePmOkFrame, encodePmSendFrame } from '../../src/runtime/pm-frame.js';
import { decodeEnvelope } from '../../src/wire/index.js';
import type { Envelope, EnvelopeInit } from '../../src/wire/index.js';
import { onLines, running } from './lines.js';
import { LineProcess, stopChild, track } from './procs.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const COORDINATOR_JS = join(REPO, 'dist', 'cli', 'coordinator.js');
export const PARTICIPANT_JS = join(REPO, 'dist', 'cli', 'participant.js');

export interface CoordinatorSpec {
  readonly dir: string;
  readonly port: number;
  readonly tdSeconds: number;
  readonly fsync: boolean;
  /** Default: DIR/data. */
  readonly dataDir?: string;
}

export class CoordinatorProcess {
  private constructor(
    readonly spec: CoordinatorSpec,
    readonly proc: ChildProcess,
    readonly errors: string[],
  ) {}

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return running(this.proc);
  }

  /** Starts the coordinator and resolves once it logged 'coordinator up' (its port is bound, its store loaded). */
  static async start(spec: CoordinatorSpec, timeoutMs = 30_000): Promise<CoordinatorProcess> {
    mkdirSync(spec.dir, { recursive: true });
    const config = join(spec.dir, 'coordinator.conf');
    writeFileSync(config, `${spec.port}\n${spec.tdSeconds}\n`);
    const args = [COORDINATOR_JS, config, '--host', '127.0.0.1', '--data-dir', spec.dataDir ?? join(spec.dir, 'data'), '--log-level', 'info'];
    if (spec.fsync) args.push('--fsync');
    const proc = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const errors: string[] = [];
    const up = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`coordinator on port ${spec.port} not up within ${timeoutMs} ms (${errors.slice(-3).join(' | ')})`)), timeoutMs);
      onLines(proc, (line) => {
        if (line.includes('"coordinator up"')) {
          clearTimeout(timer);
          resolve();
        } else if (/"level":(50|60)/.test(line) || !line.startsWith('{')) {
          if (errors.length < 50) errors.push(line.trim());
        }
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`coordinator exited (${code ?? signal}) before it was up: ${errors.slice(-3).join(' | ')}`));
      });
    });
    await up;
    return new CoordinatorProcess(spec, proc, errors);
  }

  /** kill -9, and wait until it is gone. */
  kill9(): Promise<void> {
    return stopChild(this.proc, 'SIGKILL');
  }

  stop(): Promise<void> {
    return stopChild(this.proc, 'SIGTERM', 10_000);
  }
}

export interface PmOk {
  readonly seq: number;
  readonly acceptedMs: number;
}

interface PendingSend {
  resolve(ok: PmOk): void;
  reject(err: Error): void;
  readonly sentAtMs: number;
}

/** msend request ids: the upper half of uint32, apart from those FramedConnection.request hands out from 1 up. */
const SEND_ID_FIRST = 0x8000_0000;
const SEND_ID_LAST = 0xffff_ffff;

/**
 * One command connection to the coordinator, as participant `id`. msend is
 * what a fast client does: the frame encoded by hand (pm-frame.ts), its
 * answer read before the generated decoder, one timer per connection for the
 * timeouts instead of one per request.
 */
export class PmClient {
  private readonly sends = new Map<number, PendingSend>();
  private nextSendId = SEND_ID_FIRST;
  private readonly sweep: NodeJS.Timeout;

  private constructor(
    readonly id: string,
    readonly conn: FramedConnection,
    private readonly timeoutMs: number,
  ) {
    conn.setFrameHook((payload) => this.onFrame(payload));
    conn.on('close', () => this.failAll(new Error('connection closed before the answer')));
    this.sweep = setInterval(() => this.expire(), Math.min(1_000, timeoutMs)).unref();
  }

  static async connect(port: number, id: string, timeoutMs = 10_000): Promise<PmClient> {
    const { conn } = await connectAndGreet('127.0.0.1', port, { cluster: 'pmcast', id, incarnation: 0, role: 'client' }, { timeoutMs, expectCluster: 'pmcast' });
    return new PmClient(id, conn, timeoutMs);
  }

  get closed(): boolean {
    return this.conn.isClosed;
  }

  register(port: number): Promise<PmOk> {
    return this.request({ body: { case: 'pmRegister', value: { participant: this.id, host: '127.0.0.1', port } } });
  }

  disconnect(): Promise<PmOk> {
    return this.request({ body: { case: 'pmDisconnect', value: { participant: this.id } } });
  }

  /** msend: resolves with the message's seq and the coordinator's acceptance time once it is acknowledged. */
  send(text: string): Promise<PmOk> {
    if (this.conn.isClosed) return Promise.reject(new Error('connection closed'));
    const requestId = this.nextSendId;
    this.nextSendId = requestId === SEND_ID_LAST ? SEND_ID_FIRST : requestId + 1;
    return new Promise<PmOk>((resolve, reject) => {
      this.sends.set(requestId, { resolve, reject, sentAtMs: performance.now() });
      this.conn.sendFrame(encodePmSendFrame(requestId, this.id, text));
    });
  }

  close(): void {
    clearInterval(this.sweep);
    this.conn.close({ kind: 'local', why: 'bench done' });
  }

  /** Answers to our msends; anything else goes on to the connection's own decoding. */
  private onFrame(payload: Uint8Array): boolean {
    const ok = decodePmOkFrame(payload);
    if (ok) {
      const p = this.sends.get(ok.requestId);
      if (!p) return false;
      this.sends.delete(ok.requestId);
      p.resolve({ seq: ok.seq, acceptedMs: ok.acceptedMs });
      return true;
    }
    let env: Envelope;
    try {
      env = decodeEnvelope(payload);
    } catch {
      return false;
    }
    const p = env.response ? this.sends.get(env.requestId) : undefined;
    if (!p) return false;
    this.sends.delete(env.requestId);
    if (env.body.case === 'error') p.reject(new Error(`coordinator refused: ${env.body.value.message}`));
    else if (env.body.case === 'pmOk') p.resolve({ seq: Number(env.body.value.seq), acceptedMs: Number(env.body.value.acceptedMs) });
    else p.reject(new Error(`unexpected answer: ${env.body.case ?? 'nothing'}`));
    return true;
  }

  private expire(): void {
    const before = performance.now() - this.timeoutMs;
    for (const [requestId, p] of this.sends) {
      if (p.sentAtMs > before) continue;
      this.sends.delete(requestId);
      p.reject(new Error(`no answer within ${this.timeoutMs} ms`));
    }
  }

  private failAll(err: Error): void {
    clearInterval(this.sweep);
    for (const p of this.sends.values()) p.reject(err);
    this.sends.clear();
  }

  private async request(init: EnvelopeInit): Promise<PmOk> {
    const answer: Envelope = await this.conn.request(init, this.timeoutMs);
    if (answer.body.case === 'error') throw new Error(`coordinator refused: ${answer.body.value.message}`);
    if (answer.body.case !== 'pmOk') throw new Error(`unexpected answer: ${answer.body.case ?? 'nothing'}`);
    return { seq: Number(answer.body.value.seq), acceptedMs: Number(answer.body.value.acceptedMs) };
  }
}

/** The real `participant` binary with its config file; commands go to its stdin. */
export class ParticipantProcess extends LineProcess {
  constructor(
    readonly id: string,
    readonly logPath: string,
    configPath: string,
  ) {
    super(`participant ${id}`, process.execPath, [PARTICIPANT_JS, configPath, '--timeout-ms', '60000']);
  }

  static create(dir: string, id: string, coordinatorPort: number): ParticipantProcess {
    mkdirSync(dir, { recursive: true });
    const config = join(dir, `${id}.conf`);
    const logPath = join(dir, `${id}.log`);
    writeFileSync(config, `${id}\n${logPath}\n127.0.0.1 ${coordinatorPort}\n`);
    return new ParticipantProcess(id, logPath, config);
  }

  /** The coordinator time (ms) in an answer line ("ok reconnect port=P at=T seq=N"). */
  static at(line: string): number {
    const m = /\bat=(\d+)/.exec(line);
    if (!m) throw new Error(`no at= in '${line}'`);
    return Number(m[1]);
  }
}
