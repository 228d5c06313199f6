/**
 * The participant of seed 004, sans-IO: parses a command line, checks it
 * against the participant's own state (so "msend before register" or
 * "reconnect while online" are answered locally in one clear line), and
 * decides which delivered messages are new. Delivered seqs only grow; a seq
 * at or below the last one logged is a duplicate (guarantee 3), also across
 * a restart, since `lastSeq` is restored from the state beside the log.
 */
export type ParticipantState = 'unregistered' | 'online' | 'offline';

export type ParticipantCommand =
  | { readonly kind: 'register'; readonly port: number }
  | { readonly kind: 'deregister' }
  | { readonly kind: 'disconnect' }
  | { readonly kind: 'reconnect'; readonly port: number }
  | { readonly kind: 'msend'; readonly text: string }
  | { readonly kind: 'quit' };

export type Parsed = { readonly ok: true; readonly command: ParticipantCommand } | { readonly ok: false; readonly error: string } | { readonly ok: true; readonly command: undefined };

/** Parses one line of standard input; blank lines parse to no command. */
export function parseCommand(line: string): Parsed {
  const trimmed = line.replace(/\r$/, '');
  if (trimmed.trim() === '') return { ok: true, command: undefined };
  const m = /^\s*(\S+)(?:\s(.*))?$/.exec(trimmed)!;
  const verb = m[1]!.toLowerCase();
  const rest = m[2] ?? '';
  const port = (): Parsed => {
    const p = rest.trim();
    if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65_535) {
      return { ok: false, error: `${verb} needs a port number from 1 to 65535${p ? `, got '${p}'` : ''}` };
    }
    return { ok: true, command: { kind: verb as 'register' | 'reconnect', port: Number(p) } };
  };
  switch (verb) {
    case 'register':
    case 'reconnect':
      return port();
    case 'deregister':
    case 'disconnect':
    case 'quit':
      if (rest.trim() !== '') return { ok: false, error: `${verb} takes no argument` };
      return { ok: true, command: { kind: verb } };
    case 'msend':
      // MESSAGE is the rest of the line after one space, exactly as typed.
      if (rest.length === 0) return { ok: false, error: 'msend needs a message: msend MESSAGE' };
      return { ok: true, command: { kind: 'msend', text: rest } };
    default:
      return { ok: false, error: `unknown command '${m[1]}' (commands: register PORT, deregister, disconnect, reconnect PORT, msend MESSAGE, quit)` };
  }
}

/** Why `command` cannot run in `state`, or undefined when it can. */
export function refuse(state: ParticipantState, command: ParticipantCommand): string | undefined {
  switch (command.kind) {
    case 'register':
      return state === 'unregistered' ? undefined : 'already registered (deregister first to register again)';
    case 'deregister':
      return state === 'unregistered' ? 'not registered' : undefined;
    case 'disconnect':
      if (state === 'unregistered') return 'not registered';
      return state === 'offline' ? 'already offline' : undefined;
    case 'reconnect':
      if (state === 'unregistered') return 'not registered: register first';
      return state === 'online' ? 'already online (disconnect first)' : undefined;
    case 'msend':
      return state === 'unregistered' ? 'not registered: register first' : undefined;
    case 'quit':
      return undefined;
  }
}

/** The state after `command` succeeded. */
export function nextState(state: ParticipantState, command: ParticipantCommand): ParticipantState {
  switch (command.kind) {
    case 'register':
    case 'reconnect':
      return 'online';
    case 'disconnect':
      return 'offline';
    case 'deregister':
      return 'unregistered';
    default:
      return state;
  }
}

/** Encodes a message for the log: one line; newline as \n, backslash as \\ (DESIGN.md section 1). */
export function logLine(text: string): string {
  return `${text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`;
}

/** Keeps the last logged seq; says which delivered messages are new. */
export class DeliveryFilter {
  constructor(private last: number) {}

  get lastSeq(): number {
    return this.last;
  }

  /** The messages of a delivery that are new, in order; the filter moves past them. */
  accept<T extends { readonly seq: number }>(messages: readonly T[]): T[] {
    const fresh: T[] = [];
    for (const m of messages) {
      if (m.seq <= this.last) continue;
      fresh.push(m);
      this.last = m.seq;
    }
    return fresh;
  }

  /** Registering again makes a new member: seqs restart being judged from the coordinator's answer. */
  reset(to: number): void {
    this.last = to;
  }
}
