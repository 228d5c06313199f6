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
 * The watch runs on a raw socket of its own (net.connect with `onread`: one
 * reused buffer, no stream machinery, no Buffer or frame object per read): the
 * probe sends the client Hello and the watch request itself, and from the
 * watch's answer on each read is stamped once and its bytes copied; a frame's
 * stamp is that of the read that completed it (what the client's frame
 * decoder did, event for event). Measured with 8 local nodes, 500 events
 * each, 4 A/B pairs: 0.27 → 0.17 probe CPU-ms per event, medians (see
 * bench/gossip.ts's header).
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
import net from 'node:net';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const [clientJs, ip, portArg] = process.argv.slice(2);
if (!clientJs || !ip || !portArg) {
  process.stderr.write('usage: gossip-probe.mjs CLIENT_JS IP PORT\n');
  process.exit(2);
}
const { GrapevineClient } = await import(clientJs);
// The generated codec: the handshake and watch request going out, the frames kept until `dump` coming in.
const { decodeEnvelope, encodeEnvelopeFrame } = await import(new URL('../wire/codec.js', pathToFileURL(clientJs)).href);
const { helloBody } = await import(new URL('../runtime/handshake.js', pathToFileURL(clientJs)).href);

/** Monotonic ms (CLOCK_MONOTONIC), comparable across every process of this kernel. */
const monoMs = () => Number(process.hrtime.bigint()) / 1e6;
const say = (line) => process.stdout.write(`${line}\n`);

const HELLO_ID = 1;
const WATCH_ID = 2;
/** Largest frame we accept while setting up (the node's Hello and watch answers are tiny). */
const SETUP_FRAME_MAX = 1 << 20;

let events = [];
let submits = [];
/** Stamp, bytes, stamp, bytes, … of every read after the watch answer (split into frames at dump). */
let raw = [];
/** Events completed so far, counted from the 4-byte length prefixes as bytes arrive. */
let eventCount = 0;
/** Bytes of the current frame still to come (after its prefix), and the prefix bytes seen of the next one. */
let frameLeft = 0;
let headerBytes = 0;
let header = 0;

/** decodeRaw's place in the byte stream (kept across dumps: a frame may be cut by one). */
let pending = [];
let need = -1;
let have = 0;
let headBuf = Buffer.alloc(0);

/** Splits the kept reads into frames, each stamped with the read that completed it. */
function decodeRaw() {
  for (let i = 0; i < raw.length; i += 2) {
    const t = raw[i];
    let chunk = raw[i + 1];
    while (chunk.length > 0) {
      if (need < 0) {
        const take = Math.min(4 - headBuf.length, chunk.length);
        headBuf = Buffer.concat([headBuf, chunk.subarray(0, take)]);
        chunk = chunk.subarray(take);
        if (headBuf.length < 4) break;
        need = headBuf.readUInt32BE(0);
        headBuf = Buffer.alloc(0);
        pending = [];
        have = 0;
      }
      const take = Math.min(need - have, chunk.length);
      pending.push(chunk.subarray(0, take));
      have += take;
      chunk = chunk.subarray(take);
      if (have === need) {
        const env = decodeEnvelope(Buffer.concat(pending));
        need = -1;
        if (env.body.case !== 'gossipEvent' || !env.body.value.message) continue;
        const m = env.body.value.message;
        events.push([m.id, t, m.path.join(' ')]);
      }
    }
  }
  raw = [];
}

/** Counts the frames completed by `n` new bytes at `buf` (length prefixes only; no copy, no decode). */
function countFrames(buf, n) {
  let at = 0;
  while (at < n) {
    if (frameLeft > 0) {
      const take = Math.min(frameLeft, n - at);
      frameLeft -= take;
      at += take;
      if (frameLeft === 0) eventCount += 1;
      continue;
    }
    header = ((header << 8) | buf[at++]) >>> 0;
    if (++headerBytes === 4) {
      frameLeft = header;
      headerBytes = 0;
      header = 0;
      if (frameLeft === 0) eventCount += 1;
    }
  }
}

/**
 * Connects, greets as a client and registers the watch on a raw socket.
 * Until the watch is answered, frames are decoded here; after it, every read
 * is stamped and copied, nothing more.
 */
function rawWatch() {
  return new Promise((resolve, reject) => {
    let watching = false;
    let setup = Buffer.alloc(0);
    const fail = (err) => {
      if (!watching) reject(err);
      else say(`error ${err.message}`);
    };
    const socket = net.connect({
      host: ip,
      port: Number(portArg),
      onread: {
        buffer: Buffer.allocUnsafe(256 * 1024),
        callback: (n, buf) => {
          if (watching) {
            raw.push(monoMs(), Buffer.from(buf.subarray(0, n)));
            countFrames(buf, n);
            return;
          }
          const t = monoMs();
          setup = Buffer.concat([setup, buf.subarray(0, n)]);
          while (!watching && setup.length >= 4) {
            const len = setup.readUInt32BE(0);
            if (len > SETUP_FRAME_MAX) return fail(new Error(`setup frame of ${len} bytes`));
            if (setup.length < 4 + len) break;
            const env = decodeEnvelope(setup.subarray(4, 4 + len));
            setup = setup.subarray(4 + len);
            if (env.body.case === 'error') return fail(new Error(`${env.body.value.code}: ${env.body.value.message}`));
            if (env.requestId === HELLO_ID && env.body.case === 'hello') {
              socket.write(encodeEnvelopeFrame({ requestId: WATCH_ID, body: { case: 'watchRequest', value: {} } }));
            } else if (env.requestId === WATCH_ID && env.body.case === 'watchResponse') {
              watching = true;
              resolve({ socket });
              if (setup.length > 0) {
                raw.push(t, Buffer.from(setup));
                countFrames(setup, setup.length);
              }
            }
          }
        },
      },
    });
    socket.setNoDelay(true);
    socket.once('connect', () => socket.write(encodeEnvelopeFrame({ requestId: HELLO_ID, body: helloBody({ cluster: '', id: '', incarnation: 0, role: 'client' }) })));
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('the node closed the watch connection')));
  });
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
  // The submits' connection first: it also tells us the node's id (its Hello).
  const submitter = await connect();
  let watcher;
  for (const deadline = Date.now() + 20_000; ; ) {
    try {
      watcher = await rawWatch();
      break;
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
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
      say(`count ${events.length + eventCount}`);
    } else if (cmd === 'dump') {
      decodeRaw();
      eventCount = 0;
      say(`dump ${JSON.stringify({ node: submitter.nodeId, events, submits })}`);
      events = [];
      submits = [];
    } else if (cmd === 'quit') {
      watcher.socket.destroy();
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
