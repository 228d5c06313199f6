/**
 * Replication lag as a client sees it: SET a fresh key at the primary
 * (grapevine node 1, or a redis-server with replicas), and, from the moment
 * the SET is sent, poll every other server with GETs of that key on a
 * persistent connection, `window` of them in flight (pipelined), until the
 * new value comes back. One sample = (arrival of the first GET reply with the
 * value) − (arrival of the SET's reply), per reader; the sample of "the last
 * node" is the largest of them. Sequential: the next SET goes out once every
 * reader has the value (or `timeoutMs` passed: a missing sample, counted as
 * slower than every other) plus a short random gap.
 *
 * Resolution: the value became readable at the reader's server somewhere
 * between its processing of the last GET that missed and of the first that
 * hit; the bench records, per sample, the arrival gap between those two
 * replies (`resolutionMs`) and each hit GET's round trip.
 */
import { performance } from 'node:perf_hooks';
import { RespError } from './cache-resp.js';
import type { RespClient } from './cache-resp.js';
import { sleep } from './lines.js';

export interface LagOptions {
  readonly samples: number;
  readonly window: number;
  readonly timeoutMs: number;
  readonly keyPrefix: string;
  /** Random gap between samples, ms (uniform in [min, max]). */
  readonly gapMs: readonly [number, number];
  /** Stop early (fewer samples) after this long. */
  readonly maxDurationMs: number;
}

export interface LagSample {
  /** Per reader: ms from the SET's reply until the first reply with the value; null when it never came. */
  readonly lagMs: (number | null)[];
  /** Per reader: arrival gap between the last miss and the first hit (the poll's uncertainty). */
  readonly resolutionMs: (number | null)[];
  /** Per reader: round trip of the hit GET. */
  readonly hitRttMs: (number | null)[];
  /** SET sent → its reply. */
  readonly setMs: number;
}

export interface LagRun {
  readonly samples: LagSample[];
  readonly setErrors: number;
  readonly durationMs: number;
}

interface PollResult {
  hitAt: number | null;
  lastMissAt: number | null;
  hitRtt: number | null;
}

function poll(reader: RespClient, key: string, value: string, window: number, deadline: number): Promise<PollResult> {
  return new Promise((resolve) => {
    let done = false;
    let lastMissAt: number | null = null;
    const sendOne = (): void => {
      const sentAt = performance.now();
      reader.send(['GET', key], (reply, arrivedAt) => {
        if (done) return;
        if (reply instanceof RespError) {
          done = true;
          resolve({ hitAt: null, lastMissAt, hitRtt: null });
          return;
        }
        if (Buffer.isBuffer(reply) && reply.toString('latin1') === value) {
          done = true;
          resolve({ hitAt: arrivedAt, lastMissAt, hitRtt: arrivedAt - sentAt });
          return;
        }
        lastMissAt = arrivedAt;
        if (performance.now() < deadline) sendOne();
        else {
          done = true;
          resolve({ hitAt: null, lastMissAt, hitRtt: null });
        }
      });
    };
    for (let i = 0; i < window; i++) sendOne();
  });
}

export async function measureLag(writer: RespClient, readers: readonly RespClient[], o: LagOptions): Promise<LagRun> {
  const samples: LagSample[] = [];
  let setErrors = 0;
  const t0 = performance.now();
  for (let k = 0; k < o.samples && performance.now() - t0 < o.maxDurationMs; k++) {
    const key = `${o.keyPrefix}:${k}`;
    const value = `${o.keyPrefix}-v${k}-${Math.random().toString(36).slice(2, 10)}`;
    const sentAt = performance.now();
    const deadline = sentAt + o.timeoutMs;
    const polls = readers.map((r) => poll(r, key, value, o.window, deadline));
    const ack = await new Promise<{ at: number; ok: boolean }>((resolve) => writer.send(['SET', key, value], (reply, at) => resolve({ at, ok: !(reply instanceof RespError) })));
    const results = await Promise.all(polls);
    if (!ack.ok) {
      setErrors += 1;
      continue;
    }
    samples.push({
      lagMs: results.map((r) => (r.hitAt === null ? null : r.hitAt - ack.at)),
      resolutionMs: results.map((r) => (r.hitAt === null || r.lastMissAt === null ? null : r.hitAt - r.lastMissAt)),
      hitRttMs: results.map((r) => r.hitRtt),
      setMs: ack.at - sentAt,
    });
    const [lo, hi] = o.gapMs;
    await sleep(lo + Math.random() * (hi - lo));
  }
  return { samples, setErrors, durationMs: performance.now() - t0 };
}
