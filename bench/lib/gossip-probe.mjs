/**
 * The gossip bench's latency probe: one process per lab host, started inside
 * the host's network namespace (`ip netns exec`, like the lab relay), that
 * talks to its node directly — no relay, no hop through the bench process:
 *
 *   node bench/lib/gossip-probe.mjs CLIENT_JS IP PORT
 *
 * CLIENT_JS is the compiled client (dist/api/client.js), so the probe costs
 * one plain Node process and no TypeScript loader. It `watch`es the node and
 * stamps every event with CLOCK_MONOTONIC (process.hrtime.bigint(): one clock
 * for every process on the kernel, whatever its network namespace, ns
 * resolution, never stepped) as soon as its frame is read, keeping
 * the frame's bytes (decoded at `dump`). Stamps stay in memory and go to the
 * bench in one piece when asked, so a watch event costs one wake-up of this
 * process and nothing else.
 *
 * Commands on stdin, one per line; each answer is one line on stdout:
 *   submit START_MS SPACING_MS FIRST COUNT STEP BYTES
 *        submits k = FIRST, FIRST+STEP, … (COUNT messages in all, k < 0 are
 *        warm-up) at START_MS + (k - FIRST0)·SPACING_MS on the monotonic clock
 *        (ms), each message `lat-K-xxx…` of BYTES bytes; stamps each submit just
 *        before the call and when it is acknowledged → "ok submit"
 *   count → "count N" (watch events so far)
 *   dump  → "dump JSON": { node, events: [[id, tMs, path]…], submits: [[k, id|null, tMs, ackMs]…] }, then forgets them
 *   quit  → exits
 * "ready" once the watch is registered; "error MESSAGE" on any failure.
 */
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const [clientJs, ip, portArg] = process.argv.slice(2);
if (!clientJs || !ip || !portArg) {
  process.stderr.write('usage: gossip-probe.mjs CLIENT_JS IP PORT\n');
  process.exit(2);
}
const { GrapevineClient } = await import(clientJs);
// The generated decoder, for the raw event frames kept until `dump` (see the frame hook below).
const { decodeEnvelope } = await import(new URL('../wire/codec.js', pathToFileURL(clientJs)).href);

/** Monotonic ms (CLOCK_MONOTONIC), comparable across every process of this kernel. */
const monoMs = () => Number(process.hrtime.bigint()) / 1e6;
const say = (line) => process.stdout.write(`${line}\n`);

let events = [];
let submits = [];
/** Stamp, frame payload, stamp, frame payload, … (decoded at dump). */
let raw = [];

function decodeRaw() {
  for (let i = 0; i < raw.length; i += 2) {
    const env = decodeEnvelope(raw[i + 1]);
    if (env.body.case !== 'gossipEvent' || !env.body.value.message) continue;
    const m = env.body.value.message;
    events.push([m.id, raw[i], m.path.join(' ')]);
  }
  raw = [];
}

async function connect() {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await GrapevineClient.connect(ip, Number(portArg), { timeoutMs: 10_000 });
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function text(k, bytes) {
  const head = `${k < 0 ? 'warm' : 'lat'}-${k}-`;
  return head + 'x'.repeat(Math.max(0, bytes - head.length));
}

/** Sleeps until the monotonic clock reaches tMs (timer precision, ~1 ms: the stamp is taken after, so it only moves the schedule). */
async function until(tMs) {
  const d = tMs - monoMs();
  if (d > 0) await new Promise((r) => setTimeout(r, d));
}

async function runSubmits(client, startMs, spacingMs, first, count, step, bytes) {
  for (let j = 0; j < count; j++) {
    const k = first + j * step;
    await until(startMs + j * step * spacingMs);
    const t = monoMs();
    try {
      const id = await client.submit(text(k, bytes));
      submits.push([k, id, t, monoMs() - t]);
    } catch (err) {
      submits.push([k, null, t, monoMs() - t]);
      process.stderr.write(`submit ${k} failed: ${err.message}\n`);
    }
  }
}

try {
  const watcher = await connect();
  await watcher.watch(
    (m) => events.push([m.id, monoMs(), m.path.join(' ')]),
    (err) => say(`error ${err.message}`),
  );
  // From now on every frame on this connection is a watch event: stamp it and keep its
  // bytes, decoding them only at `dump`. An event then costs a stamp and a copy instead of
  // the generated protobuf decoder (probably cold at 25 events/s): measured 4.4-5.2 probe
  // CPU-ms per message against 6.3-7.0 with the decoder per event. (The frame hook is the
  // connection's documented fast path; the client keeps its connection private, hence `conn`.)
  watcher.conn.setFrameHook((payload) => {
    raw.push(monoMs(), Buffer.from(payload));
    return true;
  });
  // A second connection for submits, so the acknowledgement never queues behind events.
  const submitter = await connect();
  say('ready');
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, ...args] = line.trim().split(/\s+/);
    if (cmd === 'submit') {
      const [startMs, spacingMs, first, count, step, bytes] = args.map(Number);
      runSubmits(submitter, startMs, spacingMs, first, count, step, bytes).then(
        () => say('ok submit'),
        (err) => say(`error ${err.message}`),
      );
    } else if (cmd === 'count') {
      say(`count ${events.length + raw.length / 2}`);
    } else if (cmd === 'dump') {
      decodeRaw();
      say(`dump ${JSON.stringify({ node: watcher.nodeId, events, submits })}`);
      events = [];
      submits = [];
    } else if (cmd === 'quit') {
      watcher.close();
      submitter.close();
      process.exit(0);
    } else {
      say(`error unknown command '${line}'`);
    }
  });
} catch (err) {
  say(`error ${err.message}`);
  process.exit(1);
}
