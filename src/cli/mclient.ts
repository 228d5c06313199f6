#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseCli, parsePort, parsePositiveInt } from './args.js';
import { OperationalError, UsageError, runMain } from './exit.js';
import {
  CHAT_DEFAULTS,
  ChatConfigError,
  LineTooLongError,
  MAX_CHAT_LINE_BYTES,
  PACE_BURST_DATAGRAMS,
  PACE_PAUSE_MS,
  readLines,
  resolveChatConfig,
  sendChatLines,
} from '../runtime/chat.js';

const HELP = `Usage: mclient [--group G] [--port P] [--interface IP] [--ttl N] [--message TEXT]

Multicasts each line of standard input as one datagram to group G, port P,
out of the local interface IP only, and exits at the end of input. With
--message it sends TEXT once, as one datagram, and does not read stdin.

Lines: a line ends at LF; a CR just before the LF is dropped (CRLF input); a
last line without a line break is sent too. An empty line is sent as an empty
datagram (mserver prints an empty line). Bytes are sent as they are. A line
longer than ${MAX_CHAT_LINE_BYTES} bytes (8 KiB, what one datagram carries) is refused, never
truncated or split: mclient stops there with exit status 2, having sent only
the lines before it. Lines go out one at a time, with a ${PACE_PAUSE_MS} ms pause every
${PACE_BURST_DATAGRAMS} datagrams so a burst does not overflow the receivers.

Options:
  --group G        IPv4 multicast group (default ${CHAT_DEFAULTS.group})
  --port P         UDP port, 1-65535 (default ${CHAT_DEFAULTS.port})
  --interface IP   address of the local interface to send from (default
                   ${CHAT_DEFAULTS.interface}); no other interface is used
  --ttl N          multicast TTL, 1-255 (default ${CHAT_DEFAULTS.ttl}: not routed beyond the local network)
  --message TEXT   send TEXT (one line, at most ${MAX_CHAT_LINE_BYTES} bytes) instead of reading stdin
  -h, --help       show this help

Exit status: 0 when all input was sent, or on SIGINT/SIGTERM after the
datagram in flight; 1 when the socket fails; 2 on bad usage or a line that is
too long, with one line on stderr naming the problem.
`;

export async function mclientMain(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, {
    group: { type: 'string' },
    port: { type: 'string' },
    interface: { type: 'string' },
    ttl: { type: 'string' },
    message: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  let config;
  try {
    config = resolveChatConfig({
      group: values.group,
      interface: values.interface,
      port: values.port === undefined ? undefined : parsePort(values.port, '--port'),
      ttl: values.ttl === undefined ? undefined : parsePositiveInt(values.ttl, '--ttl', 255),
    });
  } catch (err) {
    throw err instanceof ChatConfigError ? new UsageError(err.message) : err;
  }
  const message = values.message === undefined ? undefined : Buffer.from(values.message);
  if (values.message !== undefined && /[\r\n]/.test(values.message)) {
    throw new UsageError('--message must be one line (no CR or LF); pipe several lines on standard input instead');
  }
  if (message && message.length > MAX_CHAT_LINE_BYTES) {
    throw new UsageError(`--message is ${message.length} bytes, over the ${MAX_CHAT_LINE_BYTES}-byte limit of one datagram`);
  }

  // SIGINT/SIGTERM: stop after the datagram in flight, and stop waiting for stdin.
  const abort = new AbortController();
  const stop = () => {
    abort.abort();
    process.stdin.destroy();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await sendChatLines(config, message ? [message] : readLines(process.stdin), { signal: abort.signal });
  } catch (err) {
    if (err instanceof LineTooLongError) {
      throw new UsageError(`${message ? '--message' : `line ${err.lineNumber} of standard input`} is longer than ${err.maxBytes} bytes, the most one datagram carries; it and any lines after it were not sent`);
    }
    if (abort.signal.aborted) return 0; // stdin torn down by stop()
    throw new OperationalError(`cannot send to ${config.group}:${config.port} via ${config.interface}: ${(err as Error).message}`);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}

// Runs only as the program itself, so `grapevine mclient` can import mclientMain in-process.
if (isMainModule(import.meta.url)) await runMain('mclient', () => mclientMain(process.argv.slice(2)));

function isMainModule(url: string): boolean {
  try {
    return url === pathToFileURL(realpathSync(process.argv[1] ?? '')).href;
  } catch {
    return false;
  }
}
