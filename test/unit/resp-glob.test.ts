// Redis's glob (util.c stringmatchlen) over bytes, as KEYS, SCAN MATCH and
// CONFIG GET use it. The expected answers are Redis 7's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globMatch } from '../../src/core/kv/glob.js';

const m = (pattern: string, subject: string, nocase = false) => globMatch(Buffer.from(pattern, 'latin1'), Buffer.from(subject, 'latin1'), nocase);

test('literals, ? and *', () => {
  const cases: [string, string, boolean][] = [
    ['abc', 'abc', true],
    ['abc', 'abd', false],
    ['abc', 'ab', false],
    ['ab', 'abc', false],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['*', 'anything', true],
    ['*', '', true],
    ['', '', true],
    ['', 'a', false],
    ['a*', 'a', true],
    ['a*', 'abc', true],
    ['*c', 'abc', true],
    ['*c', 'abd', false],
    ['a*b*c', 'a-b-c', true],
    ['a*b*c', 'a-c-b', false],
    ['a**b', 'ab', true],
    ['h*llo', 'heeeello', true],
    ['user:*:name', 'user:42:name', true],
    ['user:*:name', 'user:42:mail', false],
  ];
  for (const [p, s, want] of cases) assert.equal(m(p, s), want, `${p} ~ ${s}`);
});

test('classes: sets, negation, ranges in either order, escapes inside', () => {
  const cases: [string, string, boolean][] = [
    ['h[ae]llo', 'hallo', true],
    ['h[ae]llo', 'hillo', false],
    ['h[^e]llo', 'hallo', true],
    ['h[^e]llo', 'hello', false],
    ['h[a-b]llo', 'hbllo', true],
    ['h[a-b]llo', 'hcllo', false],
    ['h[b-a]llo', 'hallo', true],
    ['[\\]]', ']', true],
    ['[\\-]', '-', true],
    ['[a\\-z]', 'b', false],
    ['[0-9][0-9]', '42', true],
    ['[^0-9]*', '4x', false],
    // Redis treats an unterminated class as ending with the pattern.
    ['a[bc', 'ab', true],
    ['a[bc', 'ad', false],
    ['a[', 'a', false],
  ];
  for (const [p, s, want] of cases) assert.equal(m(p, s), want, `${p} ~ ${s}`);
});

test('backslash escapes the next byte; a trailing backslash is literal', () => {
  assert.equal(m('a\\*b', 'a*b'), true);
  assert.equal(m('a\\*b', 'axb'), false);
  assert.equal(m('a\\?', 'a?'), true);
  assert.equal(m('a\\', 'a\\'), true);
  assert.equal(m('\\[x]', '[x]'), true);
});

test('bytes, not characters: any byte value matches itself, ? matches one byte', () => {
  assert.equal(globMatch(Buffer.from([0xff, 0x2a]), Buffer.from([0xff, 0, 1, 2])), true);
  assert.equal(globMatch(Buffer.from('?'), Buffer.from('é')), false, 'é is two bytes in UTF-8');
  assert.equal(globMatch(Buffer.from('??'), Buffer.from('é')), true);
});

test('nocase folds ASCII letters only (CONFIG GET)', () => {
  assert.equal(m('MAX*', 'maxclients', true), true);
  assert.equal(m('MAX*', 'maxclients'), false);
  assert.equal(m('[A-C]x', 'bX', true), true);
  assert.equal(m('@', '`', true), false);
});

test('a hostile pattern costs polynomial time, not exponential', () => {
  const subject = Buffer.from('a'.repeat(5_000));
  const pattern = Buffer.from(`${'a*'.repeat(30)}b`);
  const started = process.hrtime.bigint();
  assert.equal(globMatch(pattern, subject), false);
  // Redis's plain recursion would not finish in a lifetime; this takes milliseconds.
  assert.ok(Number(process.hrtime.bigint() - started) / 1e6 < 5_000);
});
