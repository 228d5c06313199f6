// The coordinator's SQLite store: a restarted coordinator must get back every
// member field the core relies on (including what a long-absent member is
// still owed), the last seq, and exactly the retained messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PmStore } from '../../src/store/pmcast-store.js';
import type { PmMember } from '../../src/core/pmcast/coordinator.js';

test('members, messages and acks survive a reopen; purge keeps the last seq', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gv-pmstore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const away: PmMember = { id: 'p2', status: 'offline', host: '127.0.0.1', port: 6002, joinedSeq: 0, ackedSeq: 1, offlineSinceMs: 1_000, offlineAfterSeq: 2, notOwed: [{ fromSeq: 3, toSeq: 4 }] };
  const online: PmMember = { id: 'p1', status: 'online', host: '127.0.0.1', port: 6001, joinedSeq: 0, ackedSeq: 0, offlineSinceMs: 0 };
  let store = PmStore.open(dir, false);
  store.commit({
    members: [online, away],
    deletedMembers: [],
    messages: [1, 2, 3, 4, 5].map((seq) => ({ seq, sender: 'p1', text: `m${seq}`, acceptedMs: 1_000 + seq })),
    acks: [],
  });
  store.commit({ members: [], deletedMembers: [], messages: [], acks: [{ id: 'p1', ackedSeq: 5 }] });
  store.close();

  store = PmStore.open(dir, true);
  t.after(() => store.close());
  const state = store.load();
  assert.equal(state.lastSeq, 5);
  assert.deepEqual(state.messages.map((m) => m.seq), [1, 2, 3, 4, 5]);
  const byId = new Map(state.members.map((m) => [m.id, m]));
  assert.deepEqual(byId.get('p2'), away);
  assert.equal(byId.get('p1')!.ackedSeq, 5);
  assert.equal(byId.get('p1')!.notOwed, undefined);
  assert.deepEqual(store.after(2, 2).map((m) => m.text), ['m3', 'm4']);

  assert.equal(store.purge(5), 5);
  store.commit({ members: [], deletedMembers: ['p2'], messages: [], acks: [] });
  const after = store.load();
  assert.equal(after.lastSeq, 5, 'the last seq outlives its messages, so seqs are never reused');
  assert.deepEqual(after.messages, []);
  assert.deepEqual(after.members.map((m) => m.id), ['p1']);
});
