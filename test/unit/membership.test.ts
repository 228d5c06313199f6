import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Membership, MEMBERSHIP_DEFAULTS } from '../../src/core/membership.js';
import type { BeaconInfo } from '../../src/core/membership.js';

const config = { clusterName: 'c', ...MEMBERSHIP_DEFAULTS };
const self = { id: 'me', host: '10.77.0.1', port: 7000, incarnation: 10 };
const make = (now = 0) => new Membership(self, config, () => 0.5, now);
const beacon = (id: string, incarnation = 1, extra: Partial<BeaconInfo> = {}): BeaconInfo => ({
  cluster: 'c', id, host: `10.77.0.${id.length + 1}`, port: 7000, incarnation, oldestPendingMs: 0, leaving: false, ...extra,
});
const stateOf = (m: Membership, id: string) => m.get(id)?.state;

test('a first beacon is due at once; then every heartbeat with jitter', () => {
  const m = make(0);
  assert.equal(m.pollBeacon(0)?.id, 'me');
  assert.equal(m.pollBeacon(100), undefined);
  assert.ok(m.pollBeacon(config.heartbeatIntervalMs * 1.1) !== undefined);
});

test('alive -> suspect -> dead by silence, with the configured timeouts', () => {
  const m = make();
  assert.equal(m.receiveBeacon(beacon('a'), 0)[0]?.type, 'joined');
  // Tick every heartbeat so no stall is detected.
  let events: string[] = [];
  for (let t = 100; t <= config.deadAfterMs; t += 100) events = events.concat(m.tick(t).map((e) => `${t}:${e.type}`));
  // Its port is probed from the suspicion on (every heartbeat); no answer changes nothing.
  assert.deepEqual(events, [`${config.suspectAfterMs}:suspect`, `${config.suspectAfterMs}:probe`, '1200:probe', '1400:probe', `${config.deadAfterMs}:dead`]);
  assert.equal(stateOf(m, 'a'), 'dead');
});

/** Ticks every 100 ms from `fromMs` to `toMs`, answering each probe of 'a' with `answer(t)`; returns 't:type' of the events. */
function run(m: Membership, fromMs: number, toMs: number, answer: (t: number) => 'answered' | 'refused' | undefined): string[] {
  const out: string[] = [];
  for (let t = fromMs; t <= toMs; t += 100) {
    for (const e of m.tick(t)) {
      out.push(`${t}:${e.type}`);
      const outcome = e.type === 'probe' ? answer(t) : undefined;
      if (e.type === 'probe' && outcome) m.probeResult(e.member.id, e.member.incarnation, outcome, t + 5);
    }
  }
  return out;
}

test('a suspect whose port answers is not dead at deadAfterMs; still silent at deadAfterAnsweringMs, it is', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  const events = run(m, 100, 3_000, () => 'answered');
  const probes = [1_000, 1_200, 1_400, 1_600, 1_800, 2_000, 2_200, 2_400].map((t) => `${t}:probe`);
  assert.deepEqual(events, ['1000:suspect', ...probes, `${config.deadAfterAnsweringMs}:dead`]);
});

test('a suspect that answered and then speaks recovers; a frozen process is never dead while it answers within deadAfterAnsweringMs', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  run(m, 100, 2_200, () => 'answered');
  assert.equal(stateOf(m, 'a'), 'suspect');
  assert.deepEqual(m.receiveBeacon(beacon('a'), 2_250).map((e) => e.type), ['recovered']);
  // The old answers do not carry over into the next suspicion.
  assert.deepEqual(run(m, 2_300, 4_000, () => undefined), ['3300:suspect', '3300:probe', '3500:probe', '3700:probe', '3900:dead']);
});

test('a refusal (nothing listens: kill -9) cancels earlier answers: dead at deadAfterMs', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  // Answered at 1 s and 1.2 s, killed just after: the 1.4 s probe is refused.
  assert.deepEqual(run(m, 100, 1_600, (t) => (t < 1_400 ? 'answered' : 'refused')), ['1000:suspect', '1000:probe', '1200:probe', '1400:probe', '1600:dead']);
});

test('an answer goes stale: with no answer since, the suspect is dead 5 heartbeats after the last one', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  // Answered at 1,205 ms, then the host stops answering (it went down): stale from 2,205 ms, the tick at 2.3 s.
  const events = run(m, 100, 2_400, (t) => (t <= 1_200 ? 'answered' : undefined));
  assert.deepEqual(events, ['1000:suspect', ...[1_000, 1_200, 1_400, 1_600, 1_800, 2_000, 2_200].map((t) => `${t}:probe`), '2300:dead']);
});

test('probe answers about another incarnation, or about a member that is not suspect, are ignored', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  m.probeResult('a', 1, 'answered', 50);
  m.probeResult('nobody', 1, 'answered', 50);
  const events: string[] = [];
  for (let t = 100; t <= 1_600; t += 100) {
    for (const e of m.tick(t)) {
      events.push(`${t}:${e.type}`);
      if (e.type === 'probe') m.probeResult('a', 2, 'answered', t);
    }
  }
  assert.deepEqual(events, ['1000:suspect', '1000:probe', '1200:probe', '1400:probe', '1600:dead']);
});

test('no probes when deadAfterAnsweringMs is not above deadAfterMs', () => {
  const m = new Membership(self, { ...config, deadAfterAnsweringMs: config.deadAfterMs }, () => 0.5, 0);
  m.receiveBeacon(beacon('a'), 0);
  const events: string[] = [];
  for (let t = 100; t <= 1_600; t += 100) events.push(...m.tick(t).map((e) => `${t}:${e.type}`));
  assert.deepEqual(events, ['1000:suspect', '1600:dead']);
});

test('nextWakeMs wakes a suspect for its probes and for its answer going stale', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  for (let t = 100; t <= 1_000; t += 100) m.tick(t);
  m.pollBeacon(1_000);
  assert.ok(m.nextWakeMs() <= 1_200, `next wake ${m.nextWakeMs()}`);
  m.probeResult('a', 1, 'answered', 1_010);
  for (let t = 1_100; t <= 1_600; t += 100) m.tick(t);
  assert.equal(stateOf(m, 'a'), 'suspect');
});

test('beacons keep a member alive; a suspect that speaks recovers', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  for (let t = 100; t <= 1_100; t += 100) m.tick(t);
  assert.equal(stateOf(m, 'a'), 'suspect');
  assert.deepEqual(m.receiveBeacon(beacon('a'), 1_150).map((e) => e.type), ['recovered']);
  assert.equal(stateOf(m, 'a'), 'alive');
});

test('a dead member heard again at the same incarnation (healed partition) comes back', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  for (let t = 100; t <= 2_000; t += 100) m.tick(t);
  assert.equal(stateOf(m, 'a'), 'dead');
  const [e] = m.receiveBeacon(beacon('a'), 2_050);
  assert.equal(e?.type, 'recovered');
  assert.equal(stateOf(m, 'a'), 'alive');
});

test('a restart with a higher incarnation is accepted; older incarnations are stale', () => {
  const m = make();
  m.receiveBeacon(beacon('a', 5), 0);
  assert.equal(m.receiveBeacon(beacon('a', 6, { host: '10.77.0.9' }), 10)[0]?.type, 'restarted');
  assert.equal(m.get('a')?.incarnation, 6);
  assert.equal(m.get('a')?.host, '10.77.0.9');
  const [e] = m.receiveBeacon(beacon('a', 5), 20);
  assert.ok(e?.type === 'ignored' && e.reason === 'stale');
  assert.equal(m.get('a')?.incarnation, 6);
});

test('beacons of another cluster, and our own, are ignored', () => {
  const m = make();
  const [foreign] = m.receiveBeacon(beacon('a', 1, { cluster: 'other' }), 0);
  assert.ok(foreign?.type === 'ignored' && foreign.reason === 'foreign_cluster');
  assert.equal(m.get('a'), undefined);
  const [own] = m.receiveBeacon({ ...beacon('me', 10), host: self.host, port: self.port }, 0);
  assert.ok(own?.type === 'ignored' && own.reason === 'own_beacon');
  const [clash] = m.receiveBeacon({ ...beacon('me', 10), host: '10.77.0.99' }, 0);
  assert.ok(clash?.type === 'ignored' && clash.reason === 'id_conflict');
});

test('a leaving beacon marks the member dead at once, and its late beacons do not revive it', () => {
  const m = make();
  m.receiveBeacon(beacon('a', 3), 0);
  const [e] = m.receiveBeacon(beacon('a', 3, { leaving: true }), 10);
  assert.ok(e?.type === 'dead' && e.reason === 'left');
  assert.equal(m.receiveBeacon(beacon('a', 3), 20)[0]?.type, 'ignored');
  assert.equal(stateOf(m, 'a'), 'dead');
  assert.equal(m.receiveBeacon(beacon('a', 4), 30)[0]?.type, 'restarted');
});

test('our own stalled event loop does not make peers suspect', () => {
  const m = make();
  m.receiveBeacon(beacon('a'), 0);
  m.tick(100);
  // Frozen for 1.2 s: longer than suspectAfterMs, but the silence is ours.
  const events = m.tick(1_300);
  assert.deepEqual(events.map((e) => e.type), ['stall']);
  assert.equal(stateOf(m, 'a'), 'alive');
});

test('second-hand news only introduces members or newer incarnations', () => {
  const m = make();
  assert.equal(m.receiveBeacon(beacon('a', 2), 0, 'indirect')[0]?.type, 'joined');
  assert.equal(m.get('a')?.heardDirectly, false);
  assert.deepEqual(m.notHeardDirectly().map((x) => x.id), ['a']);
  for (let t = 100; t <= 2_000; t += 100) m.tick(t);
  assert.equal(stateOf(m, 'a'), 'dead');
  assert.equal(m.receiveBeacon(beacon('a', 2), 2_000, 'indirect')[0]?.type, 'ignored');
  assert.equal(stateOf(m, 'a'), 'dead');
});

test('a newcomer makes us beacon early so it learns us fast', () => {
  const m = make(0);
  m.pollBeacon(0);
  assert.equal(m.pollBeacon(60), undefined);
  m.receiveBeacon(beacon('a'), 60);
  assert.ok(m.nextWakeMs() <= 60 + config.joinReplyDelayMaxMs);
  assert.ok(m.pollBeacon(60 + config.joinReplyDelayMaxMs) !== undefined);
});

test('the member table is bounded; dead members make room first', () => {
  const m = new Membership(self, { ...config, membersMax: 3 }, () => 0.5, 0);
  for (const id of ['a', 'b', 'c']) m.receiveBeacon(beacon(id), 0);
  const [full] = m.receiveBeacon(beacon('d'), 0);
  assert.ok(full?.type === 'ignored' && full.reason === 'table_full');
  m.receiveBeacon(beacon('a', 1, { leaving: true }), 1);
  assert.equal(m.receiveBeacon(beacon('d'), 2)[0]?.type, 'joined');
  assert.equal(m.get('a'), undefined);
});

test('members() lists ourselves too, alive, in ring order', () => {
  const m = make();
  m.receiveBeacon(beacon('zz'), 0);
  assert.deepEqual(m.members().map((x) => [x.id, x.state]), [['me', 'alive'], ['zz', 'alive']]);
});

test('invalid configuration is refused', () => {
  assert.throws(() => new Membership(self, { ...config, deadAfterMs: 500, suspectAfterMs: 500 }, () => 0, 0), RangeError);
});

test('the cache fingerprint: ours goes out in our beacons; a member keeps the one of its latest first-hand beacon', () => {
  const m = make(0);
  m.setCacheDigest(0xfeedn);
  assert.equal(m.pollBeacon(0)?.cacheDigest, 0xfeedn);
  assert.equal(m.leaveBeacon().cacheDigest, 0xfeedn);
  m.receiveBeacon(beacon('a', 1, { cacheDigest: 7n }), 0);
  assert.equal(m.get('a')?.cacheDigest, 7n);
  m.receiveBeacon(beacon('a', 1, { cacheDigest: 8n }), 100);
  assert.equal(m.get('a')?.cacheDigest, 8n);
  m.receiveBeacon(beacon('a', 1), 200);
  assert.equal(m.get('a')?.cacheDigest, 0n, 'a beacon without one: unknown');
  // Second-hand (a seed's member list) says nothing of its cache now.
  m.receiveBeacon(beacon('bb', 1, { cacheDigest: 9n }), 300, 'indirect');
  assert.equal(m.get('bb')?.cacheDigest, 0n);
  m.receiveBeacon(beacon('a', 2, { cacheDigest: 5n }), 400, 'indirect');
  assert.equal(m.get('a')?.cacheDigest, 0n, 'a restart heard second-hand');
});
