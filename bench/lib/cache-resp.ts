/**
 * A small RESP2 client for the cache bench: pipelined commands on one
 * persistent TCP connection, replies matched in order, each stamped with
 * the moment its bytes arrived (performance clock, ms), so a poll's reply
 * time does not include promise scheduling in this process. Talks to
 * redis-server and to a grapevine node's --resp port alike (127.0.0.1 or a
 * lab relay's 127.0.0.1 port).
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export type RespReply = string | number | Buffer | null | RespError | RespReply[];

export class RespError extends Error {}

type Callback = (reply: RespReply, arrivedMs: number) => void;

const CRLF = Buffer.from('\r\n');
/** A parser result: the reply and the offset after it, or undefined when the buffer holds only part of it. */
type Parsed = { reply: RespReply; end: number } | undefined;

export class RespClient {
  private readonly waiting: Callback[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private closedWith: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly label: string,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk, performance.now()));
    const fail = (err: Error): void => {
      if (this.closedWith) return;
      this.closedWith = err;
      const ws = this.waiting.splice(0);
      for (const w of ws) w(new RespError(`${label}: ${err.message}`), performance.now());
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static open(host: string, port: number, label = `${host}:${port}`, timeoutMs = 5_000): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`${label}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(new RespClient(s, label));
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`${label}: ${err.message}`));
      });
    });
  }

  /** Connects, retrying until timeoutMs (a server still starting). */
  static async openRetry(host: string, port: number, label: string, timeoutMs: number): Promise<RespClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const c = await RespClient.open(host, port, label, Math.max(500, deadline - Date.now()));
        await c.call('PING');
        return c;
      } catch (err) {
        if (Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Sends one command; cb gets its reply (a RespError for -ERR or a broken connection) and the arrival time. */
  send(args: readonly (string | Buffer)[], cb: Callback): void {
    if (this.closedWith) {
      cb(new RespError(`${this.label}: ${this.closedWith.message}`), performance.now());
      return;
    }
    this.waiting.push(cb);
    this.socket.write(encodeCommand(args));
  }

  /** Sends many commands in one write; cb is called once per reply, in order. */
  sendMany(commands: readonly (readonly (string | Buffer)[])[], cb: (i: number, reply: RespReply, arrivedMs: number) => void): void {
    const parts: Buffer[] = [];
    commands.forEach((args, i) => {
      this.waiting.push((reply, t) => cb(i, reply, t));
      parts.push(encodeCommand(args));
    });
    if (this.closedWith) {
      const ws = this.waiting.splice(0);
      for (const w of ws) w(new RespError(`${this.label}: ${this.closedWith.message}`), performance.now());
      return;
    }
    this.socket.write(Buffer.concat(parts));
  }

  /** One command; rejects on an error reply. */
  call(...args: (string | Buffer)[]): Promise<RespReply> {
    return new Promise((resolve, reject) => {
      this.send(args, (reply) => (reply instanceof RespError ? reject(reply) : resolve(reply)));
    });
  }

  /** Many commands pipelined; resolves with every reply (error replies included as RespError). */
  pipeline(commands: readonly (readonly (string | Buffer)[])[]): Promise<RespReply[]> {
    return new Promise((resolve) => {
      const out: RespReply[] = new Array<RespReply>(commands.length);
      let left = commands.length;
      if (left === 0) return resolve(out);
      this.sendMany(commands, (i, reply) => {
        out[i] = reply;
        if (--left === 0) resolve(out);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer, t: number): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    for (;;) {
      const p = parseReply(this.buf, at);
      if (!p) break;
      at = p.end;
      const cb = this.waiting.shift();
      if (!cb) {
        this.socket.destroy(new Error('reply without a command'));
        return;
      }
      cb(p.reply, t);
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
  }
}

export function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, CRLF);
  }
  return Buffer.concat(parts);
}

function lineEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf(CRLF, from);
  return i;
}

export function parseReply(buf: Buffer, at: number): Parsed {
  if (at >= buf.length) return undefined;
  const type = buf[at];
  const eol = lineEnd(buf, at + 1);
  if (eol < 0) return undefined;
  const line = buf.toString('latin1', at + 1, eol);
  switch (type) {
    case 0x2b: // +
      return { reply: line, end: eol + 2 };
    case 0x2d: // -
      return { reply: new RespError(line), end: eol + 2 };
    case 0x3a: // :
      return { reply: Number(line), end: eol + 2 };
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return { reply: null, end: eol + 2 };
      const start = eol + 2;
      if (buf.length < start + n + 2) return undefined;
      return { reply: Buffer.from(buf.subarray(start, start + n)), end: start + n + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { reply: null, end: eol + 2 };
      const items: RespReply[] = [];
      let pos = eol + 2;
      for (let i = 0; i < n; i++) {
        const p = parseReply(buf, pos);
        if (!p) return undefined;
        items.push(p.reply);
        pos = p.end;
      }
      return { reply: items, end: pos };
    }
    default:
      throw new Error(`not a RESP reply (type byte ${type})`);
  }
}

export function replyText(r: RespReply): string {
  if (r === null) return '(nil)';
  if (Buffer.isBuffer(r)) return r.toString('utf8');
  if (r instanceof RespError) return `(error) ${r.message}`;
  if (Array.isArray(r)) return `[${r.map(replyText).join(', ')}]`;
  return String(r);
}

/** INFO's `name:value` lines as a map. */
export function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

export async function info(c: RespClient, section?: string): Promise<Map<string, string>> {
  const r = section ? await c.call('INFO', section) : await c.call('INFO');
  return parseInfo(replyText(r));
}

/**
 * Every key and value of a server (SCAN cursor walk, then MGET in pages),
 * as latin1 strings (byte-exact). Keys SCAN may return twice count once.
 */
export async function dumpAll(c: RespClient, page = 1_000): Promise<Map<string, string | null>> {
  const keys = new Set<string>();
  let cursor = '0';
  do {
    const r = await c.call('SCAN', cursor, 'COUNT', String(page));
    if (!Array.isArray(r) || r.length !== 2) throw new Error(`${c.label}: SCAN answered ${replyText(r).slice(0, 200)}`);
    cursor = replyText(r[0]!);
    for (const k of r[1] as RespReply[]) keys.add((k as Buffer).toString('latin1'));
  } while (cursor !== '0');
  const all = [...keys];
  const out = new Map<string, string | null>();
  const batches: string[][] = [];
  for (let i = 0; i < all.length; i += page) batches.push(all.slice(i, i + page));
  // A few MGETs in flight at once.
  const replies = await c.pipeline(batches.map((b) => ['MGET', ...b.map((k) => Buffer.from(k, 'latin1'))]));
  replies.forEach((r, bi) => {
    if (!Array.isArray(r)) throw new Error(`${c.label}: MGET answered ${replyText(r).slice(0, 200)}`);
    const b = batches[bi]!;
    r.forEach((v, i) => out.set(b[i]!, v === null ? null : (v as Buffer).toString('latin1')));
  });
  return out;
}
