import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { logLine } from '../core/pmcast/participant.js';
import { writeFileAtomic } from './identity.js';

/**
 * The participant's message log (DESIGN.md: one line per message, nothing
 * else) and, beside it, `LOG.state`: the last seq logged, the log's length
 * then, and whether the participant is registered. Appending a batch is
 * journalled so a kill -9 at any instant neither loses nor repeats a line:
 *   1. state := {.., batch: [seqs], at: current length}   (atomic rename)
 *   2. append the lines
 *   3. state := {lastSeq: last of batch, bytes: new length} (atomic rename)
 * On open, a state with a batch means step 3 did not happen: the complete
 * lines after `at` are counted (that many of the batch's seqs were logged)
 * and a torn last line is cut off.
 */
export interface LogState {
  readonly lastSeq: number;
  readonly bytes: number;
  readonly registered: boolean;
  readonly batch?: readonly number[];
  readonly at?: number;
}

export class ParticipantLog {
  private fd: number;
  private state: LogState;

  private constructor(
    readonly path: string,
    readonly statePath: string,
  ) {
    this.fd = openSync(path, 'a+');
    this.state = this.recover();
  }

  static open(path: string): ParticipantLog {
    return new ParticipantLog(path, `${path}.state`);
  }

  get lastSeq(): number {
    return this.state.lastSeq;
  }

  get registered(): boolean {
    return this.state.registered;
  }

  setRegistered(registered: boolean): void {
    if (registered === this.state.registered) return;
    this.state = { ...this.state, registered };
    this.saveState();
  }

  /** Appends the messages (ascending, all new) as journalled above. */
  append(messages: readonly { seq: number; text: string }[]): void {
    if (messages.length === 0) return;
    const at = this.state.bytes;
    this.state = { ...this.state, batch: messages.map((m) => m.seq), at };
    this.saveState();
    const bytes = Buffer.from(messages.map((m) => logLine(m.text)).join(''), 'utf8');
    let written = 0;
    while (written < bytes.length) written += writeSync(this.fd, bytes, written, bytes.length - written, at + written);
    this.state = { lastSeq: messages[messages.length - 1]!.seq, bytes: at + bytes.length, registered: this.state.registered };
    this.saveState();
  }

  close(): void {
    closeSync(this.fd);
  }

  private saveState(): void {
    writeFileAtomic(this.statePath, `${JSON.stringify(this.state)}\n`);
  }

  private recover(): LogState {
    const size = fstatSync(this.fd).size;
    if (!existsSync(this.statePath)) {
      // A log without state: someone else's file or an old one. Keep it; count from its end.
      const s: LogState = { lastSeq: 0, bytes: size, registered: false };
      this.state = s;
      this.saveState();
      return s;
    }
    const saved = JSON.parse(readFileSync(this.statePath, 'utf8')) as LogState;
    if (!saved.batch || saved.at === undefined) {
      // Clean state. A longer log can only be a torn tail we never recorded: cut it.
      if (size > saved.bytes) ftruncateSync(this.fd, saved.bytes);
      return { lastSeq: saved.lastSeq, bytes: Math.min(size, saved.bytes), registered: saved.registered };
    }
    const tail = Buffer.alloc(Math.max(0, size - saved.at));
    readSync(this.fd, tail, 0, tail.length, saved.at);
    const lastNewline = tail.lastIndexOf(0x0a);
    const complete = lastNewline + 1;
    const lines = complete === 0 ? 0 : tail.subarray(0, complete).toString('utf8').split('\n').length - 1;
    ftruncateSync(this.fd, saved.at + complete);
    const logged = Math.min(lines, saved.batch.length);
    const recovered: LogState = {
      lastSeq: logged > 0 ? saved.batch[logged - 1]! : saved.lastSeq,
      bytes: saved.at + complete,
      registered: saved.registered,
    };
    this.state = recovered;
    this.saveState();
    return recovered;
  }
}
