/**
 * npm run bench:membership — issue 2's membership benchmark.
 *
 * Builds a 16-host lab (test/helpers/lab.ts: network namespaces on a bridge,
 * real multicast between them, nothing in the root namespace) and measures,
 * for 16 `grapevine node` processes and for 16 serf agents (Debian's `serf`,
 * installed when missing) in the same run:
 *
 *   1. start → full membership of 16 (median of BENCH_STARTUP_RUNS runs, default 3);
 *   2. failure detection: kill -9 one node → every other node says dead
 *      (BENCH_KILLS kills, default 5, the victim restarted in between);
 *   3. false positives during BENCH_FP_SECONDS (default 300) with 5 % loss on
 *      every host and one node per system stopped (SIGSTOP/SIGCONT) for 300 ms
 *      (BENCH_STALL_MS) every 10 s — both clusters side by side;
 *   4. idle bytes/s per node over BENCH_IDLE_SECONDS (default 60; one system
 *      running at a time) and RSS per node.
 *
 * Prints a table, rewrites the "membership" section of bench/RESULTS.md and
 * writes the raw figures to bench/results/membership-<date>.json. The lab is
 * destroyed on every exit path (the Lab class also does it on SIGINT/SIGTERM).
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRAPEVINE_JS } from '../test/helpers/lab-cluster.js';
import { Lab } from '../test/helpers/lab.js';
import { listNamespaces } from '../test/helpers/lab-ns.js';
import { BACK_MSGS, startGv } from './lib/grapevine.js';
import type { GvNode } from './lib/grapevine.js';
import { running, sleep, waitFor } from './lib/lines.js';
import { machineInfo } from './lib/machine.js';
import type { MachineInfo } from './lib/machine.js';
import { rssMiB, txCounters } from './lib/host-stats.js';
import { writeSection } from './lib/results-md.js';
import { enableMdns, ensureSerf, startSerf, writeHandlerScript } from './lib/serf.js';
import type { SerfAgent } from './lib/serf.js';
import { max, median, min, present, round } from './lib/stats.js';
import { mdTable, row, textTable } from './lib/table.js';
import type { Row } from './lib/table.js';

const N = 16;
const GV_PORT = 7000;
const LOSS = 0.05;
const STALL_EVERY_MS = 10_000;
const BASELINE_SECONDS = 10;
const FULL_TIMEOUT_MS = 30_000;
const REJOIN_TIMEOUT_MS = 30_000;
const KILL_HOSTS = [3, 8, 13, 5, 10, 1, 15, 6, 11, 2];
const GV_STALLED_HOST = 5;
const SERF_STALLED_HOST = 10;
const GOALS = { fullAfterLastStartS: 0.5, detectionS: 2, falsePositives: 0, rssMB: 80 };
const RSS_GOAL_MIB = (GOALS.rssMB * 1e6) / 2 ** 20; // 80 MB = 76.3 MiB

const REPO = fileURLToPath(new URL('../', import.meta.url));
const RESULTS_MD = join(REPO, 'bench', 'RESULTS.md');
const RESULTS_DIR = join(REPO, 'bench', 'results');

function envInt(name: string, dflt: number, minimum: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < minimum) throw new Error(`${name} must be an integer >= ${minimum}, got '${raw}'`);
  return v;
}

const STARTUP_RUNS = envInt('BENCH_STARTUP_RUNS', 3, 1);
const KILLS = envInt('BENCH_KILLS', 5, 1);
const IDLE_SECONDS = envInt('BENCH_IDLE_SECONDS', 60, 1);
const FP_SECONDS = envInt('BENCH_FP_SECONDS', 300, 1);
/** How long the stopped node stays stopped each time (issue 2: 300 ms; longer only to study the detector). */
const STALL_MS = envInt('BENCH_STALL_MS', 300, 1);

const T0 = Date.now();
function say(msg: string): void {
  process.stderr.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

// ---------------------------------------------------------------------------
// The two systems behind one interface

interface Member {
  readonly hostIndex: number;
  readonly proc: ChildProcess;
  /** The name other members use for this one (grapevine id, serf node name). */
  key(): string | undefined;
  /** This member's own start line (grapevine: 'node starting' log time; serf: arrival of 'Serf agent starting'). */
  startedAt(): number | undefined;
  /** When this member first saw n members alive (itself included). */
  fullAt(n: number): number | undefined;
  deadAt(member: string, sinceMs: number): number | undefined;
  backAt(member: string, sinceMs: number): number | undefined;
  /** serf only: the same two as seen by an event-handler script. */
  handlerFullAt?(n: number): number | undefined;
  handlerDeadAt?(member: string, sinceMs: number): number | undefined;
}

interface System {
  readonly name: 'grapevine' | 'serf';
  start(hostIndex: number, tag: string, restartOf?: Member): Member;
}

class GvMember implements Member {
  constructor(readonly node: GvNode) {}
  get hostIndex(): number {
    return this.node.hostIndex;
  }
  get proc(): ChildProcess {
    return this.node.proc;
  }
  key(): string | undefined {
    return this.node.id;
  }
  startedAt(): number | undefined {
    return this.node.startedAt;
  }
  fullAt(n: number): number | undefined {
    return this.node.fullAt(n);
  }
  deadAt(member: string, sinceMs: number): number | undefined {
    return this.node.firstAbout(['member dead'], member, sinceMs);
  }
  backAt(member: string, sinceMs: number): number | undefined {
    return this.node.firstAbout(BACK_MSGS, member, sinceMs);
  }
}

class SerfMember implements Member {
  constructor(readonly agent: SerfAgent) {}
  get hostIndex(): number {
    return this.agent.hostIndex;
  }
  get proc(): ChildProcess {
    return this.agent.proc;
  }
  key(): string {
    return this.agent.name;
  }
  startedAt(): number | undefined {
    return this.agent.startedAt;
  }
  fullAt(n: number): number | undefined {
    return this.agent.fullAt(n);
  }
  deadAt(member: string, sinceMs: number): number | undefined {
    return this.agent.firstAbout('failed', member, sinceMs);
  }
  backAt(member: string, sinceMs: number): number | undefined {
    return this.agent.firstAbout('join', member, sinceMs);
  }
  handlerFullAt(n: number): number | undefined {
    return this.agent.handlerFullAt(n);
  }
  handlerDeadAt(member: string, sinceMs: number): number | undefined {
    return this.agent.handlerFirst('member-failed', member, sinceMs);
  }
}

function grapevineSystem(lab: Lab): System {
  return {
    name: 'grapevine',
    start(i, tag, restartOf) {
      const dataDir = restartOf instanceof GvMember ? restartOf.node.dataDir : join(lab.tmpDir, `gv-${tag}-h${i}`);
      return new GvMember(startGv(lab, i, GV_PORT, dataDir));
    },
  };
}

function serfSystem(lab: Lab, handlerScript: string): System {
  let seq = 0;
  return {
    name: 'serf',
    start(i, tag) {
      seq += 1;
      return new SerfMember(startSerf(lab, i, `s${i}`, handlerScript, join(lab.tmpDir, `serf-${tag}-h${i}-${seq}.events`)));
    },
  };
}

// ---------------------------------------------------------------------------
// Measurements

interface StartupRun {
  readonly ok: boolean;
  /** How many nodes reached full membership within the timeout. */
  readonly nodesFull: number;
  /** Last node's start line minus the first's: how spread out the 16 starts were. */
  readonly startSpreadS: number | null;
  /** Last node to see 16 alive, minus the first spawn by this bench. */
  readonly fromFirstSpawnS: number | null;
  /** Last node to see 16 alive, minus the last node's own start line. */
  readonly afterLastStartS: number | null;
  /** serf only: the same with the event handler's timestamps. */
  readonly handlerFromFirstSpawnS?: number | null;
  readonly handlerAfterLastStartS?: number | null;
}

interface KillResult {
  readonly host: number;
  readonly victim: string;
  /** kill -9 → the last of the 15 others says dead. */
  readonly allS: number | null;
  /** kill -9 → the first / the median of the others says dead. */
  readonly firstS: number | null;
  readonly medianS: number | null;
  readonly missing: number;
  readonly handlerAllS?: number | null;
  /** Restart (same data dir / node name) → every other node has it alive again. */
  readonly rejoinS: number | null;
}

interface Spread {
  readonly median: number | null;
  readonly max: number | null;
  readonly min: number | null;
}

function spread(xs: readonly (number | null | undefined)[], digits = 3): Spread {
  const p = present(xs);
  return { median: round(median(p), digits), max: round(max(p), digits), min: round(min(p), digits) };
}

interface IdleResult {
  readonly seconds: number;
  readonly bytesPerSecPerNode: Spread;
  readonly packetsPerSecPerNode: Spread;
  readonly perHostBytesPerSec: number[];
  readonly rssMiB: Spread;
}

interface SystemResult {
  readonly startup: StartupRun[];
  readonly startupSummary: {
    readonly afterLastStartS: Spread;
    readonly fromFirstSpawnS: Spread;
    readonly startSpreadS: Spread;
    readonly handlerAfterLastStartS?: Spread;
    readonly handlerFromFirstSpawnS?: Spread;
  };
  readonly idle: IdleResult;
  readonly kills: KillResult[];
  readonly detectionAllS: Spread;
  readonly detectionMedianNodeS: Spread;
  readonly handlerDetectionAllS?: Spread;
  readonly rejoinS: Spread;
}

interface FpSide {
  readonly stalledHost: number;
  readonly stalledMember: string;
  readonly falseDead: number;
  readonly falseDeadByMember: Record<string, number>;
  readonly falseDeadAboutStalled: number;
  readonly suspicions: number;
  readonly suspicionsByMember: Record<string, number>;
  readonly handlerFailed?: number;
  readonly stallsNoticedByStalledNode?: number;
  /** 'event loop stalled' lines of the nodes that were not stopped (CPU starvation). */
  readonly stallsLoggedByOthers?: number;
  readonly rssAfterMiB: Spread;
  readonly allRunning: boolean;
}

interface FpResult {
  readonly seconds: number;
  readonly loss: number;
  readonly stalls: number;
  readonly stallMs: Spread;
  readonly grapevine: FpSide;
  readonly serf: FpSide;
}

async function startAll(sys: System, tag: string): Promise<{ members: Member[]; firstSpawn: number }> {
  const firstSpawn = Date.now();
  const members: Member[] = [];
  for (let i = 0; i < N; i++) members.push(sys.start(i, tag));
  await waitFor(() => members.every((m) => m.fullAt(N) !== undefined), FULL_TIMEOUT_MS);
  return { members, firstSpawn };
}

async function stopAll(lab: Lab, members: readonly Member[]): Promise<void> {
  await Promise.all(members.map((m) => lab.kill9(m.proc)));
}

function startupFigures(sys: System, members: readonly Member[], firstSpawn: number): StartupRun {
  const fulls = members.map((m) => m.fullAt(N));
  const starts = present(members.map((m) => m.startedAt()));
  const nodesFull = present(fulls).length;
  const ok = nodesFull === N && starts.length === N;
  const lastFull = ok ? max(present(fulls))! : null;
  const firstStart = min(starts);
  const lastStart = max(starts);
  const s = (x: number | null): number | null => (x === null ? null : round(x / 1000));
  const run: StartupRun = {
    ok,
    nodesFull,
    startSpreadS: firstStart !== null && lastStart !== null ? s(lastStart - firstStart) : null,
    fromFirstSpawnS: lastFull !== null ? s(lastFull - firstSpawn) : null,
    afterLastStartS: lastFull !== null && lastStart !== null ? s(lastFull - lastStart) : null,
  };
  if (sys.name !== 'serf') return run;
  const hFulls = members.map((m) => m.handlerFullAt?.(N));
  const hLast = present(hFulls).length === N ? max(present(hFulls)) : null;
  return {
    ...run,
    handlerFromFirstSpawnS: hLast !== null ? s(hLast - firstSpawn) : null,
    handlerAfterLastStartS: hLast !== null && lastStart !== null ? s(hLast - lastStart) : null,
  };
}

/** Transmit counters of every host over `seconds`, and the RSS of the given processes at the end. */
async function idle(lab: Lab, pids: readonly number[], seconds: number): Promise<IdleResult> {
  const hosts = lab.hosts.map((h) => h.index);
  const before = await Promise.all(hosts.map((i) => txCounters(lab, i)));
  const t1 = Date.now();
  await sleep(seconds * 1000);
  const after = await Promise.all(hosts.map((i) => txCounters(lab, i)));
  const dt = (Date.now() - t1) / 1000;
  const bytes = hosts.map((i) => (after[i]!.bytes - before[i]!.bytes) / dt);
  const packets = hosts.map((i) => (after[i]!.packets - before[i]!.packets) / dt);
  const rss = await Promise.all(pids.map((p) => rssMiB(p)));
  return {
    seconds: round(dt, 1)!,
    bytesPerSecPerNode: spread(bytes, 0),
    packetsPerSecPerNode: spread(packets, 1),
    perHostBytesPerSec: bytes.map((b) => Math.round(b)),
    rssMiB: spread(rss, 1),
  };
}

async function killOnce(lab: Lab, sys: System, members: Member[], host: number): Promise<KillResult> {
  const victim = members[host]!;
  const key = victim.key()!;
  const others = members.filter((m) => m !== victim);
  const detectTimeout = sys.name === 'serf' ? 90_000 : 20_000;
  const tKill = Date.now();
  await lab.kill9(victim.proc);
  await waitFor(() => others.every((o) => o.deadAt(key, tKill) !== undefined), detectTimeout, 5);
  const dead = others.map((o) => o.deadAt(key, tKill)).map((t) => (t === undefined ? null : (t - tKill) / 1000));
  const got = present(dead);
  let handlerAllS: number | null | undefined;
  if (sys.name === 'serf') {
    // The handler runs after the agent's 1 s coalescing window.
    await waitFor(() => others.every((o) => o.handlerDeadAt!(key, tKill) !== undefined), 5_000, 50);
    const h = others.map((o) => o.handlerDeadAt!(key, tKill));
    handlerAllS = present(h).length === others.length ? round((max(present(h))! - tKill) / 1000) : null;
  }
  const tRestart = Date.now();
  const back = sys.start(host, 'kill', victim);
  members[host] = back;
  const rejoined = await waitFor(() => back.fullAt(N) !== undefined && others.every((o) => o.backAt(key, tRestart) !== undefined), REJOIN_TIMEOUT_MS, 10);
  const backTimes = present(others.map((o) => o.backAt(key, tRestart)));
  const result: KillResult = {
    host,
    victim: key,
    allS: got.length === others.length ? round(max(got)) : null,
    firstS: round(min(got)),
    medianS: round(median(got)),
    missing: others.length - got.length,
    ...(handlerAllS !== undefined ? { handlerAllS } : {}),
    rejoinS: rejoined ? round((max(backTimes)! - tRestart) / 1000) : null,
  };
  say(`  ${sys.name} kill -9 ${key} (host ${host}): all say dead after ${fmtS(result.allS)} (first ${fmtS(result.firstS)})` +
    `${handlerAllS !== undefined ? `, handlers ${fmtS(handlerAllS)}` : ''}; restarted, back everywhere after ${fmtS(result.rejoinS)}`);
  return result;
}

async function benchSystem(lab: Lab, sys: System): Promise<SystemResult> {
  const startup: StartupRun[] = [];
  let members: Member[] = [];
  for (let r = 1; r <= STARTUP_RUNS; r++) {
    const started = await startAll(sys, `s${r}`);
    members = started.members;
    // serf's handlers run after the agent's coalescing window: give them time to catch up.
    if (sys.name === 'serf') await waitFor(() => members.every((m) => m.handlerFullAt!(N) !== undefined), 6_000, 50);
    const run = startupFigures(sys, members, started.firstSpawn);
    startup.push(run);
    say(`${sys.name} startup ${r}/${STARTUP_RUNS}: ${run.ok ? '' : `NOT COMPLETE (${run.nodesFull}/${N} nodes full) `}` +
      `full membership ${fmtS(run.afterLastStartS)} after the last start, ${fmtS(run.fromFirstSpawnS)} from the first spawn ` +
      `(starts spread over ${fmtS(run.startSpreadS)})` +
      (run.handlerAfterLastStartS !== undefined ? `; event handlers: ${fmtS(run.handlerAfterLastStartS)} after the last start` : ''));
    if (r < STARTUP_RUNS) {
      await stopAll(lab, members);
      await sleep(1_000);
    }
  }
  await sleep(5_000);
  say(`${sys.name}: idle traffic and RSS over ${IDLE_SECONDS} s`);
  const idleResult = await idle(lab, members.map((m) => m.proc.pid!), IDLE_SECONDS);
  say(`  ${fmtInt(idleResult.bytesPerSecPerNode.median)} B/s per node (max ${fmtInt(idleResult.bytesPerSecPerNode.max)}), RSS median ${idleResult.rssMiB.median} MiB (max ${idleResult.rssMiB.max})`);
  const kills: KillResult[] = [];
  for (let k = 0; k < KILLS; k++) {
    await sleep(sys.name === 'serf' ? 3_000 : 2_000);
    kills.push(await killOnce(lab, sys, members, KILL_HOSTS[k % KILL_HOSTS.length]!));
  }
  await stopAll(lab, members);
  const startupSummary = {
    afterLastStartS: spread(startup.map((r) => r.afterLastStartS)),
    fromFirstSpawnS: spread(startup.map((r) => r.fromFirstSpawnS)),
    startSpreadS: spread(startup.map((r) => r.startSpreadS)),
    ...(sys.name === 'serf'
      ? {
          handlerAfterLastStartS: spread(startup.map((r) => r.handlerAfterLastStartS)),
          handlerFromFirstSpawnS: spread(startup.map((r) => r.handlerFromFirstSpawnS)),
        }
      : {}),
  };
  return {
    startup,
    startupSummary,
    idle: idleResult,
    kills,
    detectionAllS: spread(kills.map((k) => k.allS)),
    detectionMedianNodeS: spread(kills.map((k) => k.medianS)),
    ...(sys.name === 'serf' ? { handlerDetectionAllS: spread(kills.map((k) => k.handlerAllS)) } : {}),
    rejoinS: spread(kills.map((k) => k.rejoinS)),
  };
}

function signal(proc: ChildProcess, sig: NodeJS.Signals): void {
  if (proc.pid !== undefined && running(proc)) {
    try {
      process.kill(proc.pid, sig);
    } catch {
      // exited meanwhile
    }
  }
}

async function falsePositives(lab: Lab, gvSys: System, serfSys: System): Promise<FpResult> {
  say('false positives: starting both clusters side by side');
  const gv = await startAll(gvSys, 'fp');
  const sf = await startAll(serfSys, 'fp');
  for (const [name, set] of [['grapevine', gv.members], ['serf', sf.members]] as const) {
    const full = set.filter((m) => m.fullAt(N) !== undefined).length;
    if (full !== N) say(`  WARNING: only ${full}/${N} ${name} nodes reached full membership before the window`);
  }
  await sleep(3_000);
  for (const h of lab.hosts) await lab.addLoss(h.index, LOSS);
  const gvStalled = gv.members[GV_STALLED_HOST]!;
  const serfStalled = sf.members[SERF_STALLED_HOST]!;
  const tStart = Date.now();
  const tEnd = tStart + FP_SECONDS * 1000;
  say(`false positives: ${FP_SECONDS} s with ${LOSS * 100} % loss on every host; grapevine ${gvStalled.key()} (host ${GV_STALLED_HOST}) and serf ${serfStalled.key()} (host ${SERF_STALLED_HOST}) stopped ${STALL_MS} ms every ${STALL_EVERY_MS / 1000} s`);
  const stallMs: number[] = [];
  const stallStarts: number[] = [];
  let nextReport = tStart + 60_000;
  try {
    for (let next = tStart + STALL_EVERY_MS / 2; next + STALL_MS < tEnd; next += STALL_EVERY_MS) {
      await sleep(Math.max(0, next - Date.now()));
      const t = Date.now();
      stallStarts.push(t);
      signal(gvStalled.proc, 'SIGSTOP');
      signal(serfStalled.proc, 'SIGSTOP');
      await sleep(STALL_MS);
      signal(gvStalled.proc, 'SIGCONT');
      signal(serfStalled.proc, 'SIGCONT');
      stallMs.push(Date.now() - t);
      if (Date.now() >= nextReport) {
        nextReport += 60_000;
        say(`  ${Math.round((Date.now() - tStart) / 1000)} s: grapevine 'member dead' so far ${countDead(gv.members, tStart, Date.now())}, serf EventMemberFailed so far ${countSerfFailed(sf.members, tStart, Date.now())}`);
      }
    }
  } finally {
    signal(gvStalled.proc, 'SIGCONT');
    signal(serfStalled.proc, 'SIGCONT');
  }
  await sleep(Math.max(0, tEnd - Date.now()));
  // Let detections already under way finish (dead after 1.6 s; serf needs longer), still under loss.
  await sleep(5_000);
  const tCount = Date.now();
  for (const h of lab.hosts) await lab.clearLoss(h.index);
  await sleep(3_000); // serf's handlers for events up to tCount (coalesced for 1-3 s)
  const gvRss = await Promise.all(gv.members.map((m) => rssMiB(m.proc.pid!)));
  const sfRss = await Promise.all(sf.members.map((m) => rssMiB(m.proc.pid!)));

  const gvNodes = gv.members.map((m) => (m as GvMember).node);
  const gvDead = gvNodes.flatMap((n) => n.between('member dead', tStart, tCount));
  const gvByMember = tally(gvDead.map((r) => r.member ?? '?'));
  const gvSuspects = gvNodes.flatMap((n) => n.between('member suspect', tStart, tCount));
  const stalledGvId = gvStalled.key() ?? '?';
  const grapevine: FpSide = {
    stalledHost: GV_STALLED_HOST,
    stalledMember: stalledGvId,
    falseDead: gvDead.length,
    falseDeadByMember: gvByMember,
    falseDeadAboutStalled: gvByMember[stalledGvId] ?? 0,
    suspicions: gvSuspects.length,
    suspicionsByMember: tally(gvSuspects.map((r) => r.member ?? '?')),
    stallsNoticedByStalledNode: stallLogs([(gvStalled as GvMember).node], tStart, tCount),
    stallsLoggedByOthers: stallLogs(gvNodes.filter((n) => n !== (gvStalled as GvMember).node), tStart, tCount),
    rssAfterMiB: spread(gvRss, 1),
    allRunning: gv.members.every((m) => running(m.proc)),
  };
  const agents = sf.members.map((m) => (m as SerfMember).agent);
  const sfFailed = agents.flatMap((a) => a.between('failed', tStart, tCount));
  const sfByMember = tally(sfFailed.map((e) => e.member));
  const sfSuspects = agents.flatMap((a) => a.between('suspect', tStart, tCount));
  const serf: FpSide = {
    stalledHost: SERF_STALLED_HOST,
    stalledMember: serfStalled.key() ?? '?',
    falseDead: sfFailed.length,
    falseDeadByMember: sfByMember,
    falseDeadAboutStalled: sfByMember[serfStalled.key() ?? '?'] ?? 0,
    suspicions: sfSuspects.length,
    suspicionsByMember: tally(sfSuspects.map((e) => e.member)),
    handlerFailed: agents.reduce((a, n) => a + n.handlerEvents().filter((e) => e.event === 'member-failed' && e.at >= tStart && e.at <= tCount + 3_000).length, 0),
    rssAfterMiB: spread(sfRss, 1),
    allRunning: sf.members.every((m) => running(m.proc)),
  };
  await stopAll(lab, [...gv.members, ...sf.members]);
  dumpLogs(gvNodes, stallStarts, tStart, tCount);
  const result: FpResult = { seconds: FP_SECONDS, loss: LOSS, stalls: stallMs.length, stallMs: spread(stallMs, 0), grapevine, serf };
  say(`false positives: grapevine ${grapevine.falseDead} 'member dead' (${grapevine.suspicions} suspicions ${JSON.stringify(grapevine.suspicionsByMember)}, ` +
    `${grapevine.stallsNoticedByStalledNode} stalls noticed by the stalled node, ${grapevine.stallsLoggedByOthers} stall lines from the others); ` +
    `serf ${serf.falseDead} EventMemberFailed (${serf.suspicions} suspicions, ${serf.handlerFailed} handler member-failed events)`);
  return result;
}

/** BENCH_LOG_DIR set: every grapevine node's log lines of the false-positive window, for diagnosis. */
function dumpLogs(nodes: readonly GvNode[], stallStarts: readonly number[], from: number, to: number): void {
  const dir = process.env.BENCH_LOG_DIR;
  if (dir === undefined || dir === '') return;
  mkdirSync(dir, { recursive: true });
  const lines = nodes.flatMap((n) => n.records.filter((r) => r.time >= from - 5_000 && r.time <= to).map((r) => `${n.hostIndex} ${n.id ?? '?'} ${r.raw ?? r.msg}`));
  writeFileSync(join(dir, 'fp-nodes.log'), `${lines.join('\n')}\n`);
  writeFileSync(join(dir, 'fp-meta.json'), `${JSON.stringify({ from, to, stallStarts, ids: nodes.map((n) => [n.hostIndex, n.id]) })}\n`);
  say(`wrote the false-positive window's node logs to ${dir}`);
}

function countDead(members: readonly Member[], from: number, to: number): number {
  return members.reduce((a, m) => a + (m as GvMember).node.between('member dead', from, to).length, 0);
}

function countSerfFailed(members: readonly Member[], from: number, to: number): number {
  return members.reduce((a, m) => a + (m as SerfMember).agent.between('failed', from, to).length, 0);
}

function stallLogs(nodes: readonly GvNode[], from: number, to: number): number {
  return nodes.reduce((a, n) => a + n.records.filter((r) => r.msg.startsWith('event loop stalled') && r.time >= from && r.time <= to).length, 0);
}

function tally(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

// ---------------------------------------------------------------------------
// Report

function fmtS(x: number | null | undefined): string {
  if (x === null || x === undefined) return 'n/a';
  return `${x < 10 ? x.toFixed(3) : x.toFixed(2)} s`;
}

function fmtInt(x: number | null | undefined): string {
  return x === null || x === undefined ? 'n/a' : String(Math.round(x));
}

function rows(gv: SystemResult, sf: SystemResult, fp: FpResult): Row[] {
  const mib = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(1)} MiB`);
  const bps = (x: number | null): string => (x === null ? 'n/a' : `${Math.round(x)} B/s`);
  const pps = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(1)} pkt/s`);
  const cnt = (x: number | null): string => (x === null ? 'n/a' : String(x));
  const r = STARTUP_RUNS;
  return [
    row(`full membership after the last node's start, median of ${r}`, gv.startupSummary.afterLastStartS.median, sf.startupSummary.afterLastStartS.median, fmtS, { limit: GOALS.fullAfterLastStartS, text: '<= 0.5 s' }),
    row(`full membership after the last node's start, worst of ${r}`, gv.startupSummary.afterLastStartS.max, sf.startupSummary.afterLastStartS.max, fmtS),
    row(`full membership from the first spawn, median of ${r}`, gv.startupSummary.fromFirstSpawnS.median, sf.startupSummary.fromFirstSpawnS.median, fmtS),
    row(`  (spread of the 16 starts, median)`, gv.startupSummary.startSpreadS.median, sf.startupSummary.startSpreadS.median, fmtS),
    row(`  serf event handlers: full membership after the last start, median`, null, sf.startupSummary.handlerAfterLastStartS?.median ?? null, fmtS),
    row(`failure detection (kill -9 → all 15 say dead), median of ${gv.kills.length}`, gv.detectionAllS.median, sf.detectionAllS.median, fmtS, { limit: GOALS.detectionS, text: '<= 2 s' }),
    row(`failure detection, max of ${gv.kills.length}`, gv.detectionAllS.max, sf.detectionAllS.max, fmtS, { limit: GOALS.detectionS, text: '<= 2 s' }),
    row(`  serf event handlers: failure detection, median`, null, sf.handlerDetectionAllS?.median ?? null, fmtS),
    row(`  serf event handlers: failure detection, max`, null, sf.handlerDetectionAllS?.max ?? null, fmtS),
    row(`restarted node alive again everywhere, median`, gv.rejoinS.median, sf.rejoinS.median, fmtS),
    row(`false 'dead' events in ${fp.seconds} s (5 % loss, 300 ms stall / 10 s)`, fp.grapevine.falseDead, fp.serf.falseDead, cnt, { limit: GOALS.falsePositives, text: '0' }),
    row(`  suspicions in the same window`, fp.grapevine.suspicions, fp.serf.suspicions, cnt),
    row(`idle bytes/s sent per node (eth0), median`, gv.idle.bytesPerSecPerNode.median, sf.idle.bytesPerSecPerNode.median, bps),
    row(`idle bytes/s sent per node, max`, gv.idle.bytesPerSecPerNode.max, sf.idle.bytesPerSecPerNode.max, bps),
    row(`idle packets/s sent per node, median`, gv.idle.packetsPerSecPerNode.median, sf.idle.packetsPerSecPerNode.median, pps),
    row(`RSS per node, median`, gv.idle.rssMiB.median, sf.idle.rssMiB.median, mib),
    row(`RSS per node, max`, gv.idle.rssMiB.max, sf.idle.rssMiB.max, mib, { limit: RSS_GOAL_MIB, text: '<= 80 MB (76.3 MiB)' }),
    row(`RSS per node after the false-positive run, max`, fp.grapevine.rssAfterMiB.max, fp.serf.rssAfterMiB.max, mib, { limit: RSS_GOAL_MIB, text: '<= 80 MB (76.3 MiB)' }),
  ];
}

function markdown(date: string, runMinutes: number, machine: MachineInfo, loadAtStart: string, rs: readonly Row[], gv: SystemResult, sf: SystemResult, fp: FpResult, baseline: IdleResult, jsonPath: string): string {
  const misses = rs.filter((r) => r.goal.includes('MISSED')).map((r) => `- MISSED: ${r.metric.trim()}: ${r.ours} (goal ${r.goal.replace(/ — .*/, '')})`);
  const startups = (s: SystemResult): string => s.startup.map((r) => `${fmtS(r.afterLastStartS)}${r.ok ? '' : ` (incomplete: ${r.nodesFull}/${N})`}`).join(', ');
  const kills = (s: SystemResult): string => s.kills.map((k) => `${fmtS(k.allS)}${k.missing ? ` (${k.missing} never said dead)` : ''}`).join(', ');
  const fpBy = (side: FpSide): string => (side.falseDead === 0 ? 'none' : Object.entries(side.falseDeadByMember).map(([m, c]) => `${m}×${c}`).join(', '));
  return `## Membership (issue 2)

\`npm run bench:membership\` — ${date}, ${runMinutes.toFixed(1)} min. Machine: ${machine.nproc} CPUs (${machine.cpuModel}),
${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}, ${machine.serf}; load average at the start ${loadAtStart}.
16 hosts of the lab (network namespaces on one bridge), one \`grapevine node\` (defaults: beacons every 200 ms,
suspect 1 s, dead 1.6 s) and one \`serf agent\` (LAN profile, \`-discover\`) per host. Raw figures: \`${jsonPath}\`.

${mdTable(rs)}

${misses.length > 0 ? `Goals missed:\n${misses.join('\n')}` : 'Every goal of issue 2 was met in this run.'}

Per run: full membership after the last start — grapevine ${startups(gv)}; serf ${startups(sf)}.
Detection per kill (all 15 others say dead) — grapevine ${kills(gv)}; serf ${kills(sf)}.
False 'dead' events by member — grapevine ${fpBy(fp.grapevine)}; serf ${fpBy(fp.serf)}. Suspicions (grapevine: 1 s of
silence; serf: a failed probe round) — grapevine ${fp.grapevine.suspicions}, of which ${fp.grapevine.suspicionsByMember[fp.grapevine.stalledMember] ?? 0} about the
stalled node; serf ${fp.serf.suspicions}, of which ${fp.serf.suspicionsByMember[fp.serf.stalledMember] ?? 0} about the stalled agent. The stalled grapevine node
logged ${fp.grapevine.stallsNoticedByStalledNode} of its ${fp.stalls} stops (${fp.stallMs.median} ms each; it only reports gaps > 400 ms, twice the beacon
interval); stall lines from the other grapevine nodes (a sign of CPU starvation): ${fp.grapevine.stallsLoggedByOthers}.
grapevine turns a member suspect after 1 s without a beacon (about 5 intervals): with 5 % loss at both ends a beacon
misses a given receiver 9.75 % of the time, so 4–5 misses in a row happen by chance, roughly 3–4 times a minute over the
240 pairs. A suspect stays in the ring and is alive again with its next beacon.
Idle eth0 traffic of the 16 hosts with nothing running: ${fmtInt(baseline.bytesPerSecPerNode.max)} B/s max.

How it was measured:
- **Full membership.** All 16 processes spawned back to back (fresh data dirs / node names), ${STARTUP_RUNS} times per system.
  "After the last node's start" = the moment the last node sees all 16 alive minus the latest start line of any node.
  grapevine: the nodes' own log timestamps (epoch ms): 'node starting' (logged once its TCP port is bound, before its
  first beacon) and the first 'member …' line whose \`alive\` count is 16. serf: its log lines \`agent: Serf agent
  starting\` and \`serf: EventMemberJoin\` (written when serf's member table changes), stamped on arrival by the bench
  (serf's own log timestamps have 1 s resolution). serf's event handlers (\`date +%s%N\` per event) see the same
  joins about 1 s later, because the agent coalesces member events (1 s quiet period); shown separately.
  "From the first spawn" also counts process start-up: 16 Node.js processes loading their modules at once on
  ${machine.nproc} CPUs take a while before the first logs 'node starting' (serf is one Go binary and starts in milliseconds).
- **Failure detection.** kill -9 of one node (hosts ${KILL_HOSTS.slice(0, KILLS).join(', ')}), time until the last of the 15
  others logs 'member dead' (grapevine, log time) / \`EventMemberFailed\` (serf, arrival time); serf's
  \`member-failed\` handler timestamps shown separately. The victim is restarted with the same data dir / node name
  and the next kill waits until every node has it alive again.
- **False positives.** Both clusters side by side for ${fp.seconds} s; iptables drops ${fp.loss * 100} % of the packets in and
  out of every host's eth0; grapevine's node on host ${fp.grapevine.stalledHost} and serf's agent on host ${fp.serf.stalledHost}
  are stopped with SIGSTOP and resumed with SIGCONT after 300 ms every 10 s (the whole process stalls). Every
  'member dead' (grapevine) / \`EventMemberFailed\` (serf) in the window, plus 5 s after it, counts: no node was killed.
- **Idle traffic.** eth0 tx_bytes (every frame, Ethernet header included, any protocol) of each host over
  ${gv.idle.seconds} s, one system running, after its cluster settled; serf's figure includes its mDNS discovery.
- **RSS.** VmRSS from /proc/PID/status of each node process after the idle period, and again after the false-positive run.
- serf discovers its peers by its own mDNS (\`-discover\`): hashicorp/mdns needs IPv6 on the interface, so the bench
  enables IPv6 on each host's eth0 (link-local only, router solicitations and DAD off); grapevine uses IPv4 only.
`;
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const can = Lab.canRun();
  if (!can.ok) throw new Error(`the membership bench needs the lab: ${can.reason}`);
  if (!existsSync(GRAPEVINE_JS)) throw new Error(`${GRAPEVINE_JS} is missing: run \`npm run build\` first`);
  const serfInfo = ensureSerf(say);
  // Debian's serf binary is built without its version stamp (`serf version` says 0.8.2-dev): name the package too.
  const machine = machineInfo(`serf ${serfInfo.debVersion} (Debian package; \`serf version\`: ${serfInfo.version})`);
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(' ');
  say(`machine: ${machine.nproc} CPUs, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}, ${machine.serf}`);
  say(`building a ${N}-host lab`);
  const lab = await Lab.create({ hosts: N, prefix: 'gvbench' });
  let gv: SystemResult;
  let sf: SystemResult;
  let fp: FpResult;
  let baseline: IdleResult;
  const otherLabs: number[] = [];
  const countOtherLabs = async (): Promise<void> => {
    const others = (await listNamespaces()).filter((ns) => ns.endsWith('-br') && !ns.startsWith(lab.run)).length;
    otherLabs.push(others);
    if (others > 0) say(`note: ${others} other lab(s) exist on this machine (concurrent tests share the CPUs)`);
  };
  try {
    await countOtherLabs();
    for (const h of lab.hosts) await enableMdns(lab, h.index);
    const handler = writeHandlerScript(join(lab.tmpDir, 'serf-handler.sh'));
    await sleep(2_000);
    baseline = await idle(lab, [], BASELINE_SECONDS);
    say(`baseline: ${fmtInt(baseline.bytesPerSecPerNode.max)} B/s max per host with nothing running`);
    const gvSys = grapevineSystem(lab);
    const serfSys = serfSystem(lab, handler);
    gv = await benchSystem(lab, gvSys);
    await countOtherLabs();
    sf = await benchSystem(lab, serfSys);
    await countOtherLabs();
    fp = await falsePositives(lab, gvSys, serfSys);
    await countOtherLabs();
  } finally {
    say('destroying the lab');
    await lab.destroy();
  }

  const runMinutes = (Date.now() - T0) / 60_000;
  const date = new Date().toISOString();
  const rs = rows(gv, sf, fp);
  process.stdout.write(`\nMembership benchmark (issue 2), ${date}\n\n${textTable(rs)}\n\n`);

  const stamp = date.replace(/:/g, '').replace(/\.\d+Z$/, 'Z');
  const jsonRel = `bench/results/membership-${stamp}.json`;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const raw = {
    bench: 'membership',
    issue: 2,
    date,
    runMinutes: round(runMinutes, 2),
    machine,
    serfVersionOutput: serfInfo.version,
    loadAverageAtStart: loadAtStart,
    otherLabsSeen: otherLabs,
    settings: { nodes: N, startupRuns: STARTUP_RUNS, kills: KILLS, idleSeconds: IDLE_SECONDS, fpSeconds: FP_SECONDS, loss: LOSS, stallMs: STALL_MS, stallEveryMs: STALL_EVERY_MS },
    goals: GOALS,
    baseline,
    grapevine: gv,
    serf: sf,
    falsePositives: fp,
    table: rs,
  };
  writeFileSync(join(REPO, jsonRel), `${JSON.stringify(raw, null, 2)}\n`);
  writeSection(RESULTS_MD, 'membership', markdown(date, runMinutes, machine, `${loadAtStart}; other labs running at the start / after grapevine / after serf / after the false-positive run: ${otherLabs.join(' / ')}`, rs, gv, sf, fp, baseline, jsonRel));
  say(`wrote ${jsonRel} and bench/RESULTS.md`);
}

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
