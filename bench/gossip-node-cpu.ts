/**
 * One node's CPU per message under a bench:gossip-like flood, in process (no
 * lab, no other node): what a node pays to receive, store and forward one
 * message, without the machine's noise. Messages of ORIGINS streams arrive in
 * frames of FRAME_MESSAGES from NEIGHBOURS peers (each peer sends every
 * message: the copies beyond the first are duplicates), one frame per peer
 * per turn; 1/ORIGINS of them are this node's own submits. Anti-entropy runs
 * as in a node (a neighbour asking every 2 s) only if SYNC=on.
 *
 *   node --import tsx bench/gossip-node-cpu.ts [messages]
 *   env: ORIGINS (8), NEIGHBOURS (3), FRAME_MESSAGES (16), COPIES (2), RUNS (3)
 */
import { hash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GossipCore } from '../src/core/gossip/gossip.js';
import type { GossipMessage } from '../src/core/gossip/message.js';
import { encodeGossipMessage, gossipBatchFrame } from '../src/runtime/gossip-frame.js';
import { GossipService, GOSSIP_SERVICE_DEFAULTS } from '../src/runtime/gossip-service.js';
import type { FramedConnection } from '../src/runtime/connection.js';
import { createLogger } from '../src/runtime/log.js';
import { FRAME_HEADER_BYTES } from '../src/wire/limits.js';

const MESSAGES = Number(process.argv[2] ?? 20_000);
const ORIGINS = Number(process.env.ORIGINS ?? 8);
const NEIGHBOURS = Number(process.env.NEIGHBOURS ?? 3);
const FRAME_MESSAGES = Number(process.env.FRAME_MESSAGES ?? 16);
const COPIES = Number(process.env.COPIES ?? 2);
const RUNS = Number(process.env.RUNS ?? 3);

const sha256 = (t: string): string => hash('sha256', t, 'binary');
const peers = Array.from({ length: NEIGHBOURS }, (_, i) => `peer${i}xyzA`);
const origins = Array.from({ length: ORIGINS - 1 }, (_, i) => new GossipCore({ selfId: `orig${i}xyzAB`, incarnation: 1, sha256, messageBytesMax: 65536, digestAboveMax: 1024, streamsMax: 65536 }));
let sent = 0;
const fakeConn = { sendFrame: () => ((sent += 1), true), request: () => new Promise(() => {}), reply: () => true } as unknown as FramedConnection;

const dir = mkdtempSync(join(tmpdir(), 'gv-node-cpu-'));
const svc = new GossipService({
  ...GOSSIP_SERVICE_DEFAULTS,
  selfId: 'selfxyzABCD',
  incarnation: 1,
  dataDir: dir,
  log: createLogger('error'),
  neighbours: () => peers,
  connection: () => fakeConn,
});
await svc.start();

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function run(r: number): Promise<void> {
  // Pre-encode the frames (the senders' work, not ours).
  const frames: Uint8Array[][] = [];
  let ownDue = 0;
  const batch: GossipMessage[] = [];
  const flushFrame = (): void => {
    const perPeer = peers.slice(0, COPIES).map((p, i) => {
      const enc = batch.map((m) => encodeGossipMessage({ ...m, path: [m.origin, `${p}`.slice(0, 10) + String(i)] }));
      return gossipBatchFrame(enc).subarray(FRAME_HEADER_BYTES);
    });
    frames.push(perPeer);
    batch.length = 0;
  };
  for (let k = 0; k < MESSAGES; k++) {
    if (k % ORIGINS === ORIGINS - 1) {
      ownDue += 1;
      continue;
    }
    const o = origins[k % (ORIGINS - 1)]!;
    const res = o.submit(`tp${r}-${k}-`.padEnd(100, 'x'), Date.now());
    if (!res.ok) throw new Error('submit');
    batch.push(res.message);
    if (batch.length === FRAME_MESSAGES) flushFrame();
  }
  if (batch.length > 0) flushFrame();
  const perFrameOwn = Math.ceil(ownDue / frames.length);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const acks: Promise<unknown>[] = [];
  for (const perPeer of frames) {
    for (let i = 0; i < perPeer.length; i++) svc.onPeerFrame(peers[i]!, perPeer[i]!);
    for (let j = 0; j < perFrameOwn && ownDue > 0; j++, ownDue--) acks.push(svc.submit(`own${r}-${acks.length}`.padEnd(100, 'x')));
    await turn();
  }
  await Promise.all(acks);
  const c = process.cpuUsage(c0);
  const ms = performance.now() - t0;
  const us = (c.user + c.system) / MESSAGES;
  console.log(`run ${r}: ${us.toFixed(1)} µs CPU per message (${ms.toFixed(0)} ms wall), frames sent ${sent}, stats ${JSON.stringify({ ...svc.stats, ...svc.storeWork() })}`);
}

for (let r = 1; r <= RUNS; r++) await run(r);
await svc.stop();
rmSync(dir, { recursive: true, force: true });
