/**
 * npm run bench:pmcast — issue 4's persistent multicast benchmark.
 *
 * grapevine's `coordinator` (default durability, and `--fsync`) against
 * mosquitto (MQTT 5, persistence on, persistent sessions, QoS 1, message
 * expiry = td) and nats-server JetStream (file storage, MaxAge = td, durable
 * consumers), both Debian packages installed when missing (bench/lib/debian.ts),
 * all on 127.0.0.1 with their own temp dirs and free ports, in the same run:
 *
 *   1. msend → ack latency (p50/p99) and throughput: 1 sender one at a time,
 *      10 concurrent senders one at a time each, 1 connection pipelined
 *      (BENCH_PM_WINDOW outstanding, default 100), 10 pipelined senders;
 *      BENCH_PM_SECONDS (default 3) measured after 0.5 s of warm-up, a fresh
 *      server per run, BENCH_PM_RUNS runs (default 3), medians. A registered
 *      offline member (MQTT: a persistent session, NATS: a durable consumer)
 *      makes every system keep every message.
 *   2. fan-out: deliveries/s to 10 online receivers (grapevine: the real
 *      `participant` binary writing its log; references: pm-receiver.ts
 *      writing the same log) of BENCH_PM_FANOUT messages (default 20,000).
 *   3. replay: a receiver offline while BENCH_PM_BACKLOG (default 100,000)
 *      messages are sent, then back: messages/s until its log has all.
 *   4. td cut: a receiver offline longer than td (2 s) while messages are sent
 *      every ~1 ms; on reconnect at R the oldest message it gets is compared with
 *      the exact boundary R − td.
 *   5. grapevine only: BENCH_PM_CYCLES (default 100) kill -9 / restart cycles of
 *      the coordinator under 10 pipelined senders; every acknowledged message
 *      must reach the online participant's log, once, in order.
 *
 * Prints a table with ratios, rewrites the "pmcast" section of
 * bench/RESULTS.md and writes the raw figures to bench/results/pmcast-<date>.json.
 * Every child process is started by this script and ended by its PID.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { debVersion, ensureDebianPackages } from './lib/debian.js';
import { sleep, waitFor } from './lib/lines.js';
import { machineInfo } from './lib/machine.js';
import { CoordinatorProcess, PARTICIPANT_JS, ParticipantProcess, PmClient } from './lib/pm-grapevine.js';
import { MosquittoSubReceiver, MqttSender, NatsSender, RefReceiver, mqttConnect, MQTT_TOPIC, natsCreateDurable, natsCreateStream, startMosquitto, startNats } from './lib/pm-refs.js';
import type { ServerProcess } from './lib/pm-refs.js';
import { freePort, killStarted } from './lib/procs.js';
import { writeSection } from './lib/results-md.js';
import { max, median, present, ratio, round } from './lib/stats.js';
import { SimRandom } from '../src/sim/random.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const RESULTS_MD = join(REPO, 'bench', 'RESULTS.md');
const RESULTS_DIR = join(REPO, 'bench', 'results');

function envInt(name: string, dflt: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < minimum || v > maximum) throw new Error(`${name} must be an integer from ${minimum} to ${maximum}, got '${raw}'`);
  return v;
}

const RUNS = envInt('BENCH_PM_RUNS', 3, 1);
const SECONDS = envInt('BENCH_PM_SECONDS', 3, 1);
const WINDOW = envInt('BENCH_PM_WINDOW', 100, 2, 1_000);
const FANOUT_MSGS = envInt('BENCH_PM_FANOUT', 20_000, 100);
const BACKLOG = envInt('BENCH_PM_BACKLOG', 100_000, 1_000);
const CYCLES = envInt('BENCH_PM_CYCLES', 100, 1);
const SEED = envInt('BENCH_PM_SEED', Date.now() % 1_000_000, 0);
const KEEP = process.env.BENCH_PM_KEEP === '1';
const SECTIONS = ['msend', 'fanout', 'replay', 'cut', 'kill'] as const;
/** BENCH_PM_ONLY=kill,cut (a comma list of SECTIONS): run only those, for trials; nothing is written then. */
const ONLY = new Set((process.env.BENCH_PM_ONLY ?? SECTIONS.join(',')).split(',').map((x) => x.trim()));
for (const s of ONLY) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`BENCH_PM_ONLY: unknown section '${s}' (${SECTIONS.join(', ')})`);
/** BENCH_PM_WRITE=0: print only (no RESULTS.md section, no JSON), for trial runs. */
const WRITE = process.env.BENCH_PM_WRITE !== '0' && SECTIONS.every((s) => ONLY.has(s));

const WARMUP_MS = 500;
const RECEIVERS = 10;
const SENDERS = 10;
/** td of the throughput, fan-out, replay and kill runs: longer than any of them. */
const TD_LONG_S = 600;
/** td of the cut runs: whole seconds (MQTT's message expiry is in seconds). */
const TD_CUT_S = 2;
/** Offline this much longer than td before reconnecting, in the cut runs. */
const CUT_OVERSTAY_MS = 1_500;
const KILL_WINDOW = 20;
const GOALS = { oneAtATime: 7_500, pipelinedOrConcurrent: 30_000, durable10: 10_000, replay: 100_000, cutErrorMs: 10, lost: 0 };

const T0 = Date.now();
function say(msg: string): void {
  process.stderr.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

/** Deterministic random numbers for the kill moments (the simulator's PRNG), so a run can be replayed with BENCH_PM_SEED. */
function rng(seed: number): () => number {
  const r = new SimRandom(seed);
  return () => r.float();
}

/** Nearest-rank percentile. */
function pct(xs: readonly number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = Float64Array.from(xs).sort();
  return s[Math.max(1, Math.ceil((p / 100) * s.length)) - 1]!;
}

// ---------------------------------------------------------------------------
// The systems behind one interface

/**
 * 'mosquitto': receivers are mosquitto's C client (mosquitto_sub), the fastest
 * MQTT receiver at hand — except in the td cut runs, which need the CONNACK
 * moment and use the Node receiver; 'mosquitto+mqtt.js': the same broker with
 * Node receivers (pm-receiver.ts, mqtt.js), fan-out and replay only, for comparison.
 */
type SystemName = 'grapevine' | 'grapevine --fsync' | 'mosquitto' | 'mosquitto+mqtt.js' | 'nats';

interface Sender {
  /** Resolves once acknowledged; grapevine returns the coordinator's acceptance time (ms). */
  send(text: string): Promise<number | undefined>;
  close(): Promise<void>;
}

interface Receiver {
  readonly logPath: string;
  /** Back online; resolves with the moment the system took the reconnect (epoch ms). */
  connect(): Promise<number>;
  disconnect(): Promise<void>;
  quit(): Promise<void>;
}

interface Instance {
  readonly system: SystemName;
  readonly port: number;
  sender(id: string): Promise<Sender>;
  /** A member that is registered and offline: the system must keep every message for it. */
  offlineMember(id: string): Promise<void>;
  /** A receiver process, registered/subscribed and online. */
  receiver(id: string): Promise<Receiver>;
  stop(): Promise<void>;
}

let WORK = '';
let instanceCount = 0;

async function startInstance(system: SystemName, tdSeconds: number, mqttReceivers: 'c' | 'node' = 'c'): Promise<Instance> {
  const dir = join(WORK, `${String(++instanceCount).padStart(3, '0')}-${system.replace(/\W+/g, '')}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  if (system === 'grapevine' || system === 'grapevine --fsync') {
    const coordinator = await CoordinatorProcess.start({ dir, port, tdSeconds, fsync: system === 'grapevine --fsync' });
    return grapevineInstance(system, dir, port, coordinator);
  }
  if (system === 'mosquitto' || system === 'mosquitto+mqtt.js') {
    const server = await startMosquitto(dir, port);
    return mosquittoInstance(system, dir, port, tdSeconds, server, system === 'mosquitto+mqtt.js' ? 'node' : mqttReceivers);
  }
  const server = await startNats(dir, port);
  await natsCreateStream(port, tdSeconds * 1_000);
  return natsInstance(dir, port, server);
}

function grapevineInstance(system: SystemName, dir: string, port: number, coordinator: CoordinatorProcess): Instance {
  const receivers: ParticipantProcess[] = [];
  const registerOffline = async (id: string): Promise<PmClient> => {
    const client = await PmClient.connect(port, id);
    // Its receiver port is one nothing listens on: it goes offline at once anyway.
    await client.register(await freePort());
    await client.disconnect();
    return client;
  };
  return {
    system,
    port,
    async sender(id) {
      const client = await registerOffline(id);
      return {
        send: (text) => client.send(text).then((ok) => ok.acceptedMs),
        close: async () => client.close(),
      };
    },
    async offlineMember(id) {
      (await registerOffline(id)).close();
    },
    async receiver(id) {
      const p = ParticipantProcess.create(join(dir, 'participants'), id, port);
      receivers.push(p);
      const rport = await freePort();
      await p.command(`register ${rport}`);
      return {
        logPath: p.logPath,
        connect: async () => ParticipantProcess.at(await p.command(`reconnect ${rport}`)),
        disconnect: async () => void (await p.command('disconnect')),
        quit: async () => {
          // 'quit', then end of input: the participant prints 'ok quit' but only exits at the end of its input.
          if (p.running) p.write('quit');
          p.endInput();
          await waitFor(() => !p.running, 10_000);
          await p.kill();
        },
      };
    },
    async stop() {
      for (const p of receivers) await p.kill();
      await coordinator.stop();
    },
  };
}

function refReceiver(system: 'mqtt' | 'nats', port: number, dir: string, id: string, all: RefReceiver[]): Promise<Receiver> {
  mkdirSync(join(dir, 'receivers'), { recursive: true });
  const r = new RefReceiver(system, port, id, join(dir, 'receivers', `${id}.log`));
  all.push(r);
  return r.command('connect').then(() => ({
    logPath: r.logPath,
    connect: async () => RefReceiver.at(await r.command('connect')),
    disconnect: async () => void (await r.command('disconnect')),
    quit: async () => {
      if (r.running) r.write('quit');
      await waitFor(() => !r.running, 10_000);
      await r.kill();
    },
  }));
}

function mosquittoInstance(system: SystemName, dir: string, port: number, tdSeconds: number, server: ServerProcess, receiverKind: 'c' | 'node'): Instance {
  const receivers: RefReceiver[] = [];
  const subs: MosquittoSubReceiver[] = [];
  return {
    system,
    port,
    async sender(id) {
      const s = await MqttSender.connect(port, id, tdSeconds);
      return { send: async (text) => void (await s.send(text)), close: () => s.close() };
    },
    async offlineMember(id) {
      const c = await mqttConnect(port, id, true);
      await c.subscribeAsync(MQTT_TOPIC, { qos: 1 });
      await c.endAsync();
    },
    async receiver(id) {
      if (receiverKind === 'node') return refReceiver('mqtt', port, dir, id, receivers);
      mkdirSync(join(dir, 'receivers'), { recursive: true });
      const r = new MosquittoSubReceiver(port, id, join(dir, 'receivers', `${id}.log`));
      subs.push(r);
      await r.register();
      return { logPath: r.logPath, connect: () => r.connect(), disconnect: () => r.disconnect(), quit: () => r.disconnect() };
    },
    async stop() {
      for (const r of receivers) await r.kill();
      for (const r of subs) await r.disconnect();
      await server.stop();
    },
  };
}

function natsInstance(dir: string, port: number, server: ServerProcess): Instance {
  const receivers: RefReceiver[] = [];
  return {
    system: 'nats',
    port,
    async sender(id) {
      const s = await NatsSender.connect(port, id);
      return { send: async (text) => void (await s.send(text)), close: () => s.close() };
    },
    offlineMember: (id) => natsCreateDurable(port, id),
    receiver: (id) => refReceiver('nats', port, dir, id, receivers),
    async stop() {
      for (const r of receivers) await r.kill();
      await server.stop();
    },
  };
}

// ---------------------------------------------------------------------------
// Load

/** Fixed-width texts (13 characters + newline in a log), so a log's size gives its line count. */
const LINE_BYTES = 14;
function text(tag: string, i: number): string {
  return `${tag.padEnd(4, '_').slice(0, 4)}${String(i).padStart(9, '0')}`;
}

function logLines(path: string): number {
  return existsSync(path) ? Math.floor(statSync(path).size / LINE_BYTES) : 0;
}

function readLog(path: string): string[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.pop();
  return lines;
}

interface DriveResult {
  /** Acks that arrived inside the measured window. */
  acked: number;
  /** Ack latency (ms) of requests sent inside the measured window. */
  latencies: number[];
  errors: number;
}

/**
 * Keeps `window` requests outstanding on `sender` (1 = one at a time) until
 * `endMs` (performance.now()) or until `limit` were sent; counts the acks and
 * latencies of [startMs, endMs).
 */
function drive(sender: Sender, tag: string, window: number, startMs: number, endMs: number, limit = Number.POSITIVE_INFINITY, onAck?: (i: number, sentAt: number, ackAt: number, acceptedMs: number | undefined) => void): Promise<DriveResult> {
  const out: DriveResult = { acked: 0, latencies: [], errors: 0 };
  return new Promise((resolve) => {
    let inflight = 0;
    let next = 0;
    let done = false;
    const finishIfIdle = (): void => {
      if (!done && inflight === 0 && (performance.now() >= endMs || next >= limit)) {
        done = true;
        resolve(out);
      }
    };
    const pump = (): void => {
      while (inflight < window && next < limit && performance.now() < endMs) {
        const i = next++;
        const sentAt = performance.now();
        inflight += 1;
        sender.send(text(tag, i)).then(
          (acceptedMs) => {
            const now = performance.now();
            inflight -= 1;
            if (now >= startMs && now < endMs) out.acked += 1;
            if (sentAt >= startMs && sentAt < endMs) out.latencies.push(now - sentAt);
            onAck?.(i, sentAt, now, acceptedMs);
            pump();
            finishIfIdle();
          },
          () => {
            inflight -= 1;
            out.errors += 1;
            pump();
            finishIfIdle();
          },
        );
      }
      finishIfIdle();
    };
    pump();
  });
}

// ---------------------------------------------------------------------------
// 1. msend throughput and latency

interface Mode {
  readonly key: 'one' | 'ten' | 'pipe' | 'tenpipe';
  readonly senders: number;
  readonly window: number;
  readonly label: string;
}
const MODES: readonly Mode[] = [
  { key: 'one', senders: 1, window: 1, label: '1 sender, one at a time' },
  { key: 'ten', senders: SENDERS, window: 1, label: `${SENDERS} concurrent senders, one at a time each` },
  { key: 'pipe', senders: 1, window: WINDOW, label: `1 connection pipelined (${WINDOW} outstanding)` },
  { key: 'tenpipe', senders: SENDERS, window: WINDOW, label: `${SENDERS} senders pipelined (${WINDOW} outstanding each)` },
];

interface ThroughputRun {
  system: SystemName;
  mode: Mode['key'];
  run: number;
  perSecond: number;
  p50Ms: number | null;
  p99Ms: number | null;
  samples: number;
  errors: number;
  loadavg1: number;
}

async function throughputRun(system: SystemName, mode: Mode, run: number): Promise<ThroughputRun> {
  const inst = await startInstance(system, TD_LONG_S);
  try {
    await inst.offlineMember('offline');
    const senders: Sender[] = [];
    for (let i = 0; i < mode.senders; i++) senders.push(await inst.sender(`s${i}`));
    const start = performance.now() + WARMUP_MS;
    const end = start + SECONDS * 1_000;
    const results = await Promise.all(senders.map((s, i) => drive(s, `t${i}`, mode.window, start, end)));
    for (const s of senders) await s.close();
    const latencies = results.flatMap((r) => r.latencies);
    const acked = results.reduce((a, r) => a + r.acked, 0);
    return {
      system,
      mode: mode.key,
      run,
      perSecond: acked / SECONDS,
      p50Ms: pct(latencies, 50),
      p99Ms: pct(latencies, 99),
      samples: latencies.length,
      errors: results.reduce((a, r) => a + r.errors, 0),
      loadavg1: loadavg()[0]!,
    };
  } finally {
    await inst.stop();
  }
}

// ---------------------------------------------------------------------------
// 2. fan-out

interface FanoutRun {
  system: SystemName;
  run: number;
  messages: number;
  receivers: number;
  /** First send → every receiver's log complete. */
  seconds: number;
  deliveriesPerSecond: number;
  /** Messages acknowledged per second by the system meanwhile. */
  acceptedPerSecond: number;
  /** Every log holds exactly the messages, in the order sent. */
  complete: boolean;
  loadavg1: number;
}

async function fanoutRun(system: SystemName, run: number): Promise<FanoutRun> {
  const inst = await startInstance(system, TD_LONG_S);
  try {
    const receivers = await Promise.all(Array.from({ length: RECEIVERS }, (_, i) => inst.receiver(`r${i}`)));
    const sender = await inst.sender('fan');
    // Every receiver connected (mosquitto_sub starts in the background).
    await sleep(500);
    const t0 = performance.now();
    await drive(sender, 'fan', WINDOW, t0, Number.POSITIVE_INFINITY, FANOUT_MSGS);
    const tAcked = performance.now();
    const ok = await waitFor(() => receivers.every((r) => logLines(r.logPath) >= FANOUT_MSGS), 180_000, 5);
    const t1 = performance.now();
    await sender.close();
    const expected = Array.from({ length: FANOUT_MSGS }, (_, i) => text('fan', i)).join('\n');
    const complete = ok && receivers.every((r) => readLog(r.logPath).join('\n') === expected);
    for (const r of receivers) await r.quit();
    return {
      system,
      run,
      messages: FANOUT_MSGS,
      receivers: RECEIVERS,
      seconds: (t1 - t0) / 1_000,
      deliveriesPerSecond: ok ? (RECEIVERS * FANOUT_MSGS) / ((t1 - t0) / 1_000) : 0,
      acceptedPerSecond: FANOUT_MSGS / ((tAcked - t0) / 1_000),
      complete,
      loadavg1: loadavg()[0]!,
    };
  } finally {
    await inst.stop();
  }
}

// ---------------------------------------------------------------------------
// 3. replay of a backlog

interface ReplayRun {
  system: SystemName;
  run: number;
  backlog: number;
  /** Sending the backlog (pipelined), acknowledged. */
  sendSeconds: number;
  /** The reconnect command → the log holds the whole backlog. */
  replaySeconds: number;
  perSecond: number;
  complete: boolean;
  loadavg1: number;
}

async function replayRun(system: SystemName, run: number): Promise<ReplayRun> {
  const inst = await startInstance(system, TD_LONG_S);
  try {
    const r = await inst.receiver('late');
    await r.disconnect();
    const sender = await inst.sender('bulk');
    const s0 = performance.now();
    const sent = await drive(sender, 'bulk', WINDOW, s0, Number.POSITIVE_INFINITY, BACKLOG);
    const s1 = performance.now();
    await sender.close();
    if (sent.errors > 0) throw new Error(`${system}: ${sent.errors} of the backlog's sends failed`);
    const t0 = performance.now();
    await r.connect();
    const ok = await waitFor(() => logLines(r.logPath) >= BACKLOG, 300_000, 2);
    const t1 = performance.now();
    await sleep(200);
    const lines = readLog(r.logPath);
    const complete = ok && lines.length === BACKLOG && lines.every((l, i) => l === text('bulk', i));
    await r.quit();
    return {
      system,
      run,
      backlog: BACKLOG,
      sendSeconds: (s1 - s0) / 1_000,
      replaySeconds: (t1 - t0) / 1_000,
      perSecond: ok ? BACKLOG / ((t1 - t0) / 1_000) : 0,
      complete,
      loadavg1: loadavg()[0]!,
    };
  } finally {
    await inst.stop();
  }
}

// ---------------------------------------------------------------------------
// 4. the td cut

interface CutRun {
  system: SystemName;
  run: number;
  tdMs: number;
  /** When the system took the reconnect (grapevine: the coordinator's at=; references: CONNACK / pull start, client clock). */
  reconnectMs: number;
  /** R − td. */
  boundaryMs: number;
  /** Acceptance time of the oldest message the receiver got (grapevine: coordinator clock; references: the publish call, same machine clock). */
  oldestMs: number | null;
  /** Acceptance time of the message sent just before it (the newest one cut). */
  previousMs: number | null;
  /** oldest − boundary: ≥ 0 and below the spacing when exact; < 0 = older messages delivered. */
  offsetMs: number | null;
  /** 0 when the boundary lies between the last message cut and the first kept, else the distance to the nearer one. */
  errorMs: number | null;
  /** Spacing of the messages around the boundary (the resolution). */
  spacingMs: number | null;
  /** Messages younger than the boundary that never arrived / older ones that did. */
  missingInside: number;
  deliveredOlder: number;
  duplicates: number;
  sent: number;
  received: number;
}

async function cutRun(system: SystemName, run: number): Promise<CutRun> {
  const tdMs = TD_CUT_S * 1_000;
  const inst = await startInstance(system, TD_CUT_S, 'node');
  try {
    const r = await inst.receiver('cut');
    const sender = await inst.sender('pace');
    await r.disconnect();
    const offlineAt = Date.now();
    // Accepted times by message index (NaN until acknowledged).
    const accepted: number[] = [];
    const pending: Promise<unknown>[] = [];
    let i = 0;
    let failures = 0;
    const timer = setInterval(() => {
      const k = i++;
      const sentAt = Date.now();
      accepted[k] = Number.NaN;
      pending.push(
        sender.send(text('cut', k)).then(
          (acceptedMs) => {
            accepted[k] = acceptedMs ?? sentAt;
          },
          () => {
            failures += 1;
          },
        ),
      );
    }, 1);
    await sleep(Math.max(0, offlineAt + tdMs + CUT_OVERSTAY_MS - Date.now()));
    const reconnectMs = await r.connect();
    await sleep(300);
    clearInterval(timer);
    await Promise.all(pending);
    await sender.close();
    // Let everything owed arrive: the log stops growing.
    let last = -1;
    await waitFor(() => {
      const n = logLines(r.logPath);
      const still = n === last;
      last = n;
      return still && n > 0;
    }, 30_000, 500);
    const lines = readLog(r.logPath);
    await r.quit();
    const boundaryMs = reconnectMs - tdMs;
    const indexes = lines.map((l) => Number(l.slice(4)));
    const oldest = indexes.length > 0 ? Math.min(...indexes) : undefined;
    const oldestMs = oldest === undefined ? null : accepted[oldest]!;
    const previousMs = oldest === undefined || oldest === 0 ? null : accepted[oldest - 1]!;
    let errorMs: number | null = null;
    if (oldestMs !== null) {
      if (oldestMs < boundaryMs) errorMs = boundaryMs - oldestMs;
      else if (previousMs !== null && previousMs >= boundaryMs) errorMs = previousMs - boundaryMs;
      else errorMs = 0;
    }
    const got = new Set(indexes);
    let missingInside = 0;
    for (let k = 0; k < accepted.length; k++) if (accepted[k]! >= boundaryMs && !got.has(k)) missingInside += 1;
    return {
      system,
      run,
      tdMs,
      reconnectMs,
      boundaryMs,
      oldestMs,
      previousMs,
      offsetMs: oldestMs === null ? null : oldestMs - boundaryMs,
      errorMs,
      spacingMs: oldestMs !== null && previousMs !== null ? oldestMs - previousMs : null,
      missingInside,
      deliveredOlder: indexes.filter((k) => accepted[k]! < boundaryMs).length,
      duplicates: indexes.length - got.size,
      sent: accepted.length - failures,
      received: lines.length,
    };
  } finally {
    await inst.stop();
  }
}

// ---------------------------------------------------------------------------
// 5. kill -9 cycles (grapevine)

interface KillResult {
  cycles: number;
  seed: number;
  acknowledged: number;
  lost: number;
  lostExamples: string[];
  /** seq of each lost message as acknowledged. */
  lostSeqs: number[];
  duplicates: number;
  outOfOrder: number;
  /** Stored and delivered although the sender never saw the ack (its connection died first): allowed. */
  deliveredUnacknowledged: number;
  restartMsMedian: number | null;
  restartMsMax: number | null;
  /** kill -9 → the first acknowledged msend after the restart. */
  ackGapMsMedian: number | null;
  ackGapMsMax: number | null;
  failedSends: number;
  logLines: number;
  seconds: number;
}

async function killCycles(): Promise<KillResult> {
  const t0 = performance.now();
  const random = rng(SEED);
  const dir = join(WORK, 'kill');
  const port = await freePort();
  const spec = { dir, port, tdSeconds: TD_LONG_S, fsync: false };
  let coordinator = await CoordinatorProcess.start(spec);
  const participant = ParticipantProcess.create(join(dir, 'participants'), 'watcher', port);
  await participant.command(`register ${await freePort()}`);
  const ids = Array.from({ length: SENDERS }, (_, i) => `k${i}`);
  for (const id of ids) {
    const c = await PmClient.connect(port, id);
    await c.register(await freePort());
    await c.disconnect();
    c.close();
  }
  const acked = new Map<string, number>();
  let lastAckAt = 0;
  let failedSends = 0;
  let stopping = false;
  const senderLoop = async (id: string): Promise<void> => {
    let n = 0;
    while (!stopping) {
      let client: PmClient;
      try {
        client = await PmClient.connect(port, id, 2_000);
      } catch {
        await sleep(5);
        continue;
      }
      await new Promise<void>((resolve) => {
        let inflight = 0;
        const pump = (): void => {
          while (!stopping && !client.closed && inflight < KILL_WINDOW) {
            const t = `${id}-${String(n++).padStart(8, '0')}`;
            inflight += 1;
            client.send(t).then(
              (ok) => {
                acked.set(t, ok.seq);
                lastAckAt = performance.now();
                inflight -= 1;
                pump();
              },
              () => {
                failedSends += 1;
                inflight -= 1;
                pump();
              },
            );
          }
          if (inflight === 0 && (stopping || client.closed)) resolve();
        };
        pump();
      });
      client.close();
    }
  };
  const loops = ids.map((id) => senderLoop(id));
  const restartMs: number[] = [];
  const ackGapMs: number[] = [];
  for (let c = 1; c <= CYCLES; c++) {
    await sleep(50 + random() * 450);
    const killedAt = performance.now();
    await coordinator.kill9();
    coordinator = await CoordinatorProcess.start(spec);
    const upAt = performance.now();
    restartMs.push(upAt - killedAt);
    if (await waitFor(() => lastAckAt > upAt, 30_000, 1)) ackGapMs.push(lastAckAt - killedAt);
    if (c % 10 === 0) say(`  kill -9 cycle ${c}/${CYCLES}: ${acked.size} messages acknowledged so far`);
  }
  await sleep(300);
  stopping = true;
  await Promise.all(loops);
  // Everything acknowledged must reach the participant's log.
  const logPath = participant.logPath;
  const want = new Set(acked.keys());
  await waitFor(
    () => {
      const lines = readLog(logPath);
      if (lines.length < want.size) return false;
      const have = new Set(lines);
      for (const t of want) if (!have.has(t)) return false;
      return true;
    },
    60_000,
    250,
  );
  const lines = readLog(logPath);
  const seen = new Set<string>();
  let duplicates = 0;
  for (const l of lines) {
    if (seen.has(l)) duplicates += 1;
    seen.add(l);
  }
  const lost = [...want].filter((t) => !seen.has(t));
  let outOfOrder = 0;
  let prev = 0;
  for (const l of lines) {
    const seq = acked.get(l);
    if (seq === undefined) continue;
    if (seq < prev) outOfOrder += 1;
    prev = seq;
  }
  participant.write('quit');
  participant.endInput();
  await waitFor(() => !participant.running, 10_000);
  await participant.kill();
  await coordinator.stop();
  return {
    cycles: CYCLES,
    seed: SEED,
    acknowledged: acked.size,
    lost: lost.length,
    lostExamples: lost.slice(0, 10),
    lostSeqs: lost.map((t) => acked.get(t)!).sort((a, b) => a - b),
    duplicates,
    outOfOrder,
    deliveredUnacknowledged: [...seen].filter((t) => !acked.has(t)).length,
    restartMsMedian: median(restartMs),
    restartMsMax: max(restartMs),
    ackGapMsMedian: median(ackGapMs),
    ackGapMsMax: max(ackGapMs),
    failedSends,
    logLines: lines.length,
    seconds: (performance.now() - t0) / 1_000,
  };
}

// ---------------------------------------------------------------------------
// Report

interface Line {
  readonly metric: string;
  readonly gv: number | null;
  readonly mosq: number | null;
  readonly nats: number | null;
  readonly fmt: (x: number | null) => string;
  readonly goal?: { readonly text: string; readonly met: boolean | null };
  /** No ratio column (errors and counts where 0 is the ideal). */
  readonly noRatio?: boolean;
}

const fmtRate = (x: number | null): string => (x === null ? '—' : `${Math.round(x).toLocaleString('en-US')}/s`);
const fmtMs = (x: number | null): string =>
  x === null || Number.isNaN(x) ? '—' : Math.abs(x) < 1 ? `${x.toFixed(3)} ms` : Math.abs(x) < 100 ? `${x.toFixed(2)} ms` : `${x.toFixed(0)} ms`;
const fmtCount = (x: number | null): string => (x === null ? '—' : String(x));
const fmtRatio = (x: number | null): string => (x === null ? '—' : x.toFixed(2));

function cells(l: Line): string[] {
  const goal = l.goal ? `${l.goal.text} — ${l.goal.met === null ? 'not measured' : l.goal.met ? 'met' : 'MISSED'}` : '';
  const r = (theirs: number | null): string => (l.noRatio ? '—' : fmtRatio(ratio(l.gv, theirs)));
  return [l.metric, l.fmt(l.gv), l.fmt(l.mosq), l.fmt(l.nats), r(l.mosq), r(l.nats), goal];
}
const HEAD = ['metric', 'grapevine', 'mosquitto', 'nats', 'ours/mosquitto', 'ours/nats', 'goal (grapevine)'];

function textTable(lines: readonly Line[]): string {
  const rows = [HEAD, ...lines.map(cells)];
  const w = HEAD.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const fmt = (r: string[]): string => r.map((x, c) => (c === 0 || c === 6 ? x.padEnd(w[c]!) : x.padStart(w[c]!))).join('  ').trimEnd();
  return [fmt(HEAD), '-'.repeat(fmt(HEAD).length), ...lines.map((l) => fmt(cells(l)))].join('\n');
}

function mdTable(lines: readonly Line[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [`| ${HEAD.join(' | ')} |`, '| --- | ---: | ---: | ---: | ---: | ---: | --- |', ...lines.map((l) => `| ${cells(l).map((c, i) => (i === 0 ? c.replace(/^ {2}/, '&emsp;') : c)).map(esc).join(' | ')} |`)].join('\n');
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!existsSync(PARTICIPANT_JS)) throw new Error(`${PARTICIPANT_JS} is missing: run npm run build (npm ci does it)`);
  ensureDebianPackages('mosquitto', ['mosquitto', 'mosquitto-clients'], say);
  ensureDebianPackages('nats-server', ['nats-server'], say);
  const versions = { mosquitto: debVersion('mosquitto'), natsServer: debVersion('nats-server') };
  const machine = machineInfo('n/a');
  const commit = gitCommit();
  const loadStart = loadavg().map((x) => round(x, 2)!);
  WORK = mkdtempSync(join(tmpdir(), 'gvbench-pm-'));
  say(`pmcast bench: work dir ${WORK}; runs ${RUNS} × ${SECONDS} s, window ${WINDOW}, fan-out ${FANOUT_MSGS}, backlog ${BACKLOG}, kill cycles ${CYCLES} (seed ${SEED}); load ${loadStart.join(' ')}`);
  const loads: Record<string, number[]> = { start: loadStart };

  const all: SystemName[] = ['grapevine', 'grapevine --fsync', 'mosquitto', 'nats'];
  const throughput: ThroughputRun[] = [];
  for (let run = 1; run <= (ONLY.has('msend') ? RUNS : 0); run++) {
    for (const mode of MODES) {
      for (const system of all) {
        const r = await throughputRun(system, mode, run);
        throughput.push(r);
        say(`msend ${mode.key.padEnd(7)} run ${run} ${system.padEnd(17)} ${fmtRate(r.perSecond).padStart(9)}  p50 ${fmtMs(r.p50Ms)}  p99 ${fmtMs(r.p99Ms)}${r.errors ? `  errors ${r.errors}` : ''}  (load ${r.loadavg1.toFixed(1)})`);
      }
    }
  }
  loads.afterThroughput = loadavg().map((x) => round(x, 2)!);

  const three: SystemName[] = ['grapevine', 'mosquitto', 'nats'];
  const withNodeMqtt: SystemName[] = ['grapevine', 'mosquitto', 'mosquitto+mqtt.js', 'nats'];
  const fanout: FanoutRun[] = [];
  const replay: ReplayRun[] = [];
  const cut: CutRun[] = [];
  for (let run = 1; run <= (ONLY.has('fanout') ? RUNS : 0); run++) {
    for (const system of withNodeMqtt) {
      const f = await fanoutRun(system, run);
      fanout.push(f);
      say(`fan-out run ${run} ${system.padEnd(17)} ${fmtRate(f.deliveriesPerSecond)} deliveries (${f.seconds.toFixed(2)} s; accepted ${fmtRate(f.acceptedPerSecond)})${f.complete ? '' : '  INCOMPLETE'}`);
    }
  }
  loads.afterFanout = loadavg().map((x) => round(x, 2)!);
  for (let run = 1; run <= (ONLY.has('replay') ? RUNS : 0); run++) {
    for (const system of withNodeMqtt) {
      const r = await replayRun(system, run);
      replay.push(r);
      say(`replay  run ${run} ${system.padEnd(17)} ${fmtRate(r.perSecond)} (${r.replaySeconds.toFixed(2)} s for ${r.backlog}; sent in ${r.sendSeconds.toFixed(1)} s)${r.complete ? '' : '  INCOMPLETE'}`);
    }
  }
  loads.afterReplay = loadavg().map((x) => round(x, 2)!);
  for (let run = 1; run <= (ONLY.has('cut') ? RUNS : 0); run++) {
    for (const system of three) {
      const c = await cutRun(system, run);
      cut.push(c);
      say(`td cut  run ${run} ${system.padEnd(9)} error ${fmtMs(c.errorMs)} (oldest − (R − td) = ${fmtMs(c.offsetMs)}, spacing ${fmtMs(c.spacingMs)}; older delivered ${c.deliveredOlder}, missing ${c.missingInside})`);
    }
  }
  loads.afterCut = loadavg().map((x) => round(x, 2)!);
  let kill: KillResult | null = null;
  if (ONLY.has('kill')) {
    say(`kill -9 cycles: ${CYCLES}`);
    kill = await killCycles();
    say(`kill -9: ${kill.acknowledged} acknowledged, ${kill.lost} lost${kill.lost ? ` (${kill.lostExamples.join(' ')} …)` : ''}, ${kill.duplicates} duplicates, ${kill.outOfOrder} out of order; restart median ${fmtMs(kill.restartMsMedian)}`);
  }
  loads.end = loadavg().map((x) => round(x, 2)!);

  // ---- figures
  const tp = (system: SystemName, mode: Mode['key'], field: 'perSecond' | 'p50Ms' | 'p99Ms'): number | null =>
    median(present(throughput.filter((r) => r.system === system && r.mode === mode).map((r) => r[field])));
  const med = <T extends { system: SystemName }>(xs: T[], system: SystemName, f: (x: T) => number | null): number | null => median(present(xs.filter((x) => x.system === system).map(f)));
  const worst = <T extends { system: SystemName }>(xs: T[], system: SystemName, f: (x: T) => number | null): number | null => {
    const v = xs.filter((x) => x.system === system).map(f);
    return v.some((x) => x === null) ? null : max(present(v));
  };
  const goal = (text: string, value: number | null, ok: (v: number) => boolean): Line['goal'] => ({ text, met: value === null ? null : ok(value) });

  const lines: Line[] = [];
  const mode = (k: Mode['key']): Mode => MODES.find((m) => m.key === k)!;
  /** The best median of the given modes (a goal that any of them may meet). */
  const best = (system: SystemName, keys: readonly Mode['key'][]): number | null => max(present(keys.map((k) => tp(system, k, 'perSecond'))));
  const bestMode = (system: SystemName, keys: readonly Mode['key'][]): string => {
    const b = best(system, keys);
    return MODES.find((m) => keys.includes(m.key) && tp(system, m.key, 'perSecond') === b)?.label ?? '—';
  };
  for (const m of MODES) {
    const v = tp('grapevine', m.key, 'perSecond');
    const g = m.key === 'one' ? goal('>= 7,500/s', v, (x) => x >= GOALS.oneAtATime) : undefined;
    lines.push({ metric: `msend throughput, ${m.label}`, gv: v, mosq: tp('mosquitto', m.key, 'perSecond'), nats: tp('nats', m.key, 'perSecond'), fmt: fmtRate, ...(g ? { goal: g } : {}) });
    lines.push({ metric: '  ack latency p50', gv: tp('grapevine', m.key, 'p50Ms'), mosq: tp('mosquitto', m.key, 'p50Ms'), nats: tp('nats', m.key, 'p50Ms'), fmt: fmtMs });
    lines.push({ metric: '  ack latency p99', gv: tp('grapevine', m.key, 'p99Ms'), mosq: tp('mosquitto', m.key, 'p99Ms'), nats: tp('nats', m.key, 'p99Ms'), fmt: fmtMs });
  }
  const concurrent: Mode['key'][] = ['ten', 'pipe', 'tenpipe'];
  const bestConcurrent = best('grapevine', concurrent);
  lines.push({
    metric: 'msend throughput, best of concurrent / pipelined',
    gv: bestConcurrent,
    mosq: best('mosquitto', concurrent),
    nats: best('nats', concurrent),
    fmt: fmtRate,
    goal: goal('pipelined or concurrent >= 30,000/s', bestConcurrent, (x) => x >= GOALS.pipelinedOrConcurrent),
  });
  for (const m of MODES) {
    const v = tp('grapevine --fsync', m.key, 'perSecond');
    lines.push({ metric: `durable (--fsync) msend, ${m.label}`, gv: v, mosq: null, nats: null, fmt: fmtRate });
    lines.push({ metric: '  ack latency p50 (--fsync)', gv: tp('grapevine --fsync', m.key, 'p50Ms'), mosq: null, nats: null, fmt: fmtMs });
    lines.push({ metric: '  ack latency p99 (--fsync)', gv: tp('grapevine --fsync', m.key, 'p99Ms'), mosq: null, nats: null, fmt: fmtMs });
  }
  const ten: Mode['key'][] = ['ten', 'tenpipe'];
  const bestDurable = best('grapevine --fsync', ten);
  lines.push({ metric: `durable (--fsync) msend, best with ${SENDERS} senders`, gv: bestDurable, mosq: null, nats: null, fmt: fmtRate, goal: goal('>= 10,000/s with 10 senders', bestDurable, (x) => x >= GOALS.durable10) });
  const f = (s: SystemName): number | null => med(fanout, s, (x) => (x.complete ? x.deliveriesPerSecond : null));
  lines.push({ metric: `fan-out deliveries/s to ${RECEIVERS} online receivers (${FANOUT_MSGS.toLocaleString('en-US')} msgs)`, gv: f('grapevine'), mosq: f('mosquitto'), nats: f('nats'), fmt: fmtRate });
  const rp = (s: SystemName): number | null => med(replay, s, (x) => (x.complete ? x.perSecond : null));
  lines.push({ metric: `replay of a ${BACKLOG.toLocaleString('en-US')}-message backlog on reconnect`, gv: rp('grapevine'), mosq: rp('mosquitto'), nats: rp('nats'), fmt: fmtRate, goal: goal('>= 100,000/s', rp('grapevine'), (x) => x >= GOALS.replay) });
  const ce = (s: SystemName, w: boolean): number | null => (w ? worst(cut, s, (x) => x.errorMs) : med(cut, s, (x) => x.errorMs));
  lines.push({ metric: `td cut error (td = ${TD_CUT_S} s), median of ${RUNS}`, gv: ce('grapevine', false), mosq: ce('mosquitto', false), nats: ce('nats', false), fmt: fmtMs, noRatio: true });
  lines.push({ metric: `td cut error, worst of ${RUNS}`, gv: ce('grapevine', true), mosq: ce('mosquitto', true), nats: ce('nats', true), fmt: fmtMs, noRatio: true, goal: goal('<= 10 ms', ce('grapevine', true), (x) => x <= GOALS.cutErrorMs) });
  lines.push({ metric: `lost acknowledged messages, ${CYCLES} kill -9 cycles`, gv: kill?.lost ?? null, mosq: null, nats: null, fmt: fmtCount, noRatio: true, goal: goal('0', kill?.lost ?? null, (x) => x === GOALS.lost) });

  const table = textTable(lines);
  process.stdout.write(`\n${table}\n\n`);
  const misses = lines.filter((l) => l.goal?.met === false).map((l) => l.metric.trim());

  // ---- raw figures
  const date = new Date(T0);
  const stamp = date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const jsonName = `pmcast-${stamp}.json`;
  const durationMin = (Date.now() - T0) / 60_000;
  const config = { runs: RUNS, seconds: SECONDS, warmupMs: WARMUP_MS, window: WINDOW, fanoutMessages: FANOUT_MSGS, receivers: RECEIVERS, backlog: BACKLOG, cycles: CYCLES, seed: SEED, tdLongS: TD_LONG_S, tdCutS: TD_CUT_S, killWindow: KILL_WINDOW };
  const json = `${JSON.stringify({ bench: 'pmcast', date: date.toISOString(), durationMin: round(durationMin, 2), commit, machine: { ...machine, serf: undefined }, versions, loads, config, goals: GOALS, throughput, fanout, replay, cut, kill, table: lines.map((l) => cells(l)), misses }, null, 2)}\n`;

  // ---- RESULTS.md
  const perRun = (xs: number[], fmt: (x: number | null) => string): string => xs.map((x) => fmt(x)).join(', ');
  const body: string[] = [];
  body.push('## Persistent multicast (issue 4)');
  body.push('');
  body.push(
    `\`npm run bench:pmcast\` — ${date.toISOString()}, ${durationMin.toFixed(1)} min. Machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}; grapevine at ${commit}; mosquitto ${versions.mosquitto}, nats-server ${versions.natsServer} (Debian packages). Load average at the start ${loadStart.join(' ')}, at the end ${loads.end!.join(' ')} (the machine is shared with other benchmarks and test labs: figures move with it). Raw figures: \`bench/results/${jsonName}\`.`,
  );
  body.push('');
  body.push(mdTable(lines));
  body.push('');
  body.push(misses.length === 0 ? 'Every goal of issue 4 was met in this run.' : `Missed in this run: ${misses.join('; ')}.`);
  body.push('');
  body.push(
    `Best concurrent / pipelined mode: grapevine — ${bestMode('grapevine', concurrent)}; mosquitto — ${bestMode('mosquitto', concurrent)}; nats — ${bestMode('nats', concurrent)}; durable with ${SENDERS} senders: ${bestMode('grapevine --fsync', ten)}. With ${SENDERS} senders that each wait for their ack, at most ${SENDERS} messages share one commit, so \`--fsync\` one-at-a-time throughput is bounded by ${SENDERS} / (commit + fsync time); pipelined senders fill the group commit.`,
  );
  body.push('');
  body.push(
    `Load average (1 min) at the start / after the msend runs / after fan-out / after replay / after the td cut / at the end: ${['start', 'afterThroughput', 'afterFanout', 'afterReplay', 'afterCut', 'end'].map((k) => loads[k]?.[0] ?? '—').join(' / ')}.`,
  );
  const history = earlierRuns(jsonName);
  if (history.length > 0) {
    body.push('');
    body.push('Earlier full runs (their JSON in bench/results/; same bench, grapevine / mosquitto / nats, medians):');
    body.push(...history);
  }
  body.push('');
  body.push('Per run (throughput):');
  for (const m of MODES) {
    for (const s of all) {
      const xs = throughput.filter((r) => r.system === s && r.mode === m.key).map((r) => r.perSecond);
      body.push(`- ${mode(m.key).label}, ${s}: ${perRun(xs, fmtRate)}`);
    }
  }
  body.push(`- fan-out deliveries/s: ${withNodeMqtt.map((s) => `${s} ${perRun(fanout.filter((x) => x.system === s).map((x) => x.deliveriesPerSecond), fmtRate)}`).join('; ')}`);
  body.push(`- replay: ${withNodeMqtt.map((s) => `${s} ${perRun(replay.filter((x) => x.system === s).map((x) => x.perSecond), fmtRate)}`).join('; ')}`);
  body.push(`- td cut, oldest received − (R − td): ${three.map((s) => `${s} ${perRun(cut.filter((x) => x.system === s).map((x) => x.offsetMs ?? Number.NaN), fmtMs)}`).join('; ')}`);
  const incomplete = [...fanout, ...replay].filter((x) => !x.complete).map((x) => `${x.system} run ${x.run}`);
  body.push(`- logs complete and in order after every fan-out and replay run: ${incomplete.length === 0 ? 'yes' : `no — ${incomplete.join(', ')}`}`);
  if (kill) body.push(
    `- kill -9: ${kill.cycles} cycles in ${kill.seconds.toFixed(0)} s (seed ${kill.seed}); ${kill.acknowledged.toLocaleString('en-US')} messages acknowledged, ${kill.lost} lost, ${kill.duplicates} duplicates, ${kill.outOfOrder} out of order in the participant's log; ${kill.deliveredUnacknowledged} more delivered whose ack the sender never saw (stored before the kill, answer lost with the connection); restart (kill → 'coordinator up') median ${fmtMs(kill.restartMsMedian)}, max ${fmtMs(kill.restartMsMax)}; kill → first ack again median ${fmtMs(kill.ackGapMsMedian)}, max ${fmtMs(kill.ackGapMsMax)}.`,
  );
  body.push('');
  body.push('How it was measured:');
  body.push(
    `- **Servers.** A fresh server and data directory for every run, on 127.0.0.1 and a free port: \`coordinator\` (td ${TD_LONG_S} s; default durability = SQLite WAL synchronous=NORMAL, an acknowledged message survives kill -9; \`--fsync\` = synchronous=FULL, flushed before the ack), mosquitto (\`persistence true\`, no limit on queued messages), nats-server (JetStream, file storage, MaxAge = td). Load clients run in the bench process (grapevine: the coordinator's protocol over one framed connection per sender; mqtt.js 5 with QoS 1 and message expiry = td; nats.js 2 \`js.publish\`, which waits for the stream's PubAck).`,
  );
  body.push(
    `- **msend.** ${SECONDS} s measured after ${WARMUP_MS} ms of warm-up; throughput = acks received in the window / ${SECONDS} s; latency = send → ack of each request sent in the window (p50/p99 over all of them); one offline registered member (MQTT persistent session with a QoS 1 subscription, NATS durable consumer; grapevine's senders are themselves registered, offline members) so every system keeps every message. Medians of ${RUNS} runs, interleaved by system.`,
  );
  body.push(
    `- **Fan-out.** ${RECEIVERS} receivers online (grapevine: the real \`participant\` binary, its journalled log; mosquitto: its own C client \`mosquitto_sub\` (persistent session, QoS 1) with its output appended to the log — the fastest MQTT receiver at hand; the per-run lines also give mosquitto with Node receivers (mosquitto+mqtt.js); NATS: bench/lib/pm-receiver.ts, a Node process on a durable pull consumer that appends each message to its log, then acks); one sender sends ${FANOUT_MSGS.toLocaleString('en-US')} messages pipelined (${WINDOW} outstanding); deliveries/s = ${RECEIVERS} × messages / (first send → every log complete). Logs are checked to hold exactly the messages in order.`,
  );
  body.push(
    `- **Replay.** One receiver registered, then offline; ${BACKLOG.toLocaleString('en-US')} messages sent and acknowledged; rate = backlog / (reconnect command → its log holds all of them), log checked complete and in order.`,
  );
  body.push(
    `- **td cut.** td = ${TD_CUT_S} s (MQTT message expiry is in whole seconds). The receiver goes offline, a sender sends one message every ~1 ms, the receiver reconnects ${CUT_OVERSTAY_MS} ms after td ran out and sending goes on for 300 ms. R = the reconnect time (grapevine: \`at=\` of the coordinator's ok, the coordinator clock; MQTT: CONNACK; NATS: start of the pull), each message's time = grapevine's acceptance time from its ack, for the references the moment of the publish call (same machine clock; the broker stamps it a little later). Error = 0 when R − td lies between the newest message cut and the oldest delivered, else the distance to the nearer one (so the resolution is the ~1 ms spacing). MQTT's message expiry is a whole number of seconds and mosquitto delivered messages up to ~0.9 s older than td (consistent with a whole-second expiry clock); NATS removes messages older than MaxAge on its own timer.`,
  );
  body.push(
    `- **kill -9.** ${SENDERS} senders, ${KILL_WINDOW} outstanding each, record every acknowledged text and seq; the coordinator is killed with SIGKILL after a random 50–500 ms and restarted on the same data dir, ${CYCLES} times; one participant stays online throughout; at the end its log must hold every acknowledged message, once, in seq order.`,
  );
  body.push(
    '- **Durability is not equal.** mosquitto keeps its queues in memory and writes its persistence file only every `autosave_interval` (default 30 min) and at a clean shutdown: a PUBACK does not survive kill -9. nats-server 2.9 stores a message in its file store before the PubAck but does not fsync it first (the Debian 2.9.10 rejects the `sync_interval` setting of later versions). grapevine acknowledges after its SQLite commit (kill -9 safe) and, with `--fsync`, after the fsync; neither reference has an fsync-before-ack mode here, so the `--fsync` rows have no reference figures.',
  );
  if (WRITE) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, jsonName), json);
    writeSection(RESULTS_MD, 'pmcast', body.join('\n'));
    say(`wrote bench/RESULTS.md (section pmcast) and bench/results/${jsonName}`);
  } else {
    const preview = join(tmpdir(), 'pmcast-preview');
    mkdirSync(preview, { recursive: true });
    writeFileSync(join(preview, jsonName), json);
    writeFileSync(join(preview, 'section.md'), `${body.join('\n')}\n`);
    say(`BENCH_PM_WRITE=0 or BENCH_PM_ONLY: bench/ untouched; preview in ${preview}`);
  }
  if (!KEEP) rmSync(WORK, { recursive: true, force: true });
}

/** One line per earlier pmcast-*.json in bench/results (the figures move with the machine's load; this shows how much). */
function earlierRuns(current: string): string[] {
  if (!existsSync(RESULTS_DIR)) return [];
  const out: string[] = [];
  for (const name of readdirSync(RESULTS_DIR).filter((n) => /^pmcast-\d{8}T\d{6}Z\.json$/.test(n) && n !== current).sort()) {
    try {
      const run = JSON.parse(readFileSync(join(RESULTS_DIR, name), 'utf8')) as { date: string; commit?: string; loads?: Record<string, number[]>; table?: string[][] };
      const row = (prefix: string): string[] | undefined => run.table?.find((r) => r[0]!.startsWith(prefix));
      const three = (prefix: string): string => {
        const r = row(prefix);
        return r ? `${r[1]} / ${r[2]} / ${r[3]}` : '—';
      };
      const ours = (prefix: string): string => row(prefix)?.[1] ?? '—';
      out.push(
        `- ${run.date}${run.commit ? ` (${run.commit})` : ''}, load ${run.loads?.start?.[0] ?? '?'} at the start, ${run.loads?.afterThroughput?.[0] ?? '?'} after the msend runs: one at a time ${three('msend throughput, 1 sender')}; best concurrent/pipelined ${three('msend throughput, best of')}; durable best with 10 senders ${ours('durable (--fsync) msend, best')}; fan-out ${three('fan-out')}; replay ${three('replay')}; td cut worst ${three('td cut error, worst')}; lost ${ours('lost acknowledged')}.`,
      );
    } catch {
      // not one of ours
    }
  }
  return out;
}

/** HEAD's short hash, '+changes' when src/ differs from it. */
function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head}+changes in src/` : head;
  } catch {
    return 'unknown';
  }
}

let exiting = false;
function cleanupAndExit(code: number): void {
  if (exiting) return;
  exiting = true;
  killStarted();
  if (WORK && !KEEP) rmSync(WORK, { recursive: true, force: true });
  process.exit(code);
}
process.once('SIGINT', () => cleanupAndExit(130));
process.once('SIGTERM', () => cleanupAndExit(143));

main().then(
  () => cleanupAndExit(0),
  (err: unknown) => {
    process.stderr.write(`bench:pmcast failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    cleanupAndExit(1);
  },
);
