// The RESP request decoder: every case is fed once whole and once byte by
// byte, and both must give the same commands and the same error (with
// Redis 7's wording), delivered up to the fault.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RESP_ARGS_MAX, RESP_LINE_BYTES_MAX, RespDecoder, RespProtocolError, respDecoderLimits, splitInline } from '../../src/api/resp/decoder.js';
import type { RespDecoderLimits } from '../../src/api/resp/decoder.js';

interface Outcome {
  commands: string[][];
  error: string | undefined;
  midCommand: boolean;
}

function feed(input: Buffer, limits: RespDecoderLimits | undefined, chunkBytes: number): Outcome {
  const commands: string[][] = [];
  const d = new RespDecoder((args) => commands.push(args.map((a) => a.toString('latin1'))), limits);
  let error: string | undefined;
  try {
    for (let i = 0; i < input.length; i += chunkBytes) d.write(input.subarray(i, i + chunkBytes));
  } catch (err) {
    assert.ok(err instanceof RespProtocolError, `a typed error, got ${String(err)}`);
    error = err.message;
  }
  return { commands, error, midCommand: d.midCommand };
}

/** Decodes `input` whole and byte by byte; asserts both agree and returns the outcome. */
function decode(input: string | Buffer, limits?: RespDecoderLimits): Outcome {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const whole = feed(bytes, limits, Math.max(1, bytes.length));
  const single = feed(bytes, limits, 1);
  assert.deepEqual(single, whole, 'byte by byte must decode as whole');
  return whole;
}

const bulk = (s: string) => `$${Buffer.byteLength(s, 'latin1')}\r\n${s}\r\n`;
const multibulk = (...args: string[]) => `*${args.length}\r\n${args.map(bulk).join('')}`;

test('multibulk commands, pipelined, binary-safe', () => {
  const input = multibulk('SET', 'a', 'b') + multibulk('GET', 'a') + multibulk('SET', 'k', 'line\r\nwith\0bytes\xff') + multibulk('ECHO', '');
  assert.deepEqual(decode(input).commands, [['SET', 'a', 'b'], ['GET', 'a'], ['SET', 'k', 'line\r\nwith\0bytes\xff'], ['ECHO', '']]);
});

test('inline commands: CRLF or LF, runs of spaces and tabs, blank lines skipped', () => {
  const r = decode('PING\r\nSET a  b\r\n\r\n\n  GET\ta \n');
  assert.deepEqual(r.commands, [['PING'], ['SET', 'a', 'b'], ['GET', 'a']]);
  assert.equal(r.midCommand, false);
});

test('inline and multibulk mix in one stream', () => {
  assert.deepEqual(decode(`PING\r\n${multibulk('PING')}ECHO hi\r\n`).commands, [['PING'], ['PING'], ['ECHO', 'hi']]);
});

test('inline quoting follows sdssplitargs', () => {
  const cases: [string, string[]][] = [
    ['SET "a b" \'c d\'', ['SET', 'a b', 'c d']],
    ['ECHO "\\x41\\x4a\\n\\r\\t\\b\\a\\"\\\\\\q"', ['ECHO', 'AJ\n\r\t\b\x07"\\q']],
    ["ECHO 'it\\'s' '\\n'", ['ECHO', "it's", '\\n']],
    ['SET k ""', ['SET', 'k', '']],
    ['ECHO a"b c"', ['ECHO', 'ab c']],
    ['ECHO "\\xZZ"', ['ECHO', 'xZZ']],
    ['ECHO "a"\t"b"', ['ECHO', 'a', 'b']],
  ];
  for (const [line, args] of cases) assert.deepEqual(decode(`${line}\r\n`).commands, [args], line);
});

test('unbalanced quotes are a protocol error', () => {
  for (const line of ['SET "a b', "SET 'a", 'ECHO "a"b', "ECHO 'a'b", 'ECHO "a\\"']) {
    assert.equal(decode(`PING\r\n${line}\r\n`).error, 'Protocol error: unbalanced quotes in request', line);
  }
  assert.deepEqual(decode('PING\r\nSET "a\r\n').commands, [['PING']], 'commands before the fault are delivered');
});

test('a NUL byte ends an inline command, as in C', () => {
  assert.deepEqual(decode('ECHO a\0 b c\r\n').commands, [['ECHO', 'a']]);
});

test('splitInline gives views for plain words', () => {
  const line = Buffer.from('GET key');
  const [, key] = splitInline(line, 0, line.length);
  assert.equal(key!.buffer, line.buffer);
});

test('*0 and *-1 are ignored, like Redis', () => {
  assert.deepEqual(decode(`*0\r\n*-1\r\n${multibulk('PING')}`).commands, [['PING']]);
});

test('multibulk length errors', () => {
  for (const header of ['*x', '*1x', '*01', '*+1', '*-0', '*', `*${RESP_ARGS_MAX + 1}`, '*99999999999999999999']) {
    const r = decode(`${multibulk('PING')}${header}\r\n`);
    assert.equal(r.error, 'Protocol error: invalid multibulk length', header);
    assert.deepEqual(r.commands, [['PING']]);
  }
  // The largest count is accepted (and then waits for its elements).
  const r = decode(`*${RESP_ARGS_MAX}\r\n`);
  assert.equal(r.error, undefined);
  assert.equal(r.midCommand, true);
});

test("expected '$' with the offending byte", () => {
  assert.equal(decode('*1\r\nx3\r\nGET\r\n').error, "Protocol error: expected '$', got 'x'");
  assert.equal(decode('*2\r\n$3\r\nGET\r\n:1\r\n').error, "Protocol error: expected '$', got ':'");
  assert.equal(decode('*1\r\n\r\n').error, "Protocol error: expected '$', got ' '", 'CR is printed as a space');
});

test('bulk length errors, including the size limit', () => {
  const limits = respDecoderLimits({ keyBytesMax: 16, valueBytesMax: 100 });
  assert.equal(limits.bulkBytesMax, 100 + 1024);
  for (const header of ['$-1', '$x', '$', '$01', '$1 ', `$${limits.bulkBytesMax + 1}`]) {
    assert.equal(decode(`*1\r\n${header}\r\n`, limits).error, 'Protocol error: invalid bulk length', header);
  }
  const max = 'v'.repeat(limits.bulkBytesMax);
  assert.deepEqual(decode(multibulk('SET', 'k', max), limits).commands, [['SET', 'k', max]]);
});

test('whole commands with unusual headers give the same errors as when they arrive byte by byte', () => {
  // A command already whole in one chunk takes a one-pass path; anything
  // unusual in it must still end in the exact error (decode() compares).
  const limits = respDecoderLimits({ keyBytesMax: 16, valueBytesMax: 100 });
  const cases: [string, string | undefined][] = [
    ['*1\r\n$01\r\nX\r\n', 'Protocol error: invalid bulk length'],
    ['*1\r\n$+1\r\nX\r\n', 'Protocol error: invalid bulk length'],
    ['*2\r\n$3\r\nGET\r\n$-1\r\n\r\n', 'Protocol error: invalid bulk length'],
    [`*1\r\n$${limits.bulkBytesMax + 1}\r\n${'v'.repeat(limits.bulkBytesMax + 1)}\r\n`, 'Protocol error: invalid bulk length'],
    ['*01\r\n$4\r\nPING\r\n', 'Protocol error: invalid multibulk length'],
    ['*2\r\n$4\r\nECHO\r\nx1\r\na\r\n', "Protocol error: expected '$', got 'x'"],
    ['*2\r\n$4\r\nECHO\r\n$0\r\n\r\n', undefined],
    ['*1\r\n$00\r\n\r\n', 'Protocol error: invalid bulk length'],
  ];
  for (const [input, error] of cases) {
    const r = decode(`${multibulk('PING')}${input}${multibulk('PING')}`, limits);
    assert.equal(r.error, error, JSON.stringify(input));
    assert.deepEqual(r.commands[0], ['PING']);
  }
});

test('arguments are Buffers', () => {
  let args: Buffer[] = [];
  new RespDecoder((a) => (args = a)).write(Buffer.from(multibulk('SET', 'k', 'v\xff'), 'latin1'));
  for (const a of args) assert.ok(Buffer.isBuffer(a) && a instanceof Buffer);
  assert.equal(args[2]!.toString('latin1'), 'v\xff');
  assert.ok(args[0]!.equals(Buffer.from('SET')));
  assert.equal(args[1]!.subarray(0, 1).toString(), 'k');
});

test('the default bulk limit is the cache value limit + 1 KiB', () => {
  assert.equal(respDecoderLimits().bulkBytesMax, 1024 * 1024 + 1024);
  assert.equal(respDecoderLimits({ keyBytesMax: 1, valueBytesMax: 2 ** 40 }).bulkBytesMax, 512 * 1024 * 1024);
});

test('lines are bounded: inline requests and header lines', () => {
  const long = 'a'.repeat(RESP_LINE_BYTES_MAX + 1);
  assert.equal(decode(`ECHO ${long}\r\n`).error, 'Protocol error: too big inline request');
  assert.equal(decode(`ECHO ${long}`).error, 'Protocol error: too big inline request', 'without its newline too');
  assert.equal(decode(`*${'1'.repeat(RESP_LINE_BYTES_MAX + 1)}`).error, 'Protocol error: too big mbulk count string');
  assert.equal(decode(`*1\r\n$${'1'.repeat(RESP_LINE_BYTES_MAX + 1)}`).error, 'Protocol error: too big bulk count string');
  // Just under the bound an inline command passes.
  const ok = 'b'.repeat(RESP_LINE_BYTES_MAX - 6);
  assert.deepEqual(decode(`ECHO ${ok}\r\n`).commands, [['ECHO', ok]]);
});

test('one command may not buffer more than commandBytesMax', () => {
  const limits: RespDecoderLimits = { bulkBytesMax: 1000, commandBytesMax: 2000 };
  const r = decode(multibulk('PING') + multibulk('MSET', 'a', 'x'.repeat(900), 'b', 'y'.repeat(900)), limits);
  assert.equal(r.error, 'Protocol error: too big request');
  assert.deepEqual(r.commands, [['PING']]);
  // Many empty arguments count too (each costs a view).
  assert.equal(decode(`*100\r\n${'$0\r\n\r\n'.repeat(100)}`, limits).error, 'Protocol error: too big request');
});

test('after an error the decoder stays failed', () => {
  const d = new RespDecoder(() => {});
  assert.throws(() => d.write(Buffer.from('*x\r\n')), RespProtocolError);
  assert.throws(() => d.write(Buffer.from('PING\r\n')), /invalid multibulk length/);
});

test('midCommand and bufferedBytes while a command is incomplete', () => {
  const commands: Buffer[][] = [];
  const d = new RespDecoder((args) => commands.push(args));
  d.write(Buffer.from('*2\r\n$3\r\nGET\r\n$5\r\nab'));
  assert.equal(d.midCommand, true);
  assert.equal(d.bufferedBytes, 2);
  d.write(Buffer.from('cde\r\n'));
  assert.equal(d.midCommand, false);
  assert.equal(d.bufferedBytes, 0);
  assert.deepEqual(commands.map((c) => c.map(String)), [['GET', 'abcde']]);
});

test('a large bulk in small chunks is joined once, not per chunk', () => {
  const value = Buffer.alloc(256 * 1024, 7);
  const input = Buffer.concat([Buffer.from(`*2\r\n$4\r\nECHO\r\n$${value.length}\r\n`), value, Buffer.from('\r\n')]);
  const out: Buffer[][] = [];
  const d = new RespDecoder((args) => out.push(args));
  for (let i = 0; i < input.length; i += 100) d.write(input.subarray(i, i + 100));
  assert.equal(out.length, 1);
  assert.ok(out[0]![1]!.equals(value));
});

test('the bytes after a bulk and after a header CR are skipped unchecked, as Redis does', () => {
  assert.deepEqual(decode('*1\rX$4\r\nPINGxy').commands, [['PING']]);
});

test('arguments are views into the pushed chunk (no copy on the hot path)', () => {
  const chunk = Buffer.from(multibulk('GET', 'key'));
  let args: Buffer[] = [];
  new RespDecoder((a) => (args = a)).write(chunk);
  assert.equal(args[1]!.buffer, chunk.buffer);
});
