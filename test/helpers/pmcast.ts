// Seed 004 end to end, as a person would run it: config files on disk, the
// real `coordinator` and `participant` binaries, commands typed on the
// participant's standard input, one answer line per command on its standard
// output, and the message log files. The ok-lines and the logs are turned into
// a history for the shared checker (src/sim/pmcast-history.ts), which verifies
// DESIGN.md's four guarantees.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import { analysePmHistory } from '../../src/sim/pmcast-history.js';
import type { PmAccepted, PmAnalysis, PmEvent, PmHistory, PmUncertain, PmViolation } from '../../src/sim/pmcast-history.js';
import { pollUntil, ROOT, spawnNodeScript } from './proc.js';
import type { Proc } from './proc.js';

export const COORDINATOR = join(ROOT, 'dist/cli/coordinator.js');
export const PARTICIPANT = join(ROOT, 'dist/cli/participant.js');

/** Seed 004's coordinator config: line 1 the port, line 2 td in seconds. */
export function writeCoordinatorConfig(path: string, port: number, tdSeconds: number | string): string {
  writeFileSync(path, `${port}\n${tdSeconds}\n`);
  return path;
}

/** Seed 004's participant config: id, log file (relative to the config's directory), "IP PORT". */
export function writeParticipantConfig(path: string, id: string, logFile: string, coordinatorPort: number): string {
  writeFileSync(path, `${id}\n${logFile}\n127.0.0.1 ${coordinatorPort}\n`);
  return path;
}

// ---- ok-lines -------------------------------------------------------------

export type OkLine =
  | { readonly kind: 'register' | 'reconnect'; readonly port: number; readonly atMs: number; readonly afterSeq: number }
  | { readonly kind: 'disconnect' | 'deregister'; readonly atMs: number; readonly afterSeq: number }
  | { readonly kind: 'msend'; readonly seq: number; readonly atMs: number }
  | { readonly kind: 'quit' };

/** Parses one answer line of the participant; undefined when it is not an ok-line of the documented shape. */
export function parseOk(line: string): OkLine | undefined {
  let m = /^ok (register|reconnect) port=(\d+) at=(\d+) seq=(\d+)$/.exec(line);
  if (m) return { kind: m[1] as 'register' | 'reconnect', port: Number(m[2]), atMs: Number(m[3]), afterSeq: Number(m[4]) };
  m = /^ok (disconnect|deregister) at=(\d+) seq=(\d+)$/.exec(line);
  if (m) return { kind: m[1] as 'disconnect' | 'deregister', atMs: Number(m[2]), afterSeq: Number(m[3]) };
  m = /^ok msend seq=(\d+) at=(\d+)$/.exec(line);
  if (m) return { kind: 'msend', seq: Number(m[1]), atMs: Number(m[2]) };
  if (line === 'ok quit') return { kind: 'quit' };
  return undefined;
}

/** Decodes one log line (DESIGN.md: a newline inside a message is written as \n, a backslash as \\). */
export function decodeLogLine(line: string): string {
  return line.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

// ---- the coordinator ------------------------------------------------------

export class Coordinator {
  proc!: Proc;

  private constructor(
    private readonly t: TestContext,
    readonly configPath: string,
    readonly port: number,
    readonly args: readonly string[],
  ) {}

  /** Starts `coordinator CONFIG ...args` and waits for its 'coordinator up' line; killed (-9) in t.after. */
  static async start(t: TestContext, configPath: string, port: number, args: readonly string[] = []): Promise<Coordinator> {
    const c = new Coordinator(t, configPath, port, args);
    await c.restart();
    return c;
  }

  /** (Re)starts the process with the same config and arguments (so the same data directory). */
  async restart(): Promise<void> {
    this.proc = spawnNodeScript(this.t, 'coordinator', COORDINATOR, [this.configPath, ...this.args]);
    await this.proc.waitForLine('stderr', (l) => l.includes('"msg":"coordinator up"'), 10_000, "'coordinator up'");
  }

  kill9(): Promise<unknown> {
    return this.proc.kill9();
  }
}

// ---- a participant, driven through its standard input ---------------------

/**
 * One participant: its config and log files, and the processes that ran it
 * (a restart keeps the history). `command` writes one line to stdin and
 * resolves with the next stdout line; every ok-line is recorded as an event
 * (register/disconnect/reconnect/deregister with the coordinator's `at` and
 * `seq`) or an accepted message (msend's `seq` and `at`); an msend answered
 * with an error is recorded as uncertain (the coordinator may have accepted
 * it just before it died).
 */
export class PmParticipant {
  readonly configPath: string;
  readonly logPath: string;
  readonly events: PmEvent[] = [];
  readonly sent: PmAccepted[] = [];
  readonly uncertain: PmUncertain[] = [];
  /** Every command line and its answer, for failure messages. */
  readonly transcript: string[] = [];
  proc: Proc | undefined;
  private answered = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly t: TestContext,
    readonly id: string,
    dir: string,
    coordinatorPort: number,
    private readonly args: readonly string[] = [],
  ) {
    this.configPath = writeParticipantConfig(join(dir, `${id}.conf`), id, `${id}.log`, coordinatorPort);
    this.logPath = join(dir, `${id}.log`);
  }

  /** Starts `participant CONFIG` (again, after a kill); killed (-9) in t.after. */
  start(): this {
    this.proc = spawnNodeScript(this.t, `participant ${this.id}`, PARTICIPANT, [this.configPath, ...this.args], { stdin: 'pipe', linesMax: 1_000_000 });
    this.answered = 0;
    return this;
  }

  /** Writes `line` to stdin; resolves with the next stdout line (commands are answered in order). */
  command(line: string, timeoutMs = 15_000): Promise<string> {
    const run = this.queue.then(() => this.exchange(line, timeoutMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Runs a command that must succeed; returns its parsed ok-line. */
  async ok(line: string): Promise<OkLine> {
    const answer = await this.command(line);
    const ok = parseOk(answer);
    assert.ok(ok, `${this.id}: '${line}' answered '${answer}'`);
    return ok;
  }

  async register(port: number): Promise<OkLine> {
    return this.ok(`register ${port}`);
  }

  async reconnect(port: number): Promise<OkLine> {
    return this.ok(`reconnect ${port}`);
  }

  async disconnect(): Promise<OkLine> {
    return this.ok('disconnect');
  }

  async deregister(): Promise<OkLine> {
    return this.ok('deregister');
  }

  async msend(text: string): Promise<PmAccepted> {
    await this.ok(`msend ${text}`);
    return this.sent[this.sent.length - 1]!;
  }

  /** `quit`: must answer 'ok quit' and exit 0 at once, although its standard input stays open. */
  async quit(): Promise<void> {
    const answer = await this.command('quit');
    assert.equal(answer, 'ok quit', `${this.id}: quit`);
    const e = await Promise.race([this.proc!.exited, sleep(3_000, undefined, { ref: false })]);
    assert.ok(e, `${this.id}: still running 3 s after 'ok quit'`);
    assert.equal(e.code, 0, `${this.id}: exit status after quit; stderr: ${this.proc!.stderr.join('\n')}`);
  }

  /** kill -9 by PID, recorded as a crash event (the coordinator still counts it online). */
  async kill9(): Promise<void> {
    const atMs = Date.now();
    await this.proc!.kill9();
    this.events.push({ kind: 'crash', atMs });
  }

  /** The message log as a person reads it: one decoded message per line. */
  log(): string[] {
    if (!existsSync(this.logPath)) return [];
    const text = readFileSync(this.logPath, 'utf8');
    const lines = text.split('\n');
    const last = lines.pop();
    // A torn last line would be a broken log: keep it so the checker flags it.
    if (last !== '' && last !== undefined) lines.push(last);
    return lines.map(decodeLogLine);
  }

  private async exchange(line: string, timeoutMs: number): Promise<string> {
    const proc = this.proc;
    assert.ok(proc?.running, `${this.id}: not running, cannot send '${line}'`);
    const index = this.answered++;
    proc.child.stdin!.write(`${line}\n`);
    await proc.waitForLine('stdout', () => proc.seen.stdout > index, timeoutMs, `the answer to '${line}'`);
    const answer = proc.stdout[index - (proc.seen.stdout - proc.stdout.length)]!;
    this.transcript.push(`${line} -> ${answer}`);
    this.record(line, answer);
    return answer;
  }

  private record(line: string, answer: string): void {
    const ok = parseOk(answer);
    if (line.startsWith('msend ')) {
      const text = line.slice('msend '.length);
      if (ok?.kind === 'msend') this.sent.push({ seq: ok.seq, sender: this.id, text, acceptedMs: ok.atMs });
      else this.uncertain.push({ sender: this.id, text });
      return;
    }
    if (ok && ok.kind !== 'msend' && ok.kind !== 'quit') this.events.push({ kind: ok.kind, atMs: ok.atMs, afterSeq: ok.afterSeq });
  }
}

// ---- history and guarantees -----------------------------------------------

/** The history of a run: messages from the msend ok-lines, events from the other ok-lines, logs from the files. */
export function buildHistory(tdMs: number, participants: readonly PmParticipant[]): PmHistory {
  return {
    tdMs,
    accepted: participants.flatMap((p) => p.sent),
    uncertain: participants.flatMap((p) => p.uncertain),
    participants: participants.map((p) => ({ id: p.id, log: p.log(), events: [...p.events] })),
  };
}

function describeViolations(vs: readonly PmViolation[], participants: readonly PmParticipant[]): string {
  const shown = vs.slice(0, 20).map((v) => `  [${v.participant || '*'}] guarantee ${v.guarantee}: ${v.detail}`);
  const transcripts = participants.map((p) => `  ${p.id}: ${p.transcript.slice(-12).join(' | ')}`);
  return `${vs.length} violation(s):\n${shown.join('\n')}\nlast commands:\n${transcripts.join('\n')}`;
}

/**
 * Waits (up to `timeoutMs`) until the logs hold every message they are owed,
 * then asserts that all four guarantees hold. Logs only grow, so a duplicate or
 * forbidden message cannot disappear by waiting: only misses can be cured.
 */
export async function assertGuarantees(tdMs: number, participants: readonly PmParticipant[], timeoutMs = 5_000): Promise<PmAnalysis> {
  let analysis: PmAnalysis | undefined;
  try {
    await pollUntil(
      'the logs satisfy the four guarantees',
      async () => {
        analysis = analysePmHistory(buildHistory(tdMs, participants));
        return { ok: analysis.violations.length === 0, detail: analysis.violations.length };
      },
      { timeoutMs, intervalMs: 100 },
    );
  } catch {
    // Reported below with the violations themselves.
  }
  assert.ok(analysis);
  assert.equal(analysis.violations.length, 0, describeViolations(analysis.violations, participants));
  return analysis;
}

/** True when nothing listens on 127.0.0.1:port (the participant released its receiver port). */
export async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** Holds 127.0.0.1:port until t.after. */
export async function holdPort(t: TestContext, port: number): Promise<net.Server> {
  const s = net.createServer((sock) => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
  });
  t.after(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return s;
}

/** Unique message texts: "<tag>-<n>". */
export function texts(tag: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${tag}-${i + 1}`);
}
