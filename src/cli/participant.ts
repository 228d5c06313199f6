#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseCommand } from '../core/pmcast/participant.js';
import { createLogger, LOG_LEVELS } from '../runtime/log.js';
import type { LogLevel } from '../runtime/log.js';
import { Participant, ParticipantError } from '../runtime/pm-participant.js';
import { parseCli, parsePositiveInt } from './args.js';
import { UsageError, runMain } from './exit.js';
import { readParticipantConfig } from './pm-config.js';

const HELP = `Usage: participant CONFIG [--timeout-ms MS] [--log-level LEVEL]

Seed 004's participant. CONFIG has three lines: the participant id; the message
log file (relative to CONFIG's directory unless absolute); the coordinator's
"IP PORT". Commands, one per line on standard input:

  register PORT     join the group; receive on PORT
  deregister        leave the group (register again = a new member)
  disconnect        go offline; messages are kept for td seconds
  reconnect PORT    come back online, receiving on PORT (it may differ)
  msend MESSAGE     multicast MESSAGE (the rest of the line) to the group
  quit              exit (end of input does the same)

Each command prints one line on stdout once the coordinator acknowledged it:
"ok register port=P at=T seq=N", "ok msend seq=N at=T", "ok disconnect at=T seq=N",
... (T: coordinator time in ms; seq: the message's number, or the last one
before the command), or "error: WHY", after which the participant keeps
running. Every message received is appended to the log, one line each, in the
order received (a newline inside a message as \\n, a backslash as \\\\); the last
received sequence number is kept in LOG.state so a restarted participant never
logs a message twice. The coordinator must answer within --timeout-ms
(default 5000) or the command fails with an error line.

Exit status: 0 on quit or end of input; 2 on bad usage or a bad config file.
`;

export async function participantMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { 'timeout-ms': { type: 'string' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('give exactly one argument: the config file (see --help)');
  const config = readParticipantConfig(positionals[0]!);
  const timeoutMs = values['timeout-ms'] ? parsePositiveInt(values['timeout-ms'], '--timeout-ms', 600_000) : 5_000;
  const level = (values['log-level'] ?? 'warn') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const participant = new Participant({ ...config, timeoutMs, log: createLogger(level, { participant: config.id }) });

  const say = (line: string) => process.stdout.write(`${line}\n`);
  const input = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  const onSignal = () => input.close();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  for await (const line of input) {
    const parsed = parseCommand(line);
    if (!parsed.ok) {
      say(`error: ${parsed.error}`);
      continue;
    }
    if (!parsed.command) continue;
    try {
      say(await participant.run(parsed.command));
    } catch (err) {
      if (!(err instanceof ParticipantError)) throw err;
      say(`error: ${err.message}`);
    }
    if (parsed.command.kind === 'quit') break;
  }
  await participant.close();
  // Leaving the loop on `quit` does not release standard input: while its writer
  // keeps it open (a terminal, a pipe) the process would not exit.
  process.stdin.destroy();
  return 0;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runMain('participant', () => participantMain(process.argv.slice(2)));
}
