import type { RemoteInfo, Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMulticastGroup, openMulticastReceiver, openMulticastSender, sendDatagram } from './multicast.js';
import type { MulticastConfig } from './multicast.js';

/**
 * Multicast chat of seed 001 (DESIGN.md "Multicast chat"): `mclient` sends each
 * line as one datagram to a group, every `mserver` in the group prints each
 * datagram's text alone on its own line. The reusable pieces live here so the
 * binaries stay thin.
 */
export type ChatConfig = MulticastConfig;

export const CHAT_DEFAULTS: ChatConfig = Object.freeze({ group: '239.255.77.1', port: 7700, interface: '127.0.0.1', ttl: 1 });

/**
 * Largest line (UTF-8 bytes, without its line break) that mclient sends: one
 * line is one datagram, and a longer line is refused rather than truncated or
 * split. 8 KiB keeps each datagram far below UDP's 65,507-byte ceiling.
 */
export const MAX_CHAT_LINE_BYTES = 8 * 1024;

/**
 * Receive buffer asked for by mserver: a burst of lines must not overflow the
 * kernel queue while the process is busy writing stdout. The kernel caps it at
 * net.core.rmem_max, which is fine: mclient also paces its sends.
 */
export const CHAT_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/** mclient pacing: after this many datagrams it yields for PACE_PAUSE_MS. */
export const PACE_BURST_DATAGRAMS = 32;
export const PACE_PAUSE_MS = 1;

/** A bad chat setting, naming the command-line option it came from. */
export class ChatConfigError extends RangeError {
  override name = 'ChatConfigError';
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
  }
}

/** Every IPv4 address of this host's interfaces (127.0.0.1 included). */
export function localIPv4Addresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => a.family === 'IPv4')
    .map((a) => a.address);
}

/**
 * Fills in defaults and checks a chat configuration. The interface must be an
 * IPv4 address of this host: never 0.0.0.0, which would let the kernel pick
 * the outgoing interface (DESIGN.md "Safe network defaults").
 */
export function resolveChatConfig(partial: Partial<ChatConfig>, localAddresses: readonly string[] = localIPv4Addresses()): ChatConfig {
  const c: ChatConfig = { ...CHAT_DEFAULTS, ...dropUndefined(partial) };
  if (!isIPv4(c.group) || !isMulticastGroup(c.group)) {
    throw new ChatConfigError('--group', `--group must be an IPv4 multicast address (224.0.0.0-239.255.255.255), got '${c.group}'`);
  }
  if (!isIPv4(c.interface) || c.interface === '0.0.0.0') {
    throw new ChatConfigError('--interface', `--interface must be the IPv4 address of one local interface, got '${c.interface}'`);
  }
  if (!localAddresses.includes(c.interface)) {
    throw new ChatConfigError('--interface', `--interface ${c.interface} is not an address of this host (have: ${localAddresses.join(', ') || 'none'})`);
  }
  if (!(Number.isInteger(c.port) && c.port >= 1 && c.port <= 65_535)) throw new ChatConfigError('--port', `--port must be 1-65535, got ${c.port}`);
  if (!(Number.isInteger(c.ttl) && c.ttl >= 1 && c.ttl <= 255)) throw new ChatConfigError('--ttl', `--ttl must be 1-255, got ${c.ttl}`);
  return c;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// Not fatal: invalid UTF-8 becomes U+FFFD. ignoreBOM keeps a leading BOM as sent.
const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * The text mserver prints for one datagram, always exactly one line: UTF-8 is
 * decoded with each invalid sequence replaced by U+FFFD, and control
 * characters other than TAB (C0, DEL, C1 — line breaks and terminal escapes
 * among them) are shown as `\xHH`, so a datagram can neither break the
 * one-line-per-datagram output nor drive the terminal. Everything else,
 * backslashes included, is printed exactly as sent.
 */
export function formatChatLine(datagram: Uint8Array): string {
  return utf8.decode(datagram).replace(/(?!\t)\p{Cc}/gu, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A line of input longer than the limit; nothing of it was sent. */
export class LineTooLongError extends RangeError {
  override name = 'LineTooLongError';
  constructor(
    readonly lineNumber: number,
    readonly maxBytes: number,
  ) {
    super(`line ${lineNumber} is longer than ${maxBytes} bytes, the most one datagram carries`);
  }
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Splits a byte stream into lines at LF, dropping one CR before it (CRLF
 * input). A last line without a line break still counts; an empty line is a
 * line. Holds at most one line of at most `maxBytes` (+1 for a CR) in memory
 * and throws LineTooLongError as soon as a line grows beyond it.
 */
export class LineSplitter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private lineNumber = 0;

  constructor(private readonly maxBytes: number = MAX_CHAT_LINE_BYTES) {}

  /**
   * The lines that `chunk` completes. Lazy on purpose: the lines before a
   * too-long one in the same chunk are yielded (and sent) before the error is
   * thrown. Consume it fully before the next push.
   */
  *push(chunk: Uint8Array): Generator<Uint8Array, void, undefined> {
    let start = 0;
    for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, start)) {
      this.append(chunk.subarray(start, lf));
      start = lf + 1;
      yield this.takeLine();
    }
    this.append(chunk.subarray(start));
  }

  /** The last line when the input did not end with a line break. */
  end(): Uint8Array[] {
    return this.pendingBytes > 0 ? [this.takeLine()] : [];
  }

  private append(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.pendingBytes += piece.length;
    // One byte of slack for the CR of a CRLF line break, which is not sent.
    if (this.pendingBytes > this.maxBytes + 1) throw new LineTooLongError(this.lineNumber + 1, this.maxBytes);
    this.pending.push(piece);
  }

  private takeLine(): Uint8Array {
    this.lineNumber += 1;
    let line = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    if (line.length > this.maxBytes) throw new LineTooLongError(this.lineNumber, this.maxBytes);
    return line;
  }
}

/** The lines of a byte stream (e.g. process.stdin), read as the consumer asks. */
export async function* readLines(input: AsyncIterable<Uint8Array | string>, maxBytes = MAX_CHAT_LINE_BYTES): AsyncGenerator<Uint8Array> {
  const splitter = new LineSplitter(maxBytes);
  for await (const chunk of input) yield* splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  yield* splitter.end();
}

export interface ChatServer {
  readonly socket: Socket;
  /** Resolves once close() has run; rejects if the socket fails. */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/**
 * Joins the group on the configured interface and calls onLine with each
 * datagram's printable text (formatChatLine), in the order received.
 */
export async function startChatServer(config: ChatConfig, onLine: (text: string, datagram: Uint8Array, from: RemoteInfo) => void): Promise<ChatServer> {
  const socket = await openMulticastReceiver(config);
  socket.setRecvBufferSize(CHAT_RECV_BUFFER_BYTES);
  let closing = false;
  let settle!: { resolve: () => void; reject: (err: Error) => void };
  const closed = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  // Marked handled here so a failure nobody awaits does not crash the process;
  // callers awaiting `closed` still see the rejection.
  closed.catch(() => {});
  socket.on('message', (msg, from) => onLine(formatChatLine(msg), msg, from));
  socket.on('error', (err) => {
    closing = true;
    socket.close();
    settle.reject(err);
  });
  const close = async () => {
    if (!closing) {
      closing = true;
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      settle.resolve();
    }
    return closed;
  };
  return { socket, closed, close };
}

export interface SendOptions {
  /** Stops sending after the datagram in flight (e.g. on SIGINT). */
  readonly signal?: AbortSignal;
}

/**
 * Sends each line as one datagram to the group, out of the configured
 * interface only, one at a time (each send completes before the next) and
 * paced so a burst does not overflow the receivers' buffers. Refuses a line
 * over MAX_CHAT_LINE_BYTES with LineTooLongError; the lines before it are sent.
 * Returns how many datagrams were sent.
 */
export async function sendChatLines(config: ChatConfig, lines: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: SendOptions = {}): Promise<number> {
  const socket = await openMulticastSender(config);
  let sent = 0;
  try {
    for await (const line of lines) {
      if (opts.signal?.aborted) break;
      if (line.length > MAX_CHAT_LINE_BYTES) throw new LineTooLongError(sent + 1, MAX_CHAT_LINE_BYTES);
      await sendDatagram(socket, line, config.port, config.group);
      sent += 1;
      if (sent % PACE_BURST_DATAGRAMS === 0) await sleep(PACE_PAUSE_MS);
    }
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
  return sent;
}
