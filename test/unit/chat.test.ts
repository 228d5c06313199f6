import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { CHAT_DEFAULTS, ChatConfigError, LineSplitter, LineTooLongError, formatChatLine, readLines, resolveChatConfig } from '../../src/runtime/chat.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');
const text = (lines: Uint8Array[]) => lines.map((l) => Buffer.from(l).toString('utf8'));

function splitAll(chunks: string[], maxBytes = 16): string[] {
  const s = new LineSplitter(maxBytes);
  return text([...chunks.flatMap((c) => [...s.push(bytes(c))]), ...s.end()]);
}

test('formatChatLine prints ordinary text exactly, backslashes and TAB included', () => {
  assert.equal(formatChatLine(bytes('héllo, wörld ✓ \\n C:\\temp\tend')), 'héllo, wörld ✓ \\n C:\\temp\tend');
  assert.equal(formatChatLine(new Uint8Array()), '');
});

test('formatChatLine escapes control characters so a datagram stays one line', () => {
  assert.equal(formatChatLine(bytes('a\nb\r\x1b[31m\x00\x7f')), 'a\\x0ab\\x0d\\x1b[31m\\x00\\x7f');
  assert.equal(formatChatLine(bytes('c1:\u0085')), 'c1:\\x85');
});

test('formatChatLine replaces invalid UTF-8 with U+FFFD and keeps a BOM', () => {
  assert.equal(formatChatLine(Uint8Array.from([0x61, 0xff, 0x62, 0xc3])), 'a\uFFFDb\uFFFD');
  assert.equal(formatChatLine(Uint8Array.from([0xef, 0xbb, 0xbf, 0x41])), '\uFEFFA');
});

test('LineSplitter splits at LF across chunk boundaries', () => {
  assert.deepEqual(splitAll(['ab', 'c\nde', 'f\n', 'g']), ['abc', 'def', 'g']);
  assert.deepEqual(splitAll(['a\n\nb\n']), ['a', '', 'b']);
  assert.deepEqual(splitAll(['\n']), ['']);
  assert.deepEqual(splitAll(['']), []);
  assert.deepEqual(splitAll(['a\n']), ['a']);
});

test('LineSplitter drops one CR before LF, also when split from it', () => {
  assert.deepEqual(splitAll(['a\r\nb\r', '\nc\r\r\n']), ['a', 'b', 'c\r']);
  assert.deepEqual(splitAll(['x\r']), ['x']);
});

test('LineSplitter keeps multi-byte characters split across chunks intact', () => {
  const all = bytes('ü✓\n');
  const s = new LineSplitter(16);
  const lines = [...s.push(all.subarray(0, 1)), ...s.push(all.subarray(1, 3)), ...s.push(all.subarray(3)), ...s.end()];
  assert.deepEqual(text(lines), ['ü✓']);
});

test('LineSplitter accepts a line of exactly maxBytes (with or without CR) and refuses one more byte', () => {
  assert.deepEqual(splitAll(['x'.repeat(16) + '\n', 'y'.repeat(16) + '\r\n']), ['x'.repeat(16), 'y'.repeat(16)]);
  assert.throws(() => splitAll(['ok\n', 'x'.repeat(17) + '\n']), (e: unknown) => e instanceof LineTooLongError && e.lineNumber === 2 && e.maxBytes === 16);
  assert.throws(() => splitAll(['x'.repeat(17)]), LineTooLongError);
  assert.throws(() => splitAll(['x'.repeat(16) + '\r\r\n']), LineTooLongError);
});

test('LineSplitter yields the lines before a too-long one in the same chunk first', () => {
  const s = new LineSplitter(4);
  const it = s.push(bytes('ab\ncd\ntoolong\nef\n'));
  assert.deepEqual(text([it.next().value as Uint8Array, it.next().value as Uint8Array]), ['ab', 'cd']);
  assert.throws(() => it.next(), (e: unknown) => e instanceof LineTooLongError && e.lineNumber === 3);
});

test('LineSplitter refuses an endless line without buffering it', () => {
  const s = new LineSplitter(16);
  assert.deepEqual([...s.push(bytes('x'.repeat(10)))], []);
  assert.throws(() => [...s.push(bytes('x'.repeat(1000)))], LineTooLongError);
});

test('readLines reads a stream of Buffers and strings', async () => {
  const lines: string[] = [];
  for await (const l of readLines(Readable.from([bytes('one\ntw'), 'o\n\nthree']), 16)) lines.push(Buffer.from(l).toString());
  assert.deepEqual(lines, ['one', 'two', '', 'three']);
});

test('resolveChatConfig fills in the defaults of DESIGN.md', () => {
  assert.deepEqual(resolveChatConfig({}, ['127.0.0.1']), { group: '239.255.77.1', port: 7700, interface: '127.0.0.1', ttl: 1 });
  assert.deepEqual(CHAT_DEFAULTS, { group: '239.255.77.1', port: 7700, interface: '127.0.0.1', ttl: 1 });
  assert.deepEqual(resolveChatConfig({ group: '224.1.2.3', port: 1, interface: '10.77.250.5', ttl: 255, }, ['127.0.0.1', '10.77.250.5']), { group: '224.1.2.3', port: 1, interface: '10.77.250.5', ttl: 255 });
  assert.equal(resolveChatConfig({ group: undefined, port: 9 }, ['127.0.0.1']).group, '239.255.77.1');
});

test('resolveChatConfig names the option that is wrong', () => {
  const bad = (partial: Parameters<typeof resolveChatConfig>[0], option: string) =>
    assert.throws(() => resolveChatConfig(partial, ['127.0.0.1']), (e: unknown) => e instanceof ChatConfigError && e.option === option && e.message.startsWith(option));
  bad({ group: '10.77.1.3' }, '--group');
  // Just above 239.255.255.255: refused when parsed; nothing is ever sent to it.
  bad({ group: '240.0.0.1' }, '--group');
  bad({ group: 'chat' }, '--group');
  bad({ interface: '0.0.0.0' }, '--interface');
  bad({ interface: 'lo' }, '--interface');
  bad({ interface: '10.77.9.9' }, '--interface');
  bad({ port: 0 }, '--port');
  bad({ port: 65_536 }, '--port');
  bad({ ttl: 0 }, '--ttl');
  bad({ ttl: 256 }, '--ttl');
});
