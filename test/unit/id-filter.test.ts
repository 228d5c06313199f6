// The Bloom filter over message ids (src/store/id-filter.ts) that lets the
// gossip store skip the SQLite lookup of a new id: never a false "no", and
// few false "maybe"s at the sizes a store holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { messageId } from '../../src/core/gossip/message.js';
import { IdFilter } from '../../src/store/id-filter.js';

/** Ids as the runtime makes them, from node's one-shot hash (fast enough for 60,000 in a unit test). */
const sha256 = (text: string) => hash('sha256', text, 'binary');

test('an added id is always "maybe"; of 30,000 ids never added, under 0.1 % are', () => {
  const f = new IdFilter();
  assert.equal(f.mightHave('4OPItic229M'), false, 'empty');
  const added = Array.from({ length: 30_000 }, (_, i) => messageId(sha256, 'n1', 1, i + 1, `t${i}`));
  for (const id of added) f.add(id);
  for (const id of added) assert.equal(f.mightHave(id), true, id);
  let maybe = 0;
  for (let i = 0; i < 30_000; i++) if (f.mightHave(messageId(sha256, 'n2', 1, i + 1, `t${i}`))) maybe += 1;
  assert.ok(maybe < 30, `${maybe} false positives`);
  // Any string works (ids of other shapes, non-ASCII).
  f.add('grüße ✓');
  assert.equal(f.mightHave('grüße ✓'), true);
});

test('bytes() and load() carry a filter across a reopen; bytes of another size are refused', () => {
  const f = new IdFilter();
  assert.equal(f.bytes(), undefined, 'nothing to save while empty');
  f.add('4OPItic229M');
  const saved = Buffer.from(f.bytes()!); // as SQLite hands a blob back
  const g = new IdFilter();
  g.add('zzzzzzzzzzz');
  assert.equal(g.load(saved), true);
  assert.equal(g.mightHave('4OPItic229M'), true, 'loaded');
  assert.equal(g.mightHave('zzzzzzzzzzz'), true, 'kept what it held');
  const h = new IdFilter();
  assert.equal(h.load(saved.subarray(1)), false);
  assert.equal(h.mightHave('4OPItic229M'), false);
});
