#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseCli, parsePort } from './args.js';
import { OperationalError, UsageError, runMain } from './exit.js';
import { CHAT_DEFAULTS, ChatConfigError, resolveChatConfig, startChatServer } from '../runtime/chat.js';

const HELP = `Usage: mserver [--group G] [--port P] [--interface IP]

Joins the multicast group G on the local interface IP and prints the text of
each datagram it receives alone on its own line on standard output, in the
order received. Nothing else goes to stdout; one "listening" line goes to
stderr once the group is joined. Stops cleanly on SIGINT or SIGTERM.

Options:
  --group G        IPv4 multicast group (default ${CHAT_DEFAULTS.group})
  --port P         UDP port, 1-65535 (default ${CHAT_DEFAULTS.port})
  --interface IP   address of the local interface to join on (default
                   ${CHAT_DEFAULTS.interface}); no other interface is used
  -h, --help       show this help

Output: one line per datagram. The text is decoded as UTF-8 with each invalid
byte sequence printed as U+FFFD; control characters other than TAB (CR, LF,
ESC, ...) are printed as \\xHH, so "a<LF>b" prints as a\\x0ab. Everything else,
backslashes included, is printed exactly as sent; an empty datagram prints as
an empty line.

Exit status: 0 after SIGINT/SIGTERM or when stdout is closed; 1 when the
socket fails (e.g. cannot join the group); 2 on bad usage, with one line on
stderr naming the problem.
`;

export async function mserverMain(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, {
    group: { type: 'string' },
    port: { type: 'string' },
    interface: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  let config;
  try {
    config = resolveChatConfig({ group: values.group, interface: values.interface, port: values.port === undefined ? undefined : parsePort(values.port, '--port') });
  } catch (err) {
    throw err instanceof ChatConfigError ? new UsageError(err.message) : err;
  }

  const server = await startChatServer(config, (text) => process.stdout.write(`${text}\n`)).catch((err: Error) => {
    throw new OperationalError(`cannot listen on ${config.group}:${config.port} via ${config.interface}: ${err.message}`);
  });
  const stop = () => void server.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // Announced only once the handlers are in place, so a signal sent on seeing it stops us cleanly.
  process.stderr.write(`mserver: listening on group ${config.group} port ${config.port} interface ${config.interface}\n`);
  // A reader that goes away (mserver | head -1) is a normal way to stop.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') process.stderr.write(`mserver: cannot write to stdout: ${err.message}\n`);
    process.exitCode = err.code === 'EPIPE' ? 0 : 1;
    stop();
  });
  await server.closed.catch((err: Error) => {
    throw new OperationalError(`socket failed: ${err.message}`);
  });
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

// Runs only as the program itself, so `grapevine mserver` can import mserverMain in-process.
if (isMainModule(import.meta.url)) await runMain('mserver', () => mserverMain(process.argv.slice(2)));

function isMainModule(url: string): boolean {
  try {
    return url === pathToFileURL(realpathSync(process.argv[1] ?? '')).href;
  } catch {
    return false;
  }
}
