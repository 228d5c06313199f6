import { isValidNodeId } from '../ids.js';
import { PATH_LENGTH_MAX, checkText, messageId, streamKey } from './message.js';
import type { GossipMessage, Sha256, TextProblem } from './message.js';
import { StreamState } from './streams.js';
import type { StreamDigest } from './streams.js';

/**
 * Dissemination by flooding (seed 003) plus digest anti-entropy, sans-IO.
 *
 * - submit: number the text in our stream, return the message to store and
 *   send to every neighbour with path [self].
 * - receive: a message whose id does not match its content is refused; one we
 *   hold (or purged) is a duplicate and dropped; a new one is stored, and
 *   forwarded with self appended to the path to every neighbour not on it.
 * - anti-entropy: a node sends its per-stream digest; the peer answers with
 *   the seqs the digest lacks, so the cost follows the difference.
 *
 * The core keeps only per-stream bookkeeping (no texts): the runtime stores
 * messages and loads what `plan` asks for.
 */
export interface GossipConfig {
  readonly selfId: string;
  readonly incarnation: number;
  readonly sha256: Sha256;
  readonly messageBytesMax: number;
  /** Bound of the numbers in the "held above the high-water mark" run list sent per stream (StreamDigest.above). */
  readonly digestAboveMax: number;
  /** Bound of the number of streams (origin incarnations) tracked. */
  readonly streamsMax: number;
}

export const GOSSIP_DEFAULTS = Object.freeze({
  messageBytesMax: 64 * 1024,
  digestAboveMax: 1_024,
  streamsMax: 65_536,
});

export type ReceiveVerdict =
  | { readonly kind: 'new'; readonly message: GossipMessage }
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'invalid'; readonly reason: string };

export type SubmitResult = { readonly ok: true; readonly message: GossipMessage } | { readonly ok: false; readonly problem: TextProblem };

export interface SendPlan {
  readonly origin: string;
  readonly incarnation: number;
  readonly seqs: readonly number[];
}

/** Whether a node on `path` (other than us) has `n` as an overlay neighbour: it flooded to `n` already. */
function coveredByPath(path: readonly string[], self: string, n: string, neighboursOf: (nodeId: string) => ReadonlySet<string> | undefined): boolean {
  for (const p of path) if (p !== self && neighboursOf(p)?.has(n) === true) return true;
  return false;
}

export class GossipCore {
  private readonly streams = new Map<string, StreamState>();
  /** The stream find() returned last (streams are never removed, only replaced by unreceive, which clears it). */
  private last: StreamState | undefined;
  private nextSeq = 1;

  constructor(readonly config: GossipConfig) {}

  /** Rebuilds the bookkeeping from the store at start. */
  restore(held: Iterable<{ origin: string; incarnation: number; seq: number }>, floors: Iterable<{ origin: string; incarnation: number; floor: number }>): void {
    for (const f of floors) this.stream(f.origin, f.incarnation)?.raiseFloor(f.floor);
    for (const h of held) this.stream(h.origin, h.incarnation)?.add(h.seq);
    // A stream of ours from this very incarnation (a restart that reused it) continues after its top.
    const mine = this.streams.get(streamKey(this.config.selfId, this.config.incarnation));
    if (mine) this.nextSeq = mine.top() + 1;
  }

  submit(text: string, nowMs: number): SubmitResult {
    const problem = checkText(text, this.config.messageBytesMax);
    if (problem) return { ok: false, problem };
    const { selfId, incarnation, sha256 } = this.config;
    const seq = this.nextSeq++;
    const message: GossipMessage = {
      id: messageId(sha256, selfId, incarnation, seq, text),
      origin: selfId,
      incarnation,
      seq,
      text,
      createdMs: nowMs,
      path: [selfId],
    };
    this.stream(selfId, incarnation)!.add(seq);
    return { ok: true, message };
  }

  /** Judges a message from a peer; a new one is recorded as held (the runtime must store it). */
  receive(message: GossipMessage): ReceiveVerdict {
    const badFields = this.validateFields(message);
    if (badFields) return { kind: 'invalid', reason: badFields };
    // Flooding delivers most messages two or three times: drop the repeats
    // before hashing. (A forged copy of a seq we hold is dropped either way.)
    if (this.find(message.origin, message.incarnation)?.has(message.seq)) return { kind: 'duplicate' };
    const invalid = this.validateContent(message);
    if (invalid) return { kind: 'invalid', reason: invalid };
    const stream = this.stream(message.origin, message.incarnation);
    if (!stream) return { kind: 'invalid', reason: `more than ${this.config.streamsMax} streams` };
    if (stream.has(message.seq)) return { kind: 'duplicate' };
    stream.add(message.seq);
    const path = message.path.length > PATH_LENGTH_MAX ? message.path.slice(-PATH_LENGTH_MAX) : message.path;
    return { kind: 'new', message: path === message.path ? message : { ...message, path } };
  }

  /** Forgets a message that could not be stored, so anti-entropy fetches it again. */
  unreceive(message: GossipMessage): void {
    // Rebuilding one stream is rare (a failed write); correctness over speed.
    const stream = this.streams.get(streamKey(message.origin, message.incarnation));
    if (!stream) return;
    const replacement = new StreamState(stream.origin, stream.incarnation);
    replacement.raiseFloor(stream.floor);
    for (let s = stream.floor + 1; s <= stream.top(); s++) if (s !== message.seq && stream.has(s)) replacement.add(s);
    this.streams.set(streamKey(message.origin, message.incarnation), replacement);
    this.last = undefined;
  }

  /**
   * Neighbours a message should go to: not on its path, with our id appended
   * for them. With `neighboursOf` (our picture of other nodes' overlay
   * neighbours, given only while the overlay is stable), a neighbour that is
   * also a neighbour of a node on the path is skipped too: that node flooded
   * to all its neighbours not on the path before it, so this one has it or
   * will (anti-entropy repairs a copy lost on the way). This roughly halves
   * the copies a node receives.
   */
  forward(
    message: GossipMessage,
    neighbours: readonly string[],
    neighboursOf?: (nodeId: string) => ReadonlySet<string> | undefined,
  ): { to: string[]; message: GossipMessage } {
    // Called for every message a node forwards: plain loops over the short path, no Set or closure per call.
    const self = this.config.selfId;
    const old = message.path;
    const to: string[] = [];
    for (const n of neighbours) {
      if (n === self || old.includes(n)) continue;
      if (neighboursOf !== undefined && coveredByPath(old, self, n, neighboursOf)) continue;
      to.push(n);
    }
    const path = old[old.length - 1] === self ? old : old.length < PATH_LENGTH_MAX ? [...old, self] : [...old.slice(old.length - PATH_LENGTH_MAX + 1), self];
    return { to, message: { ...message, path } };
  }

  digest(): StreamDigest[] {
    return [...this.streams.values()].map((s) => s.digest(this.config.digestAboveMax));
  }

  /** What a peer whose digest is `theirs` lacks, at most `limit` messages in all. */
  plan(theirs: readonly StreamDigest[], limit: number): SendPlan[] {
    const byKey = new Map(theirs.map((d) => [streamKey(d.origin, d.incarnation), d]));
    const out: SendPlan[] = [];
    let budget = limit;
    for (const [key, stream] of this.streams) {
      if (budget <= 0) break;
      const seqs = stream.missingFrom(byKey.get(key), budget);
      if (seqs.length === 0) continue;
      budget -= seqs.length;
      out.push({ origin: stream.origin, incarnation: stream.incarnation, seqs });
    }
    return out;
  }

  /** Whether a peer with digest `theirs` holds a message we neither hold nor purged. */
  lacksAnyOf(theirs: readonly StreamDigest[]): boolean {
    for (const d of theirs) {
      const ours = this.streams.get(streamKey(d.origin, d.incarnation));
      if (!ours) {
        if (d.hwm > 0 || d.above.length > 1) return true;
        continue;
      }
      if (ours.lacksAnyOf(d)) return true;
    }
    return false;
  }

  /** Retention purged every seq <= floor of these streams. */
  applyPurge(floors: Iterable<{ origin: string; incarnation: number; floor: number }>): void {
    for (const f of floors) this.streams.get(streamKey(f.origin, f.incarnation))?.raiseFloor(f.floor);
  }

  /** Held now or purged: a copy of this message is a duplicate (a seq below 1 is never held: such a message is invalid). */
  has(origin: string, incarnation: number, seq: number): boolean {
    return seq >= 1 && (this.find(origin, incarnation)?.has(seq) ?? false);
  }

  holds(origin: string, incarnation: number, seq: number): boolean {
    return this.streams.get(streamKey(origin, incarnation))?.holds(seq) ?? false;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * The stream's state, if tracked. The last one found is kept: a batch
   * brings runs of one stream, and every copy received is looked up (a key
   * string built and hashed per lookup otherwise).
   */
  private find(origin: string, incarnation: number): StreamState | undefined {
    const last = this.last;
    if (last !== undefined && last.origin === origin && last.incarnation === incarnation) return last;
    const s = this.streams.get(streamKey(origin, incarnation));
    if (s !== undefined) this.last = s;
    return s;
  }

  private stream(origin: string, incarnation: number): StreamState | undefined {
    let s = this.find(origin, incarnation);
    if (!s) {
      if (this.streams.size >= this.config.streamsMax) return undefined;
      s = new StreamState(origin, incarnation);
      this.streams.set(streamKey(origin, incarnation), s);
      this.last = s;
    }
    return s;
  }

  private validateFields(m: GossipMessage): string | undefined {
    if (!Number.isSafeInteger(m.seq) || m.seq < 1) return `bad seq ${m.seq}`;
    if (!Number.isSafeInteger(m.incarnation) || m.incarnation < 0) return `bad incarnation ${m.incarnation}`;
    // A node id, so never a NUL: an origin with one could forge another message's id (messageId's separators).
    if (!isValidNodeId(m.origin)) return 'bad origin';
    return undefined;
  }

  private validateContent(m: GossipMessage): string | undefined {
    const problem = checkText(m.text, this.config.messageBytesMax);
    if (problem) return problem.code === 'empty' ? 'empty text' : `text of ${problem.bytes} bytes over ${problem.maxBytes}`;
    if (m.id !== messageId(this.config.sha256, m.origin, m.incarnation, m.seq, m.text)) return 'id does not match the content';
    return undefined;
  }
}
