#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, LOG_LEVELS } from '../runtime/log.js';
import type { LogLevel } from '../runtime/log.js';
import { CoordinatorServer } from '../runtime/pm-coordinator.js';
import { parseCli } from './args.js';
import { OperationalError, UsageError, runMain } from './exit.js';
import { readCoordinatorConfig } from './pm-config.js';

const HELP = `Usage: coordinator CONFIG [--host IP] [--data-dir DIR] [--fsync] [--log-level LEVEL]

Seed 004's multicast coordinator. CONFIG has two lines: the TCP port to listen
on, and the persistence threshold td in seconds (a decimal number is allowed).
It keeps the group, each member's delivery position and the messages of the
last td seconds in SQLite under DIR (default: CONFIG's directory, CONFIG.data).
A command is acknowledged only after it is committed (commands arriving
together share one commit), so an acknowledged message survives a kill -9 and
a restarted coordinator resumes where it stopped.

  --host IP          address to listen on (default 127.0.0.1)
  --data-dir DIR     durable store
  --fsync            also flush each commit to the disk before acknowledging, so
                     acknowledged messages survive a power cut (slower)
  --log-level LEVEL  trace|debug|info|warn|error|fatal|silent (default info; JSON on stderr)

Exit status: 0 after SIGINT/SIGTERM; 1 when the port is taken or the store fails;
2 on bad usage or a bad config file (the file and line are named).
`;

export async function coordinatorMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { host: { type: 'string' }, 'data-dir': { type: 'string' }, fsync: { type: 'boolean' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('give exactly one argument: the config file (see --help)');
  const path = positionals[0]!;
  const config = readCoordinatorConfig(path);
  const host = values.host ?? '127.0.0.1';
  if (isIP(host) === 0) throw new UsageError(`--host must be an IP address, got '${host}'`);
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const dataDir = values['data-dir'] ?? join(dirname(resolve(path)), `${basename(path)}.data`);
  const log = createLogger(level, { component: 'coordinator' });
  const server = new CoordinatorServer({ host, port: config.port, tdMs: config.tdMs, dataDir, log, fsync: values.fsync ?? false });
  try {
    await server.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new OperationalError(`${host}:${config.port} is already in use`);
    if (code === 'EADDRNOTAVAIL') throw new UsageError(`${host} is not an address of this machine`);
    throw new OperationalError(`cannot start: ${(err as Error).message}`);
  }
  await new Promise<void>((done) => {
    const stop = () => void server.stop().then(done, done);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runMain('coordinator', () => coordinatorMain(process.argv.slice(2)));
}
