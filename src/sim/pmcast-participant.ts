import type { PmCommand, PmErrorCode, PmResult } from '../core/pmcast/coordinator.js';
import { DeliveryFilter, nextState, parseCommand, refuse } from '../core/pmcast/participant.js';
import type { ParticipantCommand, ParticipantState } from '../core/pmcast/participant.js';
import type { PmDelivered, PmFrame } from './pmcast-coordinator.js';
import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';
import type { StreamEnd, StreamNet } from './streams.js';

export interface PmParticipantKnobs {
  /** Each disk write (a log line, the state) takes 0..diskMsMax ms; a crash in between loses what is not written. */
  readonly diskMsMax: number;
  /** A command with no answer by then fails (the participant prints an error). */
  readonly commandTimeoutMs: number;
}

export type CommandOutcome =
  | { readonly kind: 'invalid'; readonly why: string }
  | { readonly kind: 'refused'; readonly why: string }
  | { readonly kind: 'ok'; readonly command: ParticipantCommand; readonly result: Extract<PmResult, { ok: true }> }
  | { readonly kind: 'error'; readonly command: ParticipantCommand; readonly code: PmErrorCode }
  /** No answer (coordinator down, stream broken, timeout): the command may or may not have been applied. */
  | { readonly kind: 'failed'; readonly command: ParticipantCommand };

type DiskStep = { readonly kind: 'line'; readonly text: string } | { readonly kind: 'state'; readonly seq: number } | { readonly kind: 'ack'; readonly end: StreamEnd<PmFrame>; readonly seq: number };

/**
 * A participant process around the participant core, with a simulated disk:
 * the message log (one text per line) and, beside it, the state file
 * {lastSeq, logLines}. Each new message is written in two steps: its log
 * line, then the state (its seq and the log's new length); a delivery is
 * acknowledged only after the state of its last new message is written.
 *
 * A crash between the two writes leaves a log line the state does not count.
 * On start the log is cut back to the state's logLines: those lines' seqs were
 * never recorded, so they were never acknowledged either, and the coordinator
 * sends them again (resume from its acked seq); the filter (restored from
 * lastSeq) takes them as new and they are written once. Nothing is written
 * twice and nothing acknowledged is lost.
 *
 * After a restart it does not know whether it is registered: it takes itself
 * for offline, so `reconnect PORT` resumes (or is refused as not registered).
 */
export class SimParticipant {
  /** Durable: the log file and the state beside it. */
  readonly log: string[] = [];
  readonly saved = { lastSeq: 0, logLines: 0 };
  readonly stats = { commands: 0, failed: 0, duplicatesDropped: 0, linesCut: 0, crashes: 0, crashesBetweenWrites: 0 };
  status: ParticipantState = 'unregistered';
  running = false;
  /** Crash right after the next log line is written, before its state (a fault the scenario arms). */
  crashAfterNextLine = false;
  /** Called after every crash (the cluster records it in the history). */
  onCrash: () => void = () => {};
  private started = false;
  private instance = 0;
  private filter = new DeliveryFilter(0);
  private receiver: { readonly port: number; readonly ends: Set<StreamEnd<PmFrame>> } | undefined;
  private inFlight: { readonly end: StreamEnd<PmFrame>; settle(outcome: CommandOutcome): void } | undefined;
  private readonly disk: DiskStep[] = [];
  private diskBusy = false;

  constructor(
    readonly id: string,
    private readonly scheduler: Scheduler,
    private readonly net: StreamNet<PmFrame>,
    private readonly random: SimRandom,
    private readonly coordinator: { readonly node: string; readonly port: number },
    private readonly knobs: PmParticipantKnobs,
  ) {
    net.attach(id);
  }

  get busy(): boolean {
    return this.inFlight !== undefined;
  }

  get diskIdle(): boolean {
    return this.disk.length === 0 && !this.diskBusy;
  }

  get receiverPort(): number | undefined {
    return this.receiver?.port;
  }

  start(): void {
    if (this.running) throw new Error(`${this.id} is running`);
    this.running = true;
    this.instance += 1;
    if (this.log.length > this.saved.logLines) {
      this.stats.linesCut += this.log.length - this.saved.logLines;
      this.log.length = this.saved.logLines;
    }
    this.filter = new DeliveryFilter(this.saved.lastSeq);
    this.status = this.started ? 'offline' : 'unregistered';
    this.started = true;
  }

  crash(): void {
    if (!this.running) return;
    this.stats.crashes += 1;
    this.running = false;
    this.instance += 1;
    this.receiver = undefined;
    this.inFlight = undefined;
    this.disk.length = 0;
    this.diskBusy = false;
    this.crashAfterNextLine = false;
    this.net.crash(this.id);
    this.onCrash();
  }

  /** Runs one line of standard input; `done` gets the outcome (never called if the process crashes first). */
  command(line: string, done: (outcome: CommandOutcome) => void): void {
    if (!this.running || this.inFlight) throw new Error(`${this.id} cannot take a command now`);
    const parsed = parseCommand(line);
    if (!parsed.ok) return done({ kind: 'invalid', why: parsed.error });
    const command = parsed.command;
    if (!command || command.kind === 'quit') return done({ kind: 'invalid', why: 'no command for the simulation' });
    const why = refuse(this.status, command);
    if (why) return done({ kind: 'refused', why });
    this.stats.commands += 1;
    if (command.kind === 'register' || command.kind === 'reconnect') this.openReceiver(command.port);
    const instance = this.instance;
    let settled = false;
    const settle = (outcome: CommandOutcome): void => {
      if (settled || this.instance !== instance) return;
      settled = true;
      this.inFlight = undefined;
      this.after(command, outcome);
      done(outcome);
    };
    const end = this.net.connect(this.id, this.coordinator.node, this.coordinator.port, {
      data: (_e, frame) => {
        if (frame.kind !== 'answer') return;
        end.close();
        const r = frame.result;
        settle(r.ok ? { kind: 'ok', command, result: r } : { kind: 'error', command, code: r.code });
      },
      closed: () => settle({ kind: 'failed', command }),
    });
    this.inFlight = { end, settle };
    end.send({ kind: 'command', command: this.wire(command) });
    this.scheduler.after(this.knobs.commandTimeoutMs, () => {
      if (settled || this.instance !== instance) return;
      end.close();
      settle({ kind: 'failed', command });
    });
  }

  private wire(c: Exclude<ParticipantCommand, { kind: 'quit' }>): PmCommand {
    switch (c.kind) {
      case 'register':
      case 'reconnect':
        return { kind: c.kind, id: this.id, host: this.id, port: c.port };
      case 'msend':
        return { kind: 'msend', id: this.id, text: c.text };
      default:
        return { kind: c.kind, id: this.id };
    }
  }

  /** The state after an answer (or none); the receiver is up exactly while it takes itself for online. */
  private after(command: ParticipantCommand, outcome: CommandOutcome): void {
    if (outcome.kind === 'failed') this.stats.failed += 1;
    if (outcome.kind === 'ok') this.status = nextState(this.status, command);
    if (outcome.kind === 'error') {
      // The coordinator knows better: follow it.
      if (outcome.code === 'not_registered') this.status = 'unregistered';
      else if (outcome.code === 'not_online' || outcome.code === 'already_registered') this.status = 'offline';
    }
    if (this.status !== 'online') this.closeReceiver();
  }

  private openReceiver(port: number): void {
    this.closeReceiver();
    const ends = new Set<StreamEnd<PmFrame>>();
    this.receiver = { port, ends };
    this.net.listen(this.id, port, (end) => {
      ends.add(end);
      return {
        data: (e, frame) => {
          if (frame.kind === 'deliver') this.deliver(e, frame.messages);
        },
        closed: (e) => {
          ends.delete(e);
        },
      };
    });
  }

  private closeReceiver(): void {
    const r = this.receiver;
    if (!r) return;
    this.receiver = undefined;
    this.net.unlisten(this.id, r.port);
    for (const end of r.ends) end.close();
  }

  private deliver(end: StreamEnd<PmFrame>, messages: readonly PmDelivered[]): void {
    if (messages.length === 0) return;
    const fresh = this.filter.accept(messages);
    this.stats.duplicatesDropped += messages.length - fresh.length;
    for (const m of fresh) this.disk.push({ kind: 'line', text: m.text }, { kind: 'state', seq: m.seq });
    this.disk.push({ kind: 'ack', end, seq: messages[messages.length - 1]!.seq });
    this.writeNext();
  }

  private writeNext(): void {
    if (this.diskBusy) return;
    const step = this.disk.shift();
    if (!step) return;
    if (step.kind === 'ack') {
      step.end.send({ kind: 'ack', seq: step.seq });
      return this.writeNext();
    }
    this.diskBusy = true;
    const instance = this.instance;
    this.scheduler.after(this.random.int(0, this.knobs.diskMsMax), () => {
      if (this.instance !== instance) return;
      this.diskBusy = false;
      if (step.kind === 'line') {
        this.log.push(step.text);
        if (this.crashAfterNextLine) {
          this.stats.crashesBetweenWrites += 1;
          this.crash();
          return;
        }
      } else {
        this.saved.lastSeq = step.seq;
        this.saved.logLines = this.log.length;
      }
      this.writeNext();
    });
  }
}
