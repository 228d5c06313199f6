import type { ReceiveVerdict, SubmitResult } from '../core/gossip/gossip.js';
import { PATH_LENGTH_MAX, messageId, streamKey, utf8Bytes } from '../core/gossip/message.js';
import type { GossipMessage } from '../core/gossip/message.js';
import type { SimGossipDisk } from './gossip-disk.js';
import type { GossipCluster, GossipLifecycle, GossipListener } from './gossip-cluster.js';
import type { Violation } from './invariants.js';
import { sha256 } from './sha256.js';

interface Submitted {
  readonly origin: string;
  readonly incarnation: number;
  readonly seq: number;
  readonly text: string;
}

/**
 * Checks that hold at every moment of a gossip run, faults or not:
 * - submit numbering: each incarnation's stream numbers its submits 1, 2, 3, ...
 *   and every id is the hash of its content; only empty or oversized texts are refused;
 * - a copy corrupted in transit is refused (`invalid`); an intact one never is;
 * - on every store write: the id matches the content, the message is one a
 *   client submitted with exactly that text (nothing invented or altered),
 *   its path starts at its origin, and the store does not hold it already
 *   (by id or by origin/incarnation/seq): each message is stored once.
 * It also records what was acknowledged, for the convergence check.
 */
export class GossipMonitor implements GossipListener {
  readonly violations: Violation[] = [];
  readonly submitted = new Map<string, Submitted>();
  readonly acknowledged = new Set<string>();
  readonly counts = { submits: 0, refused: 0, acked: 0, writes: 0, writeFailures: 0, lostInFlight: 0, duplicates: 0, invalid: 0, corruptRefused: 0, crashes: 0 };
  private readonly lastSeq = new Map<string, number>();
  private readonly violationsMax = 50;

  constructor(
    cluster: GossipCluster,
    private readonly messageBytesMax: number,
  ) {
    cluster.addListener(this);
  }

  onLifecycle(_nodeId: string, change: GossipLifecycle): void {
    if (change.kind === 'crash') this.counts.crashes += 1;
  }

  onSubmit(nodeId: string, text: string, result: SubmitResult, nowMs: number): void {
    const bad = text.length === 0 || utf8Bytes(text) > this.messageBytesMax;
    if (!result.ok) {
      this.counts.refused += 1;
      if (!bad) this.fail(nowMs, 'refuse-only-bad-text', `${nodeId} refused a ${utf8Bytes(text)}-byte text: ${JSON.stringify(result.problem)}`);
      return;
    }
    this.counts.submits += 1;
    const m = result.message;
    if (bad) this.fail(nowMs, 'refuse-only-bad-text', `${nodeId} accepted a text of ${utf8Bytes(text)} bytes`);
    if (m.origin !== nodeId || m.text !== text || m.path.length !== 1 || m.path[0] !== nodeId) {
      this.fail(nowMs, 'submit-shape', `${nodeId} made ${describe(m)} from ${JSON.stringify(text)}`);
    }
    const key = streamKey(m.origin, m.incarnation);
    const expected = (this.lastSeq.get(key) ?? 0) + 1;
    if (m.seq !== expected) this.fail(nowMs, 'submit-numbering', `${nodeId}: seq ${m.seq} in ${key}, expected ${expected}`);
    this.lastSeq.set(key, m.seq);
    if (m.id !== messageId(sha256, m.origin, m.incarnation, m.seq, m.text)) this.fail(nowMs, 'id-matches-content', `submit ${describe(m)}`);
    if (this.submitted.has(m.id)) this.fail(nowMs, 'ids-unique', `two submits share id ${m.id}`);
    this.submitted.set(m.id, { origin: m.origin, incarnation: m.incarnation, seq: m.seq, text: m.text });
  }

  onAck(nodeId: string, m: GossipMessage, nowMs: number): void {
    this.counts.acked += 1;
    if (!this.submitted.has(m.id)) this.fail(nowMs, 'ack-only-submits', `${nodeId} acknowledged unknown ${describe(m)}`);
    this.acknowledged.add(m.id);
  }

  onVerdict(nodeId: string, m: GossipMessage, verdict: ReceiveVerdict, corrupted: boolean, nowMs: number): void {
    if (verdict.kind === 'duplicate') this.counts.duplicates += 1;
    if (verdict.kind === 'invalid') this.counts.invalid += 1;
    if (corrupted && verdict.kind === 'invalid') this.counts.corruptRefused += 1;
    // A corrupted copy must never be taken as new. One whose (origin, incarnation,
    // seq) the node already holds is dropped as a duplicate before any hashing,
    // which is as good as refusing it: nothing is stored either way.
    if (corrupted && verdict.kind === 'new') this.fail(nowMs, 'refuse-corrupt', `${nodeId} took corrupted ${describe(m)} as new`);
    if (!corrupted && verdict.kind === 'invalid') this.fail(nowMs, 'accept-intact', `${nodeId} refused intact ${describe(m)}: ${verdict.reason}`);
  }

  onWrite(nodeId: string, m: GossipMessage, disk: SimGossipDisk, nowMs: number): void {
    this.counts.writes += 1;
    if (m.id !== messageId(sha256, m.origin, m.incarnation, m.seq, m.text)) this.fail(nowMs, 'id-matches-content', `${nodeId} stores ${describe(m)}`);
    const s = this.submitted.get(m.id);
    if (!s || s.origin !== m.origin || s.incarnation !== m.incarnation || s.seq !== m.seq || s.text !== m.text) {
      this.fail(nowMs, 'no-invented-messages', `${nodeId} stores ${describe(m)}, which no client submitted`);
    }
    if (m.path.length === 0 || (m.path.length < PATH_LENGTH_MAX && m.path[0] !== m.origin)) {
      this.fail(nowMs, 'path-from-origin', `${nodeId} stores ${describe(m)} with path [${m.path.join(',')}]`);
    }
    if (disk.get(m.id) || disk.find(m.origin, m.incarnation, m.seq)) this.fail(nowMs, 'store-once', `${nodeId} writes ${describe(m)} a second time`);
  }

  onWriteFailed(): void {
    this.counts.writeFailures += 1;
  }

  onLostInFlight(_nodeId: string, messages: readonly GossipMessage[]): void {
    this.counts.lostInFlight += messages.length;
  }

  /** Highest seq submitted per stream (for checking a core's bookkeeping against its store). */
  streams(): { origin: string; incarnation: number; top: number }[] {
    const out = new Map<string, { origin: string; incarnation: number; top: number }>();
    for (const s of this.submitted.values()) {
      const key = streamKey(s.origin, s.incarnation);
      const e = out.get(key);
      if (!e) out.set(key, { origin: s.origin, incarnation: s.incarnation, top: s.seq });
      else e.top = Math.max(e.top, s.seq);
    }
    return [...out.values()];
  }

  private fail(atMs: number, invariant: string, detail: string): void {
    if (this.violations.length < this.violationsMax) this.violations.push({ atMs, invariant, detail });
  }
}

export function describe(m: GossipMessage): string {
  const text = m.text.length > 24 ? `${m.text.slice(0, 24)}...` : m.text;
  return `${m.id} (${m.origin}@${m.incarnation}#${m.seq} ${JSON.stringify(text)})`;
}

export interface ConvergenceReport {
  readonly violations: Violation[];
  /** Acknowledged messages not required: their origin is down for good and no live node stored them. */
  readonly exempt: number;
  readonly required: number;
}

/**
 * The state a quiet cluster must reach (call after faults stop and a settle
 * time): nothing is in flight; every live node's store holds exactly the
 * acknowledged messages, each once, with the submitted text, and nothing
 * else; its core holds exactly what its store holds. Exempt: an
 * acknowledged message whose origin is down for good and that no live node
 * stored (it was lost with its only copies; nobody could deliver it).
 * Unacknowledged submits (crashed in flight or failed to write at their
 * origin) never left their origin, so none may appear anywhere.
 */
export function checkGossipConverged(cluster: GossipCluster, monitor: GossipMonitor): ConvergenceReport {
  const nowMs = cluster.nowMs;
  const violations: Violation[] = [];
  const fail = (invariant: string, detail: string): void => {
    if (violations.length < 50) violations.push({ atMs: nowMs, invariant, detail });
  };
  const live = cluster.runningIds().map((id) => cluster.node(id));
  const liveIds = new Set(live.map((n) => n.spec.id));
  const required = new Set<string>();
  let exempt = 0;
  for (const id of monitor.acknowledged) {
    const origin = monitor.submitted.get(id)!.origin;
    if (liveIds.has(origin) || live.some((n) => n.disk.get(id))) required.add(id);
    else exempt += 1;
  }
  const streams = monitor.streams();
  for (const n of live) {
    const me = n.spec.id;
    if (n.pendingCount > 0) fail('settled', `${me} has ${n.pendingCount} write(s) in flight`);
    const missing = [...required].filter((id) => !n.disk.get(id));
    if (missing.length > 0) {
      const list = missing.slice(0, 5).map((id) => describe({ ...monitor.submitted.get(id)!, id, createdMs: 0, path: [] }));
      fail('all-hold-every-message', `${me} lacks ${missing.length} of ${required.size}: ${list.join(', ')}${missing.length > 5 ? ', ...' : ''}`);
    }
    for (const m of n.disk.all()) {
      const s = monitor.submitted.get(m.id);
      if (!monitor.acknowledged.has(m.id)) fail('only-acknowledged', `${me} holds unacknowledged ${describe(m)}`);
      else if (!required.has(m.id)) fail('only-acknowledged', `${me} holds exempt ${describe(m)}`);
      if (s && s.text !== m.text) fail('correct-text', `${me} holds ${describe(m)}, submitted as ${JSON.stringify(s.text)}`);
      if (!n.core!.holds(m.origin, m.incarnation, m.seq)) fail('core-matches-store', `${me} stores ${describe(m)} but its core does not hold it`);
    }
    let coreHeld = 0;
    for (const s of streams) for (let seq = 1; seq <= s.top; seq++) if (n.core!.holds(s.origin, s.incarnation, seq)) coreHeld += 1;
    if (coreHeld !== n.disk.size) fail('core-matches-store', `${me}'s core holds ${coreHeld} messages, its store ${n.disk.size}`);
  }
  return { violations, exempt, required: required.size };
}
