import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, hash } from 'node:crypto';
import { GOSSIP_DEFAULTS, GossipCore } from '../../src/core/gossip/gossip.js';
import type { GossipConfig, SendPlan } from '../../src/core/gossip/gossip.js';
import { MESSAGE_ID_CHARS, PATH_LENGTH_MAX, isMessageId, messageId, streamKey } from '../../src/core/gossip/message.js';
import type { GossipMessage } from '../../src/core/gossip/message.js';
import { StreamState } from '../../src/core/gossip/streams.js';
import { SimRandom } from '../../src/sim/random.js';
import { sha256 } from '../../src/sim/sha256.js';

const core = (selfId: string, over: Partial<GossipConfig> = {}): GossipCore =>
  new GossipCore({ ...GOSSIP_DEFAULTS, selfId, incarnation: 1, sha256, messageBytesMax: 64, ...over });

function submitted(c: GossipCore, text: string, nowMs = 0): GossipMessage {
  const r = c.submit(text, nowMs);
  assert.ok(r.ok, `submit of ${JSON.stringify(text)} refused`);
  return r.message;
}

const seqsOf = (plans: readonly SendPlan[]): string[] => plans.flatMap((p) => p.seqs.map((s) => `${streamKey(p.origin, p.incarnation)}#${s}`)).sort();

describe('submit', () => {
  test('numbers the stream 1, 2, 3 and makes a message to send with path [self]', () => {
    const a = core('a', { incarnation: 7 });
    const ms = ['x', 'y', 'x'].map((t, i) => submitted(a, t, 1_000 + i));
    assert.deepEqual(ms.map((m) => m.seq), [1, 2, 3]);
    for (const m of ms) {
      assert.equal(m.origin, 'a');
      assert.equal(m.incarnation, 7);
      assert.deepEqual(m.path, ['a']);
    }
    assert.equal(ms[1]!.createdMs, 1_001);
    assert.notEqual(ms[0]!.id, ms[2]!.id, 'the same text twice is two messages');
    assert.deepEqual(a.digest(), [{ origin: 'a', incarnation: 7, hwm: 3, above: [] }]);
  });

  test('empty and oversized texts are refused and use no seq; exactly the limit (in UTF-8 bytes) is accepted', () => {
    const a = core('a');
    assert.deepEqual(a.submit('', 0), { ok: false, problem: { code: 'empty' } });
    assert.deepEqual(a.submit('é'.repeat(33), 0), { ok: false, problem: { code: 'too_large', bytes: 66, maxBytes: 64 } });
    assert.deepEqual(a.submit('x'.repeat(65), 0), { ok: false, problem: { code: 'too_large', bytes: 65, maxBytes: 64 } });
    assert.equal(submitted(a, 'é'.repeat(32)).seq, 1);
    assert.equal(submitted(a, ' ').seq, 2);
  });
});

describe('message ids', () => {
  test('are 11 base62 characters of the first 64 bits of SHA-256 over origin, incarnation, seq and text', () => {
    const id = messageId(sha256, 'n1', 1, 1, 'Apple');
    assert.equal(id, '4OPItic229M', 'stable across versions');
    assert.equal(MESSAGE_ID_CHARS, 11);
    assert.ok(isMessageId(id));
    const first64 = BigInt(`0x${createHash('sha256').update('n1\u00001\u00001\u0000Apple').digest('hex').slice(0, 16)}`);
    const digits = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    const decoded = [...id].reduce((n, ch) => n * 62n + BigInt(digits.indexOf(ch)), 0n);
    assert.equal(decoded, first64);
  });

  test('a digest given as a latin1 string (what the runtime passes) gives the id of the UTF-8 bytes, non-ASCII and lone surrogates included', () => {
    const asLatin1 = (text: string): string => hash('sha256', text, 'binary');
    const encoder = new TextEncoder();
    for (const text of ['Apple', 'grüße ✓ 😀', 'lone \uD800 high', 'lone \uDC00 low', 'x'.repeat(5_000)]) {
      // The reference: SHA-256 over TextEncoder's bytes (U+FFFD for a lone surrogate).
      const reference = messageId(() => createHash('sha256').update(encoder.encode(`n1\u00003\u00009\u0000${text}`)).digest(), 'n1', 3, 9, text);
      assert.equal(messageId(asLatin1, 'n1', 3, 9, text), reference, text.slice(0, 20));
      assert.equal(messageId(sha256, 'n1', 3, 9, text), reference, text.slice(0, 20));
    }
    assert.equal(messageId(asLatin1, 'n1', 1, 1, 'Apple'), '4OPItic229M');
  });

  test('are deterministic, and change with every field; 62^11 > 2^64, so every 64-bit value fits in 11 characters', () => {
    assert.equal(messageId(sha256, 'a', 1, 1, 't'), messageId(sha256, 'a', 1, 1, 't'));
    const variants = [messageId(sha256, 'a', 1, 1, 't'), messageId(sha256, 'b', 1, 1, 't'), messageId(sha256, 'a', 2, 1, 't'), messageId(sha256, 'a', 1, 2, 't'), messageId(sha256, 'a', 1, 1, 'u')];
    assert.equal(new Set(variants).size, variants.length);
    assert.ok(62n ** 11n > 2n ** 64n);
    const rng = new SimRandom(5);
    for (let i = 0; i < 2_000; i++) {
      const id = messageId(sha256, `n${rng.int(0, 99)}`, rng.int(0, 9), rng.int(1, 1e9), `t${rng.uint32()}`);
      assert.ok(isMessageId(id), id);
    }
    // The number-only base62 conversion agrees with BigInt on random and extreme 64-bit values.
    const digits = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    const viaBigInt = (bytes: Uint8Array): string => {
      let n = 0n;
      for (let i = 0; i < 8; i++) n = (n << 8n) | BigInt(bytes[i]!);
      let out = '';
      for (let i = 0; i < 11; i++) {
        out = digits[Number(n % 62n)]! + out;
        n /= 62n;
      }
      return out;
    };
    const fixed = [new Uint8Array(32).fill(0xff), new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, i) => (i === 7 ? 1 : 0))];
    for (let i = 0; i < 2_000; i++) fixed.push(Uint8Array.from({ length: 32 }, () => rng.int(0, 255)));
    for (const digest of fixed) assert.equal(messageId(() => digest, 'a', 1, 1, 't'), viaBigInt(digest));
    assert.ok(!isMessageId('4OPItic229'), 'too short');
    assert.ok(!isMessageId('4OPItic229-'), 'not base62');
  });
});

describe('receive', () => {
  test('a new message is recorded; a second copy (or our own coming back) is a duplicate', () => {
    const a = core('a');
    const b = core('b');
    const m = submitted(a, 'hello');
    assert.deepEqual(b.receive(m), { kind: 'new', message: m });
    assert.ok(b.holds('a', 1, 1));
    assert.deepEqual(b.receive(m), { kind: 'duplicate' });
    assert.deepEqual(b.receive({ ...m, path: ['a', 'c'] }), { kind: 'duplicate' }, 'another path, same message');
    assert.deepEqual(a.receive(b.forward(m, ['a']).message), { kind: 'duplicate' });
  });

  test('a message whose id does not match its content, or with bad fields, is refused and leaves no trace', () => {
    const a = core('a');
    const b = core('b');
    const m = submitted(a, 'hello');
    const bad: [string, GossipMessage][] = [
      ['other text', { ...m, text: 'hellO' }],
      ['other id', { ...m, id: messageId(sha256, 'a', 1, 2, 'hello') }],
      ['other seq', { ...m, seq: 2 }],
      ['other origin', { ...m, origin: 'c' }],
      ['other incarnation', { ...m, incarnation: 2 }],
      ['seq 0', { ...m, seq: 0, id: messageId(sha256, 'a', 1, 0, 'hello') }],
      ['fractional seq', { ...m, seq: 1.5 }],
      ['negative incarnation', { ...m, incarnation: -1, id: messageId(sha256, 'a', -1, 1, 'hello') }],
      ['empty text', { ...m, text: '', id: messageId(sha256, 'a', 1, 1, '') }],
      ['oversized text', { ...m, text: 'x'.repeat(65), id: messageId(sha256, 'a', 1, 1, 'x'.repeat(65)) }],
      ['empty origin', { ...m, origin: '', id: messageId(sha256, '', 1, 1, 'hello') }],
      // "a\0 1" + incarnation 2, seq 3, text "hi" hashes the same bytes as origin "a", inc 1, seq 2, text "3\0hi".
      ['origin with NUL', { ...m, origin: 'a\u00001', incarnation: 2, seq: 3, text: 'hi', id: messageId(sha256, 'a\u00001', 2, 3, 'hi') }],
    ];
    assert.equal(messageId(sha256, 'a\u00001', 2, 3, 'hi'), messageId(sha256, 'a', 1, 2, '3\u0000hi'), 'why origins must be node ids');
    for (const [why, message] of bad) assert.equal(b.receive(message).kind, 'invalid', why);
    assert.equal(b.streamCount, 0);
    assert.equal(b.receive(m).kind, 'new', 'the intact message is still new');
  });

  test('a path longer than the bound keeps its last entries', () => {
    const b = core('b');
    const m = submitted(core('a'), 'far');
    const long = Array.from({ length: PATH_LENGTH_MAX + 10 }, (_, i) => `h${i}`);
    const r = b.receive({ ...m, path: long });
    assert.ok(r.kind === 'new');
    assert.deepEqual(r.message.path, long.slice(-PATH_LENGTH_MAX));
  });

  test('the number of streams is bounded', () => {
    const b = core('b', { streamsMax: 2 });
    assert.equal(b.receive(submitted(core('a'), 'x')).kind, 'new');
    assert.equal(b.receive(submitted(core('c'), 'x')).kind, 'new');
    assert.equal(b.receive(submitted(core('d'), 'x')).kind, 'invalid');
  });

  test('unreceive forgets a message that could not be stored: peers offer it again and it is new again', () => {
    const a = core('a');
    const b = core('b');
    const ms = ['1', '2', '3'].map((t) => submitted(a, t));
    for (const m of ms) b.receive(m);
    b.unreceive(ms[1]!);
    assert.ok(!b.holds('a', 1, 2) && b.holds('a', 1, 1) && b.holds('a', 1, 3));
    assert.deepEqual(seqsOf(a.plan(b.digest(), 10)), ['a/1#2']);
    assert.equal(b.receive(ms[1]!).kind, 'new');
  });
});

describe('forward', () => {
  test('appends self to the path and skips neighbours on the path (and self)', () => {
    const c = core('c');
    const m = submitted(core('a'), 'hi');
    const viaB = { ...m, path: ['a', 'b'] };
    const f = c.forward(viaB, ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(f.to, ['d', 'e']);
    assert.deepEqual(f.message.path, ['a', 'b', 'c']);
    assert.deepEqual(viaB.path, ['a', 'b'], 'the input is left alone');
    assert.deepEqual(c.forward(f.message, ['d']).message.path, ['a', 'b', 'c'], 'not twice');
  });

  test('a submitted message goes to every neighbour with path [origin]', () => {
    const a = core('a');
    const f = a.forward(submitted(a, 'hi'), ['b', 'c', 'd']);
    assert.deepEqual(f.to, ['b', 'c', 'd']);
    assert.deepEqual(f.message.path, ['a']);
  });

  test('with the overlay known, skips neighbours that a node on the path is linked to (it flooded to them)', () => {
    // a - b - c - d, and a - d, b - e, c - e: c got a message a -> b -> c.
    const graph = new Map<string, Set<string>>([
      ['a', new Set(['b', 'd'])],
      ['b', new Set(['a', 'c', 'e'])],
      ['c', new Set(['b', 'd', 'e'])],
      ['d', new Set(['a', 'c'])],
      ['e', new Set(['b', 'c'])],
    ]);
    const c = core('c');
    const m = { ...submitted(core('a'), 'hi'), path: ['a', 'b'] };
    const f = c.forward(m, ['b', 'd', 'e'], (id) => graph.get(id));
    assert.deepEqual(f.to, [], 'd is a neighbour of a, e of b: both were sent it');
    assert.deepEqual(f.message.path, ['a', 'b', 'c']);
    assert.deepEqual(c.forward(m, ['b', 'd', 'e']).to, ['d', 'e'], 'without the overlay: the path rule only');
    const fromB = { ...submitted(core('b'), 'hi'), path: ['b'] };
    assert.deepEqual(c.forward(fromB, ['b', 'd', 'e'], (id) => graph.get(id)).to, ['d'], 'e is covered by b; d is not');
    assert.deepEqual(c.forward(fromB, ['b', 'd', 'e'], () => undefined).to, ['d', 'e'], 'unknown neighbours cover nobody');
  });
});

describe('lacksAnyOf', () => {
  test('says whether a peer digest holds a seq we neither hold nor purged', () => {
    const a = core('a');
    const x = core('x');
    const ms = ['1', '2', '3', '4', '5'].map((t) => submitted(x, t));
    assert.equal(a.lacksAnyOf(x.digest()), true, 'an unknown stream with messages');
    assert.equal(a.lacksAnyOf([{ origin: 'x', incarnation: 1, hwm: 0, above: [] }]), false, 'an empty stream');
    for (const m of [ms[0]!, ms[1]!, ms[3]!]) a.receive(m);
    assert.equal(a.lacksAnyOf(x.digest()), true, 'their hwm is above ours');
    assert.equal(a.lacksAnyOf([{ origin: 'x', incarnation: 1, hwm: 2, above: [4, 4] }]), false, 'we hold 1, 2 and 4');
    assert.equal(a.lacksAnyOf([{ origin: 'x', incarnation: 1, hwm: 1, above: [4, 5] }]), true, 'we lack 5');
    assert.equal(a.lacksAnyOf([{ origin: 'x', incarnation: 1, hwm: 2, above: [3] }]), false, 'a bare cut-off lists nothing');
    a.applyPurge([{ origin: 'x', incarnation: 1, floor: 5 }]);
    assert.equal(a.lacksAnyOf(x.digest()), false, 'purged counts as held');
    assert.equal(a.lacksAnyOf(a.digest()), false);
  });
});

describe('digest and plan', () => {
  /** Random holdings of three streams with holes, on two cores; returns them and the true differences. */
  function twoCores(rng: SimRandom, aboveMax: number, xHoldsAll = false) {
    const origins = ['o1', 'o2', 'o3'].map((id) => core(id));
    const all = origins.flatMap((o) => Array.from({ length: rng.int(0, 40) }, (_, i) => submitted(o, `m${i}`)));
    const x = core('x', { digestAboveMax: aboveMax });
    const y = core('y', { digestAboveMax: aboveMax });
    for (const m of rng.shuffle(all)) {
      if (xHoldsAll || rng.chance(0.6)) x.receive(m);
      if (rng.chance(0.6)) y.receive(m);
    }
    const key = (m: GossipMessage): string => `${streamKey(m.origin, m.incarnation)}#${m.seq}`;
    const lacking = (from: GossipCore, to: GossipCore): string[] =>
      all.filter((m) => from.holds(m.origin, m.incarnation, m.seq) && !to.holds(m.origin, m.incarnation, m.seq)).map(key).sort();
    return { x, y, all, lacking };
  }

  test('plan lists exactly what the peer lacks, in both directions, over random holdings', () => {
    const rng = new SimRandom(11);
    for (let trial = 0; trial < 300; trial++) {
      const { x, y, lacking } = twoCores(rng, GOSSIP_DEFAULTS.digestAboveMax);
      assert.deepEqual(seqsOf(x.plan(y.digest(), 1e9)), lacking(x, y));
      assert.deepEqual(seqsOf(y.plan(x.digest(), 1e9)), lacking(y, x));
      assert.deepEqual(x.plan(x.digest(), 1e9), [], 'nothing for an equal peer');
    }
  });

  test('plan respects its limit; repeated rounds with short digests send nothing twice and reach the difference', () => {
    const rng = new SimRandom(12);
    for (let trial = 0; trial < 300; trial++) {
      const aboveMax = rng.int(1, 6);
      const xHoldsAll = trial % 2 === 0;
      const { x, y, all, lacking } = twoCores(rng, aboveMax, xHoldsAll);
      const want = lacking(x, y);
      const limit = rng.int(1, 7);
      const sent = new Set<string>();
      for (let round = 0; round < 400; round++) {
        const plans = x.plan(y.digest(), limit);
        const seqs = seqsOf(plans);
        assert.ok(seqs.length <= limit);
        if (seqs.length === 0) break;
        for (const s of seqs) {
          assert.ok(!sent.has(s), `${s} sent twice`);
          sent.add(s);
        }
        for (const p of plans) for (const seq of p.seqs) y.receive(all.find((m) => m.origin === p.origin && m.seq === seq)!);
      }
      // A short digest cuts y's view off at its first holes; where x lacks those too they never
      // fill, and what lies above stays out of reach (StreamDigest.above). Where x can fill every
      // hole, the rounds reach exactly the difference.
      for (const s of sent) assert.ok(want.includes(s));
      if (xHoldsAll) assert.deepEqual([...sent].sort(), want);
    }
  });

  test('runs: a hole that never fills costs two numbers, and the peer is sent what lies above it', () => {
    const s = new StreamState('o', 1);
    const r = new StreamState('o', 1);
    for (let i = 1; i <= 50; i++) {
      if (i === 5) continue;
      s.add(i);
      if (i !== 40) r.add(i);
    }
    assert.deepEqual(r.digest(8), { origin: 'o', incarnation: 1, hwm: 4, above: [6, 39, 41, 50] });
    assert.deepEqual(s.missingFrom(r.digest(8), 4), [40]);
    // Cut to one run: exact up to 40 (just before the run left out).
    assert.deepEqual(r.digest(3).above, [6, 39, 40]);
    assert.deepEqual(s.missingFrom(r.digest(3), 10), [40]);
    // Nothing fits: exact up to 5, where the first run starts.
    assert.deepEqual(r.digest(1).above, [5]);
    assert.deepEqual(s.missingFrom(r.digest(1), 10), []);
    assert.deepEqual(new StreamState('o', 1).missingFrom(r.digest(8), 10), [], 'nothing held, nothing sent');
  });

  test('purged seqs count as held: never asked for, never offered', () => {
    const a = core('a');
    const b = core('b');
    const ms = Array.from({ length: 10 }, (_, i) => submitted(a, `m${i}`));
    b.receive(ms[7]!);
    b.applyPurge([{ origin: 'a', incarnation: 1, floor: 5 }]);
    assert.deepEqual(b.digest(), [{ origin: 'a', incarnation: 1, hwm: 5, above: [8, 8] }]);
    assert.deepEqual(seqsOf(a.plan(b.digest(), 100)), ['a/1#6', 'a/1#7', 'a/1#9', 'a/1#10'].sort());
    assert.equal(b.receive(ms[2]!).kind, 'duplicate');
    a.applyPurge([{ origin: 'a', incarnation: 1, floor: 8 }]);
    assert.deepEqual(seqsOf(a.plan([], 100)), ['a/1#10', 'a/1#9'].sort(), 'purged seqs are not offered');
    assert.ok(!a.holds('a', 1, 3));
  });
});

describe('restore', () => {
  test('rebuilds holdings and floors; the same incarnation continues its stream, a new one starts at 1', () => {
    const a = core('a', { incarnation: 3 });
    const ms = ['x', 'y', 'z'].map((t) => submitted(a, t));
    const other = submitted(core('b'), 'from b');
    const held = [...ms, other].map(({ origin, incarnation, seq }) => ({ origin, incarnation, seq }));

    const same = core('a', { incarnation: 3 });
    same.restore(held, [{ origin: 'c', incarnation: 1, floor: 4 }]);
    assert.equal(submitted(same, 'w').seq, 4);
    assert.equal(same.receive(other).kind, 'duplicate');
    assert.ok(same.holds('b', 1, 1) && !same.holds('c', 1, 2));
    assert.equal(same.receive(submitted(core('c'), 'purged')).kind, 'duplicate');

    const next = core('a', { incarnation: 4 });
    next.restore(held, []);
    const first = submitted(next, 'x');
    assert.equal(first.seq, 1);
    assert.notEqual(first.id, ms[0]!.id);
    assert.deepEqual(next.plan([], 100).map((p) => [p.origin, p.incarnation, p.seqs]).sort(), [['a', 3, [1, 2, 3]], ['a', 4, [1]], ['b', 1, [1]]]);
  });
});
