// The RESP command table: name -> arity + handler, looked up and checked the
// way Redis 7's processCommand does, with its error wording. Handlers return
// a Reply or a Promise of one; the cache's own promises are returned as they
// are (kv.get resolves a bulk, kv.put a boolean, kv.del an integer), so the
// common commands cost no extra promise.

import { KvError } from '../../runtime/kv-access.js';
import type { KvAccess } from '../../runtime/kv-access.js';
import type { Logger } from '../../runtime/log.js';
import { ErrorReply, OK, PONG, SimpleString } from './encoder.js';
import type { Reply } from './encoder.js';
import { configGet, infoText, REDIS_VERSION } from './info.js';
import type { RespServerView } from './info.js';

/** Most SCAN cursors one connection keeps; older ones are forgotten (then `invalid cursor`). */
export const SCAN_CURSORS_MAX = 64;
/** Keys fetched per cache scan call (SCAN's COUNT is clamped to it). */
const SCAN_PAGE_MAX = 1_000;
/** KEYS refuses to build a reply larger than this; SCAN has no such limit. */
export const KEYS_REPLY_MAX = 100_000;

/** Per-connection state the commands read and change. */
export class RespSession {
  name: Buffer | undefined;
  /** Set by QUIT: the connection closes once this command's reply is out. */
  quit = false;
  private readonly cursors = new Map<string, Uint8Array>();
  private nextCursor = 1;

  constructor(readonly id: number) {}

  /** Remembers where a SCAN stopped; returns the cursor to hand out. */
  saveCursor(lastKey: Uint8Array): string {
    const cursor = String(this.nextCursor++);
    if (this.cursors.size >= SCAN_CURSORS_MAX) this.cursors.delete(this.cursors.keys().next().value!);
    this.cursors.set(cursor, lastKey);
    return cursor;
  }

  /** The key a cursor resumes after; undefined for an unknown cursor. */
  cursorKey(cursor: string): Uint8Array | undefined {
    return this.cursors.get(cursor);
  }

  reset(): void {
    this.name = undefined;
    this.cursors.clear();
  }
}

/**
 * A cache that can also answer a read at once: `getNow(key)` must return
 * what `get(key)` would resolve (the node's cache has it). GET, MGET and
 * EXISTS then reply without a promise per command.
 */
export interface KvSyncReads {
  getNow(key: Uint8Array): Uint8Array | undefined;
}

/** The cache's synchronous read, when it has one. */
export function syncReadsOf(kv: KvAccess): KvSyncReads | undefined {
  const candidate = kv as KvAccess & Partial<KvSyncReads>;
  return typeof candidate.getNow === 'function' ? (candidate as KvAccess & KvSyncReads) : undefined;
}

/** What a handler runs against: one per connection, so a command allocates none. */
export interface CommandContext {
  readonly kv: KvAccess;
  /** Set when the cache offers synchronous reads (see KvSyncReads). */
  readonly syncReads: KvSyncReads | undefined;
  readonly server: RespServerView;
  readonly session: RespSession;
  readonly log: Logger;
}

type Handler = (ctx: CommandContext, args: Buffer[]) => Reply | Promise<Reply>;

interface Command {
  /** Lower case, `parent|sub` for subcommands, as Redis names them in errors. */
  readonly fullName: string;
  /** Redis arity: n exactly n arguments (name included), -n at least n. */
  readonly arity: number;
  readonly handler?: Handler;
  readonly subcommands?: CommandTable;
}

export const SYNTAX_ERROR = new ErrorReply('ERR syntax error');
const NOT_INTEGER = new ErrorReply('ERR value is not an integer or out of range');
const RESET = new SimpleString('RESET');

/**
 * Runs one command. Never throws; a rejected promise carries an Error for
 * errorReply(). The reply's type says what goes on the wire (see Reply).
 */
export function executeCommand(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  const top = lookup(TABLE, args[0]!);
  if (!top) return unknownCommand(args);
  let cmd = top;
  if (top.subcommands && args.length >= 2) {
    const sub = lookup(top.subcommands, args[1]!);
    if (!sub) return new ErrorReply(`ERR unknown subcommand '${binary(args[1]!, 128)}'. Try ${binary(args[0]!, 128).toUpperCase()} HELP.`);
    cmd = sub;
  }
  if ((cmd.arity > 0 && args.length !== cmd.arity) || args.length < -cmd.arity) return wrongArity(cmd.fullName);
  try {
    return cmd.handler!(ctx, args);
  } catch (err) {
    return errorReply(err, ctx.log);
  }
}

/** The reply for a failed command: KvError as one ERR line; anything else is our bug, logged. */
export function errorReply(err: unknown, log: Logger): ErrorReply {
  if (err instanceof KvError) {
    if (err.code === 'empty_key') return new ErrorReply('ERR empty keys are not supported by grapevine');
    return new ErrorReply(`ERR ${err.message}`);
  }
  log.error({ err }, 'RESP command failed');
  return new ErrorReply('ERR internal error');
}

export function wrongArity(fullName: string): ErrorReply {
  return new ErrorReply(`ERR wrong number of arguments for '${fullName}' command`);
}

/** Redis 7: `unknown command 'x', with args beginning with: 'a' 'b' ` (128 bytes of arguments at most). */
function unknownCommand(args: Buffer[]): ErrorReply {
  let rest = '';
  for (let i = 1; i < args.length && rest.length < 128; i++) rest += `'${binary(args[i]!, 128 - rest.length)}' `;
  return new ErrorReply(`ERR unknown command '${binary(args[0]!, 128)}', with args beginning with: ${rest}`);
}

/** At most `max` bytes as a binary string (the error writer sends latin1, so bytes survive). */
function binary(b: Buffer, max: number): string {
  return b.toString('latin1', 0, Math.min(b.length, max));
}

/** Names of at most this many bytes are looked up by a number packed from their bytes: no string per command. */
const PACKED_NAME_BYTES_MAX = 6;

/** The bytes of a short name, ASCII letters folded to lower case, as one integer (< 2^51); -1 if too long. */
function packName(name: Uint8Array | string): number {
  const len = name.length;
  if (len > PACKED_NAME_BYTES_MAX) return -1;
  let key = len;
  for (let i = 0; i < len; i++) {
    let c = typeof name === 'string' ? name.charCodeAt(i) : name[i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    key = key * 256 + c;
  }
  return key;
}

interface CommandTable {
  readonly packed: ReadonlyMap<number, Command>;
  readonly long: ReadonlyMap<string, Command>;
}

function lookup(table: CommandTable, name: Buffer): Command | undefined {
  const key = packName(name);
  if (key >= 0) return table.packed.get(key);
  return name.length > 32 ? undefined : table.long.get(name.toString('latin1').toLowerCase());
}

function tableOf(commands: readonly Command[], prefix: string): CommandTable {
  const packed = new Map<number, Command>();
  const long = new Map<string, Command>();
  for (const c of commands) {
    const name = c.fullName.slice(prefix.length);
    const key = packName(name);
    if (key >= 0) packed.set(key, c);
    else long.set(name, c);
  }
  return { packed, long };
}

/** Case-insensitive ASCII comparison of an argument with a lower-case word. */
function is(arg: Buffer, word: string): boolean {
  if (arg.length !== word.length) return false;
  for (let i = 0; i < arg.length; i++) if ((arg[i]! | 0x20) !== word.charCodeAt(i)) return false;
  return true;
}

/** Redis's string2ll: optional `-`, digits, no leading zeros; NaN otherwise (and past 2^53). */
export function parseInteger(arg: Buffer): number {
  const s = arg.toString('latin1');
  return /^(0|-?[1-9][0-9]{0,15})$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : NaN;
}

/** A copy the cache may keep: arguments are views into socket chunks, which must not stay alive with the value. */
function own(b: Buffer): Uint8Array {
  return new Uint8Array(b);
}

function checkKey(ctx: CommandContext, key: Buffer): ErrorReply | undefined {
  const max = ctx.kv.limits.keyBytesMax;
  return key.length > max ? new ErrorReply(`ERR key too large (at most ${max} bytes)`) : undefined;
}

function checkValue(ctx: CommandContext, value: Buffer): ErrorReply | undefined {
  const max = ctx.kv.limits.valueBytesMax;
  return value.length > max ? new ErrorReply(`ERR value too large (at most ${max} bytes)`) : undefined;
}

// ---- strings ----

function get(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  const key = args[1]!;
  if (key.length > ctx.kv.limits.keyBytesMax) return null; // cannot exist
  return ctx.syncReads ? ctx.syncReads.getNow(key) : ctx.kv.get(key);
}

function getMany(ctx: CommandContext, keys: Buffer[]): (Uint8Array | undefined)[] | Promise<(Uint8Array | undefined)[]> {
  const sync = ctx.syncReads;
  return sync ? keys.map((k) => sync.getNow(k)) : ctx.kv.getMany(keys);
}

/** SET key value [NX|XX] [EX s|PX ms|EXAT s|PXAT ms], parsed like Redis's parseExtendedStringArgumentsOrReply. */
function set(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  let condition: 'always' | 'if_absent' | 'if_present' = 'always';
  let unit: 'ex' | 'px' | 'exat' | 'pxat' | undefined;
  let expire: Buffer | undefined;
  for (let i = 3; i < args.length; i++) {
    const opt = args[i]!;
    const next = args[i + 1];
    if (is(opt, 'nx') && condition !== 'if_present') condition = 'if_absent';
    else if (is(opt, 'xx') && condition !== 'if_absent') condition = 'if_present';
    else if (is(opt, 'get') || is(opt, 'keepttl')) return new ErrorReply(`ERR SET ${opt.toString('latin1').toUpperCase()} is not supported by grapevine`);
    else if (next !== undefined && (unit === undefined || unit === lower(opt)) && (is(opt, 'ex') || is(opt, 'px') || is(opt, 'exat') || is(opt, 'pxat'))) {
      unit = lower(opt) as typeof unit;
      expire = next;
      i++;
    } else return SYNTAX_ERROR;
  }
  let ttlMs = 0;
  if (unit !== undefined) {
    const n = parseInteger(expire!);
    if (Number.isNaN(n)) return NOT_INTEGER;
    const ms = unit === 'ex' || unit === 'exat' ? n * 1000 : n;
    if (n <= 0 || !Number.isSafeInteger(ms)) return new ErrorReply("ERR invalid expire time in 'set' command");
    // A moment already past still stores the value, for the shortest time the cache knows.
    ttlMs = unit === 'ex' || unit === 'px' ? ms : Math.max(1, ms - Date.now());
  }
  const refused = checkKey(ctx, args[1]!) ?? checkValue(ctx, args[2]!);
  if (refused) return refused;
  return ctx.kv.put(args[1]!, own(args[2]!), { ttlMs, condition });
}

function lower(b: Buffer): string {
  return b.toString('latin1').toLowerCase();
}

function mget(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  return getMany(ctx, args.slice(1));
}

function mset(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  if (args.length % 2 === 0) return wrongArity('mset');
  const pairs: [Uint8Array, Uint8Array][] = [];
  for (let i = 1; i < args.length; i += 2) {
    const refused = checkKey(ctx, args[i]!) ?? checkValue(ctx, args[i + 1]!);
    if (refused) return refused;
    pairs.push([args[i]!, own(args[i + 1]!)]);
  }
  return ctx.kv.putMany(pairs).then(() => OK);
}

function del(ctx: CommandContext, args: Buffer[]): Promise<Reply> {
  const max = ctx.kv.limits.keyBytesMax;
  // Keys the cache could never hold are simply absent, as in Redis.
  const keys = args.slice(1).filter((k) => k.length > 0 && k.length <= max);
  return keys.length === 0 ? Promise.resolve(0) : ctx.kv.del(keys);
}

/** EXISTS counts a key once per time it is named, as Redis does. */
function exists(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  const values = getMany(ctx, args.slice(1));
  return Array.isArray(values) ? countPresent(values) : values.then(countPresent);
}

function countPresent(values: readonly (Uint8Array | undefined)[]): number {
  let n = 0;
  for (const v of values) if (v !== undefined) n += 1;
  return n;
}

// ---- keyspace ----

async function keys(ctx: CommandContext, args: Buffer[]): Promise<Reply> {
  const out: Uint8Array[] = [];
  let after: Uint8Array | undefined;
  for (;;) {
    const page = await ctx.kv.scan(after, SCAN_PAGE_MAX, args[1]!);
    for (const k of page.keys) out.push(k);
    if (out.length > KEYS_REPLY_MAX) return new ErrorReply(`ERR KEYS would return more than ${KEYS_REPLY_MAX} keys; use SCAN`);
    if (!page.more || page.keys.length === 0) return out;
    after = page.keys[page.keys.length - 1];
  }
}

/** SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]: cursors name the last key handed out (see RespSession). */
async function scan(ctx: CommandContext, args: Buffer[]): Promise<Reply> {
  const cursor = args[1]!.toString('latin1');
  if (!/^[0-9]+$/.test(cursor)) return new ErrorReply('ERR invalid cursor');
  let count = 10;
  let pattern: Buffer | undefined;
  let type: string | undefined;
  for (let i = 2; i < args.length; i += 2) {
    const opt = args[i]!;
    const value = args[i + 1];
    if (value === undefined) return SYNTAX_ERROR;
    if (is(opt, 'count')) {
      count = parseInteger(value);
      if (Number.isNaN(count)) return NOT_INTEGER;
      if (count < 1) return SYNTAX_ERROR;
    } else if (is(opt, 'match')) pattern = value;
    else if (is(opt, 'type')) type = lower(value);
    else return SYNTAX_ERROR;
  }
  // Every value here is a string: any other TYPE matches nothing, so the walk is over.
  if (type !== undefined && type !== 'string') return ['0', []];
  let after: Uint8Array | undefined;
  if (!/^0+$/.test(cursor)) {
    after = ctx.session.cursorKey(cursor);
    if (after === undefined) return new ErrorReply('ERR invalid cursor');
  }
  const page = await ctx.kv.scan(after, Math.min(count, SCAN_PAGE_MAX), pattern);
  const last = page.keys[page.keys.length - 1];
  const next = page.more && last !== undefined ? ctx.session.saveCursor(last) : '0';
  return [next, page.keys];
}

// ---- connection and server ----

function ping(_ctx: CommandContext, args: Buffer[]): Reply {
  if (args.length > 2) return wrongArity('ping');
  return args.length === 2 ? args[1]! : PONG;
}

function select(_ctx: CommandContext, args: Buffer[]): Reply {
  const db = parseInteger(args[1]!);
  if (Number.isNaN(db)) return NOT_INTEGER;
  return db === 0 ? OK : new ErrorReply('ERR DB index is out of range');
}

/** Redis accepts only printable ASCII without spaces in client names. */
function validName(b: Buffer): boolean {
  for (const c of b) if (c < 0x21 || c > 0x7e) return false;
  return true;
}

function clientSetName(ctx: CommandContext, args: Buffer[]): Reply {
  if (!validName(args[2]!)) return new ErrorReply('ERR Client names cannot contain spaces, newlines or special characters.');
  ctx.session.name = args[2]!.length === 0 ? undefined : Buffer.from(args[2]!);
  return OK;
}

function clientSetInfo(_ctx: CommandContext, args: Buffer[]): Reply {
  const attr = lower(args[2]!);
  if (attr !== 'lib-name' && attr !== 'lib-ver') return new ErrorReply(`ERR Unrecognized option '${binary(args[2]!, 128)}'`);
  if (!validName(args[3]!)) return new ErrorReply(`ERR ${attr} cannot contain spaces, newlines or special characters.`);
  return OK;
}

function clientInfoLine(ctx: CommandContext): string {
  return `id=${ctx.session.id} addr=? laddr=${ctx.server.host}:${ctx.server.port} name=${ctx.session.name?.toString('latin1') ?? ''} db=0 resp=2\n`;
}

/** HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only, answered as a flat array. */
function hello(ctx: CommandContext, args: Buffer[]): Reply {
  let i = 1;
  if (args.length >= 2) {
    const version = parseInteger(args[i++]!);
    if (Number.isNaN(version)) return new ErrorReply('ERR Protocol version is not an integer or out of range');
    if (version === 3) return new ErrorReply('NOPROTO sorry, this protocol version is not supported');
    if (version !== 2) return new ErrorReply('NOPROTO unsupported protocol version');
  }
  let name: Buffer | undefined;
  for (; i < args.length; i++) {
    const more = args.length - 1 - i;
    if (is(args[i]!, 'auth') && more >= 2) i += 2; // no users: any credentials are the default user's
    else if (is(args[i]!, 'setname') && more >= 1) name = args[++i]!;
    else return new ErrorReply(`ERR Syntax error in HELLO option '${binary(args[i]!, 128)}'`);
  }
  if (name !== undefined) {
    if (!validName(name)) return new ErrorReply('ERR Client names cannot contain spaces, newlines or special characters.');
    ctx.session.name = name.length === 0 ? undefined : Buffer.from(name);
  }
  return ['server', 'redis', 'version', REDIS_VERSION, 'proto', 2, 'id', ctx.session.id, 'mode', 'standalone', 'role', 'master', 'modules', []];
}

// ---- the table ----

function command(fullName: string, arity: number, handler: Handler): Command {
  return { fullName, arity, handler };
}

function container(name: string, arity: number, handler: Handler | undefined, subs: readonly Command[]): Command {
  return { fullName: name, arity, subcommands: tableOf(subs, `${name}|`), ...(handler ? { handler } : {}) };
}

const COMMANDS: readonly Command[] = [
  command('ping', -1, ping),
  command('echo', 2, (_ctx, args) => args[1]!),
  command('get', 2, get),
  command('set', -3, set),
  command('del', -2, del),
  command('exists', -2, exists),
  command('mget', -2, mget),
  command('mset', -3, mset),
  command('keys', 2, keys),
  command('scan', -2, scan),
  command('dbsize', 1, (ctx) => ctx.kv.size()),
  command('info', -1, (ctx, args) => infoText(ctx.kv, ctx.server, args.length > 1 ? args.slice(1).map(lower) : [])),
  command('select', 2, select),
  command('quit', -1, (ctx) => {
    ctx.session.quit = true;
    return OK;
  }),
  command('reset', 1, (ctx) => {
    ctx.session.reset();
    return RESET;
  }),
  command('hello', -1, hello),
  command('auth', -2, () => new ErrorReply('ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?')),
  container('config', -2, undefined, [
    command('config|get', -3, (ctx, args) => configGet(ctx.server, args.slice(2))),
    command('config|set', -4, () => new ErrorReply('ERR CONFIG SET is not supported by grapevine')),
    command('config|resetstat', 2, () => OK),
  ]),
  // redis-cli asks COMMAND DOCS for its hints at start; an empty answer means "no hints".
  container('command', -1, () => [], [
    command('command|docs', -2, () => []),
    command('command|count', 2, () => COMMANDS.length),
    command('command|info', -2, (_ctx, args) => args.slice(2).map(() => null)),
    command('command|list', -2, () => COMMANDS.map((c) => c.fullName)),
  ]),
  container('client', -2, undefined, [
    command('client|id', 2, (ctx) => ctx.session.id),
    command('client|setname', 3, clientSetName),
    command('client|getname', 2, (ctx) => ctx.session.name ?? null),
    command('client|setinfo', 4, clientSetInfo),
    command('client|info', 2, clientInfoLine),
    command('client|list', -2, clientInfoLine),
  ]),
];

const TABLE = tableOf(COMMANDS, '');
