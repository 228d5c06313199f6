/**
 * History checker for seed 004's persistent asynchronous multicast: given
 * what the coordinator accepted and what each participant logged, verifies
 * the four guarantees of DESIGN.md section 1 for every participant. Pure (no
 * I/O), so the simulator and the end-to-end tests share it.
 *
 * Input (PmHistory):
 * - `tdMs`: the persistence threshold td in ms.
 * - `accepted`: every message the coordinator accepted, {seq, sender, text,
 *   acceptedMs} with acceptedMs on the coordinator's clock. Seqs may have
 *   holes (an end-to-end test only knows the msends it saw acknowledged);
 *   acceptedMs must not decrease with seq.
 * - `uncertain` (optional): msends whose answer never came (the coordinator
 *   died meanwhile), so they may or may not have been accepted. They may
 *   appear in logs, at most once each; nothing else is checked about them.
 * - per participant, `log`: the lines of its log file in order, each the text
 *   (or {seq?, text} when the seq is known, which is then checked too), and
 *   `events`: its membership changes in the order they happened, each with
 *   `atMs` (coordinator time of acceptance, the PmOk's acceptedMs) and
 *   `afterSeq` (the coordinator's last seq at that moment: the command falls
 *   between message afterSeq and afterSeq + 1). `crash` events (the
 *   participant process died; not a disconnect: the coordinator still counts
 *   it online, and the `reconnect` after its restart resumes) have no
 *   afterSeq. When afterSeq is not known it is derived from atMs; messages
 *   accepted in the same ms as the event are then ambiguous (neither required
 *   nor forbidden).
 *
 * TEXTS MUST BE UNIQUE across `accepted` and `uncertain`: a log line is
 * matched to its message by text.
 *
 * Rules, per participant and message (by seq position among its events):
 * - unregistered (before its first register, or after a deregister and before
 *   registering again) -> must not be logged (guarantee 4);
 * - online -> owed (guarantee 1); a crash changes nothing;
 * - offline since D (disconnect), then reconnect at R: R - D <= td -> owed
 *   (guarantee 1); longer -> owed iff acceptedMs >= R - td, else must not be
 *   logged (guarantee 2); offline and never reconnected (deregistered, or the
 *   history ends) -> must not be logged: nothing was due;
 * - owed messages are required in the participant's last membership when it
 *   ends online and not crashed since its last register/reconnect; in any
 *   other membership they are excused (a deregister drops what was still in
 *   flight), but delivery is in seq order, so a logged owed message implies
 *   every owed one below it in the same membership (no holes);
 * - no text twice (guarantee 3); logged seqs strictly ascending; every line a
 *   message that was sent.
 */

export interface PmAccepted {
  readonly seq: number;
  readonly sender: string;
  readonly text: string;
  readonly acceptedMs: number;
}

export interface PmUncertain {
  readonly sender: string;
  readonly text: string;
}

export type PmEventKind = 'register' | 'deregister' | 'disconnect' | 'reconnect' | 'crash';

export interface PmEvent {
  readonly kind: PmEventKind;
  /** Coordinator time at which it accepted the command (for a crash: when the process died). */
  readonly atMs: number;
  /** The coordinator's last seq when it accepted the command; derived from atMs when absent. */
  readonly afterSeq?: number;
}

export type PmLogEntry = string | { readonly seq?: number; readonly text: string };

export interface PmParticipantHistory {
  readonly id: string;
  readonly log: readonly PmLogEntry[];
  readonly events: readonly PmEvent[];
}

export interface PmHistory {
  readonly tdMs: number;
  readonly accepted: readonly PmAccepted[];
  readonly uncertain?: readonly PmUncertain[];
  readonly participants: readonly PmParticipantHistory[];
}

/** Which guarantee a violation breaks; 'order' = log not in ascending seq, 'unknown' = a line nobody sent, 'input' = the history itself is inconsistent. */
export type PmGuarantee = 1 | 2 | 3 | 4 | 'order' | 'unknown' | 'input';

export interface PmViolation {
  /** '' for a violation of the history as a whole. */
  readonly participant: string;
  readonly guarantee: PmGuarantee;
  readonly seq?: number;
  readonly text?: string;
  readonly detail: string;
}

export interface PmHistoryStats {
  readonly messages: number;
  readonly logged: number;
  /** (participant, message) pairs by verdict. */
  readonly required: number;
  readonly excused: number;
  readonly forbidden: number;
  readonly ambiguous: number;
  /** Of the forbidden: older than the td window after a long disconnect. */
  readonly cutOff: number;
  /** Disconnects by length R - D against td; `exact` is R - D == td. */
  readonly disconnects: { readonly short: number; readonly exact: number; readonly long: number; readonly unfinished: number };
  /** Long reconnects with a message accepted at exactly R - td (the inclusive edge of the window). */
  readonly cutEdgeHits: number;
}

export interface PmAnalysis {
  readonly violations: PmViolation[];
  readonly stats: PmHistoryStats;
}

export function checkPmHistory(history: PmHistory): PmViolation[] {
  return analysePmHistory(history).violations;
}

type Verdict =
  | { readonly cls: 'owed'; readonly guarantee: 1 | 2; readonly membership: number; readonly why: string }
  | { readonly cls: 'forbidden'; readonly guarantee: 2 | 4; readonly cut: boolean; readonly why: string }
  | { readonly cls: 'ambiguous'; readonly why: string };

interface Classified {
  readonly verdicts: Verdict[];
  /** Membership numbers whose owed messages are required. */
  readonly live: ReadonlySet<number>;
}

interface Counters {
  short: number;
  exact: number;
  long: number;
  unfinished: number;
  cutEdgeHits: number;
}

export function analysePmHistory(h: PmHistory): PmAnalysis {
  const violations: PmViolation[] = [];
  const msgs = [...h.accepted].sort((a, b) => a.seq - b.seq);
  validateMessages(h, msgs, violations);
  const byText = new Map<string, PmAccepted>();
  for (const m of msgs) byText.set(m.text, m);
  const uncertain = new Set((h.uncertain ?? []).map((u) => u.text));
  const stats = { messages: msgs.length, logged: 0, required: 0, excused: 0, forbidden: 0, ambiguous: 0, cutOff: 0 };
  const counters: Counters = { short: 0, exact: 0, long: 0, unfinished: 0, cutEdgeHits: 0 };
  const ids = new Set<string>();
  for (const p of h.participants) {
    if (ids.has(p.id)) violations.push({ participant: p.id, guarantee: 'input', detail: 'participant listed twice' });
    ids.add(p.id);
    const classified = classifyAll(h, p, msgs, violations, counters);
    if (!classified) continue;
    const logged = checkLog(p, byText, uncertain, violations);
    stats.logged += p.log.length;
    checkVerdicts(p.id, msgs, classified, logged, violations, stats);
  }
  const { short, exact, long, unfinished, cutEdgeHits } = counters;
  return { violations, stats: { ...stats, disconnects: { short, exact, long, unfinished }, cutEdgeHits } };
}

function validateMessages(h: PmHistory, msgs: readonly PmAccepted[], out: PmViolation[]): void {
  if (!(Number.isFinite(h.tdMs) && h.tdMs >= 0)) out.push({ participant: '', guarantee: 'input', detail: `tdMs must be a number >= 0, got ${h.tdMs}` });
  const texts = new Set<string>();
  msgs.forEach((m, i) => {
    const prev = msgs[i - 1];
    if (!Number.isSafeInteger(m.seq) || m.seq < 1) out.push({ participant: '', guarantee: 'input', seq: m.seq, detail: `seq must be a whole number >= 1` });
    if (prev && prev.seq === m.seq) out.push({ participant: '', guarantee: 'input', seq: m.seq, detail: `seq ${m.seq} accepted twice` });
    if (prev && m.acceptedMs < prev.acceptedMs) {
      out.push({ participant: '', guarantee: 'input', seq: m.seq, detail: `seq ${m.seq} accepted at ${m.acceptedMs} ms, before seq ${prev.seq} at ${prev.acceptedMs} ms` });
    }
    if (texts.has(m.text)) out.push({ participant: '', guarantee: 'input', seq: m.seq, text: m.text, detail: 'text not unique: the checker matches log lines by text' });
    texts.add(m.text);
  });
  for (const u of h.uncertain ?? []) {
    if (texts.has(u.text)) out.push({ participant: '', guarantee: 'input', text: u.text, detail: 'uncertain text not unique (also accepted, or listed twice)' });
    texts.add(u.text);
  }
}

/** The verdict of every message for participant p; with unknown afterSeqs, both extreme placements must agree. */
function classifyAll(h: PmHistory, p: PmParticipantHistory, msgs: readonly PmAccepted[], out: PmViolation[], counters: Counters): Classified | undefined {
  const problems: string[] = [];
  p.events.forEach((e, i) => {
    const prev = p.events[i - 1];
    if (prev && e.atMs < prev.atMs) problems.push(`event ${i + 1} (${e.kind} at ${e.atMs} ms) is earlier than event ${i} (${prev.atMs} ms)`);
    if (e.afterSeq !== undefined && prev?.afterSeq !== undefined && e.afterSeq < prev.afterSeq) problems.push(`event ${i + 1} (${e.kind}) has afterSeq ${e.afterSeq} below event ${i}'s ${prev.afterSeq}`);
  });
  const last = msgs.length === 0 ? 0 : msgs[msgs.length - 1]!.seq;
  /** Highest seq accepted before ms (or at ms, when inclusive); 0 when none. */
  const lastBefore = (ms: number, inclusive: boolean): number => {
    let lo = 0;
    let hi = msgs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = msgs[mid]!.acceptedMs;
      if (t < ms || (inclusive && t === ms)) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : msgs[lo - 1]!.seq;
  };
  const place = (hi: boolean): number[] => {
    let floor = 0;
    return p.events.map((e) => {
      const pos = e.afterSeq ?? lastBefore(e.atMs, hi);
      floor = Math.max(floor, Math.min(pos, last + 1));
      return floor;
    });
  };
  const lo = place(false);
  const a = classify(h.tdMs, p, msgs, lo, problems, counters);
  if (problems.length > 0) {
    for (const detail of problems) out.push({ participant: p.id, guarantee: 'input', detail });
    return undefined;
  }
  if (p.events.every((e) => e.afterSeq !== undefined || e.kind === 'crash')) return a;
  const b = classify(h.tdMs, p, msgs, place(true), [], { short: 0, exact: 0, long: 0, unfinished: 0, cutEdgeHits: 0 });
  const verdicts = a.verdicts.map((va, i): Verdict => {
    const vb = b.verdicts[i]!;
    if (va.cls === 'owed' && vb.cls === 'owed' && a.live.has(va.membership) === b.live.has(vb.membership)) return va;
    if (va.cls === 'forbidden' && vb.cls === 'forbidden') return va;
    return { cls: 'ambiguous', why: `its place among ${p.id}'s events is not known (accepted in the same ms as one): ${describe(va)} / ${describe(vb)}` };
  });
  return { verdicts, live: a.live };
}

function describe(v: Verdict): string {
  return v.cls === 'forbidden' ? `forbidden: ${v.why}` : v.cls === 'owed' ? `owed: ${v.why}` : v.why;
}

/** Walks p's events with each placed after seq pos[i]; returns the verdict of every message. */
function classify(tdMs: number, p: PmParticipantHistory, msgs: readonly PmAccepted[], pos: readonly number[], problems: string[], counters: Counters): Classified {
  const verdicts: Verdict[] = [];
  let status: 'unregistered' | 'online' | 'offline' = 'unregistered';
  let membership = 0;
  /** The last status change (register, deregister, disconnect, reconnect), by index. */
  let since = -1;
  let crashedSince = false;
  let mi = 0;
  const at = (i: number): string => (i < 0 ? 'the start' : `${p.events[i]!.kind} at ${p.events[i]!.atMs} ms after seq ${pos[i]}`);
  for (let i = 0; i <= p.events.length; i++) {
    const e = p.events[i];
    if (e?.kind === 'crash') {
      crashedSince = true;
      continue;
    }
    // Messages up to this event's place were sent in the status set by `since`.
    const end = e ? pos[i]! : Infinity;
    for (; mi < msgs.length && msgs[mi]!.seq <= end; mi++) {
      const m = msgs[mi]!;
      if (status === 'unregistered') {
        const why = membership === 0 ? 'accepted before it first registered' : `accepted while it was deregistered (${at(since)})`;
        verdicts.push({ cls: 'forbidden', guarantee: 4, cut: false, why });
      } else if (status === 'online') {
        verdicts.push({ cls: 'owed', guarantee: 1, membership, why: `accepted while it was online (since ${at(since)})` });
      } else if (e?.kind === 'reconnect') {
        const away = e.atMs - p.events[since]!.atMs;
        const both = `${at(since)}, ${at(i)}`;
        if (away <= tdMs) {
          verdicts.push({ cls: 'owed', guarantee: 1, membership, why: `accepted while it was offline for ${away} ms <= td ${tdMs} (${both})` });
        } else if (m.acceptedMs >= e.atMs - tdMs) {
          verdicts.push({ cls: 'owed', guarantee: 2, membership, why: `accepted at ${m.acceptedMs} ms, in the td window (from ${e.atMs - tdMs} ms) of a reconnect after ${away} ms away (${both})` });
        } else {
          verdicts.push({ cls: 'forbidden', guarantee: 2, cut: true, why: `accepted at ${m.acceptedMs} ms, before the td window (from ${e.atMs - tdMs} ms) of a reconnect after ${away} ms away (${both})` });
        }
      } else {
        const then = e ? `it deregistered without reconnecting (${at(i)})` : 'it had not reconnected by the end';
        verdicts.push({ cls: 'forbidden', guarantee: 2, cut: false, why: `accepted while it was offline (${at(since)}) and ${then}: nothing was due` });
      }
    }
    if (!e) break;
    const bad = (why: string): void => {
      problems.push(`event ${i + 1} (${e.kind} at ${e.atMs} ms) ${why}`);
    };
    switch (e.kind) {
      case 'register':
        if (status !== 'unregistered') bad(`while already registered (${status})`);
        membership += 1;
        break;
      case 'deregister':
        if (status === 'unregistered') bad('while not registered');
        break;
      case 'disconnect':
        if (status !== 'online') bad(`while ${status}`);
        break;
      case 'reconnect':
        if (status === 'unregistered') bad('while not registered');
        if (status === 'offline') countAbsence(tdMs, e.atMs - p.events[since]!.atMs, e.atMs, msgs, counters);
        break;
    }
    status = e.kind === 'deregister' ? 'unregistered' : e.kind === 'disconnect' ? 'offline' : 'online';
    since = i;
    crashedSince = false;
  }
  if (status === 'offline') counters.unfinished += 1;
  const live = new Set<number>();
  if (status === 'online' && !crashedSince) live.add(membership);
  return { verdicts, live };
}

function countAbsence(tdMs: number, away: number, reconnectMs: number, msgs: readonly PmAccepted[], counters: Counters): void {
  if (away < tdMs) counters.short += 1;
  else if (away === tdMs) counters.exact += 1;
  else {
    counters.long += 1;
    if (msgs.some((m) => m.acceptedMs === reconnectMs - tdMs)) counters.cutEdgeHits += 1;
  }
}

/** Checks the log's own shape; returns logged seq -> 1-based line. */
function checkLog(p: PmParticipantHistory, byText: ReadonlyMap<string, PmAccepted>, uncertain: ReadonlySet<string>, out: PmViolation[]): Map<number, number> {
  const logged = new Map<number, number>();
  const lineOf = new Map<string, number>();
  let prev: { seq: number; line: number } | undefined;
  p.log.forEach((entry, i) => {
    const line = i + 1;
    const text = typeof entry === 'string' ? entry : entry.text;
    const first = lineOf.get(text);
    if (first !== undefined) {
      const m = byText.get(text);
      out.push({ participant: p.id, guarantee: 3, seq: m?.seq, text, detail: `logged twice: lines ${first} and ${line}` });
      return;
    }
    lineOf.set(text, line);
    const m = byText.get(text);
    if (!m) {
      if (!uncertain.has(text)) out.push({ participant: p.id, guarantee: 'unknown', text, detail: `line ${line} is no message that was sent` });
      return;
    }
    if (typeof entry !== 'string' && entry.seq !== undefined && entry.seq !== m.seq) {
      out.push({ participant: p.id, guarantee: 'input', seq: m.seq, text, detail: `line ${line} says seq ${entry.seq}, but that text was accepted as seq ${m.seq}` });
    }
    if (prev && m.seq < prev.seq) {
      out.push({ participant: p.id, guarantee: 'order', seq: m.seq, text, detail: `seq ${m.seq} at line ${line} comes after seq ${prev.seq} at line ${prev.line}` });
    }
    if (!prev || m.seq > prev.seq) prev = { seq: m.seq, line };
    logged.set(m.seq, line);
  });
  return logged;
}

function checkVerdicts(
  id: string,
  msgs: readonly PmAccepted[],
  c: Classified,
  logged: ReadonlyMap<number, number>,
  out: PmViolation[],
  stats: { required: number; excused: number; forbidden: number; ambiguous: number; cutOff: number },
): void {
  const who = (m: PmAccepted): string => `seq ${m.seq} "${m.text}" from ${m.sender}`;
  /** Per membership: highest logged owed seq, to find holes below it. */
  const highest = new Map<number, number>();
  msgs.forEach((m, i) => {
    const v = c.verdicts[i]!;
    const line = logged.get(m.seq);
    if (v.cls === 'ambiguous') {
      stats.ambiguous += 1;
    } else if (v.cls === 'forbidden') {
      stats.forbidden += 1;
      if (v.cut) stats.cutOff += 1;
      if (line !== undefined) out.push({ participant: id, guarantee: v.guarantee, seq: m.seq, text: m.text, detail: `received ${who(m)} (line ${line}) but must not have: ${v.why}` });
    } else {
      const required = c.live.has(v.membership);
      if (required) stats.required += 1;
      else stats.excused += 1;
      if (line !== undefined) highest.set(v.membership, Math.max(highest.get(v.membership) ?? 0, m.seq));
      else if (required) out.push({ participant: id, guarantee: v.guarantee, seq: m.seq, text: m.text, detail: `missed ${who(m)}: ${v.why}` });
    }
  });
  msgs.forEach((m, i) => {
    const v = c.verdicts[i]!;
    if (v.cls !== 'owed' || c.live.has(v.membership) || logged.has(m.seq)) return;
    const top = highest.get(v.membership);
    if (top !== undefined && top > m.seq) {
      out.push({ participant: id, guarantee: v.guarantee, seq: m.seq, text: m.text, detail: `missed ${who(m)} although it received seq ${top} (line ${logged.get(top)}) of the same membership, and delivery is in order: ${v.why}` });
    }
  });
}
