import { SimNetwork } from './network.js';
import type { NetworkKnobs } from './network.js';
import type { SimRandom } from './random.js';
import type { Scheduler } from './scheduler.js';

/**
 * TCP-like streams over the simulated datagram network (SimNetwork), for
 * simulations whose processes talk over connections: every segment carries
 * its stream and a per-direction number, the receiving end holds segments
 * that overtook an earlier one and drops duplicates, so data arrives once and
 * in order. A lost or blocked segment (loss, partition, link cut) breaks
 * every stream between the two nodes, as a TCP connection that times out:
 * both ends are told after a short delay and whatever was in flight is gone.
 *
 * - connect(from, to, port) sends a SYN; the listener on `to:port` accepts
 *   (and gets its end) or there is none and the initiator gets a reset. Data
 *   may follow the SYN at once; it waits behind it.
 * - close() is graceful: data already sent still arrives, then the peer is
 *   told 'fin'. The closing end hears nothing more.
 * - crash(node) kills a process: its ends vanish without a word to it, its
 *   listeners close, and each peer gets a reset.
 */
export type CloseReason = 'fin' | 'reset' | 'broken';

export interface StreamHandler<T> {
  data(end: StreamEnd<T>, body: T): void;
  closed(end: StreamEnd<T>, reason: CloseReason): void;
}

export type Accept<T> = (end: StreamEnd<T>) => StreamHandler<T> | undefined;

export interface Segment<T> {
  readonly stream: number;
  /** 0: from the initiator; 1: towards it. */
  readonly dir: 0 | 1;
  readonly n: number;
  readonly kind: 'syn' | 'data' | 'fin' | 'rst';
  readonly body?: T;
}

type EndState = 'pending' | 'open' | 'closed';

interface Side<T> {
  state: EndState;
  handler: StreamHandler<T> | undefined;
  sendN: number;
  recvN: number;
  readonly held: Map<number, Segment<T>>;
  readonly end: StreamEnd<T>;
}

interface StreamState<T> {
  readonly id: number;
  readonly nodes: readonly [string, string];
  readonly port: number;
  broken: boolean;
  readonly sides: [Side<T>, Side<T>];
}

/** One end of a stream, held by the process on `node`. */
export class StreamEnd<T> {
  constructor(
    private readonly net: StreamNet<T>,
    readonly stream: number,
    readonly side: 0 | 1,
    readonly node: string,
    readonly peer: string,
    /** The listening port of the accepting side. */
    readonly port: number,
  ) {}

  get open(): boolean {
    return this.net.isOpen(this);
  }

  /** False when this end is closed or the stream broke (the data is dropped). */
  send(body: T): boolean {
    return this.net.send(this, body);
  }

  close(): void {
    this.net.close(this);
  }
}

export interface StreamStats {
  opened: number;
  refused: number;
  broken: number;
  resets: number;
}

export class StreamNet<T> {
  readonly network: SimNetwork<Segment<T>>;
  readonly stats: StreamStats = { opened: 0, refused: 0, broken: 0, resets: 0 };
  private readonly streams = new Map<number, StreamState<T>>();
  private readonly listeners = new Map<string, Accept<T>>();
  private nextId = 1;

  constructor(
    private readonly scheduler: Scheduler,
    /** Draws how long each end takes to notice a broken stream. */
    private readonly random: SimRandom,
    networkRandom: SimRandom,
    knobs: Partial<NetworkKnobs> = {},
    /** A broken stream is noticed by each end within this many ms. */
    private readonly noticeMsMax = 20,
  ) {
    this.network = new SimNetwork<Segment<T>>(scheduler, networkRandom, knobs, (from, to) => this.breakBetween(from, to));
  }

  attach(node: string): void {
    this.network.attach(node, (_from, segment) => this.arrive(segment));
  }

  listen(node: string, port: number, accept: Accept<T>): void {
    const key = `${node}:${port}`;
    if (this.listeners.has(key)) throw new Error(`${key} is already listening`);
    this.listeners.set(key, accept);
  }

  unlisten(node: string, port: number): void {
    this.listeners.delete(`${node}:${port}`);
  }

  listening(node: string, port: number): boolean {
    return this.listeners.has(`${node}:${port}`);
  }

  connect(from: string, to: string, port: number, handler: StreamHandler<T>): StreamEnd<T> {
    const id = this.nextId++;
    const side = (s: 0 | 1, state: EndState, h: StreamHandler<T> | undefined): Side<T> => ({
      state, handler: h, sendN: 0, recvN: 0, held: new Map(), end: new StreamEnd(this, id, s, s === 0 ? from : to, s === 0 ? to : from, port),
    });
    const st: StreamState<T> = { id, nodes: [from, to], port, broken: false, sides: [side(0, 'open', handler), side(1, 'pending', undefined)] };
    this.streams.set(id, st);
    this.stats.opened += 1;
    this.raw(st, 0, 'syn');
    return st.sides[0].end;
  }

  isOpen(end: StreamEnd<T>): boolean {
    const st = this.streams.get(end.stream);
    return !!st && !st.broken && st.sides[end.side].state === 'open';
  }

  send(end: StreamEnd<T>, body: T): boolean {
    const st = this.streams.get(end.stream);
    if (!st || st.broken || st.sides[end.side].state !== 'open') return false;
    this.raw(st, end.side, 'data', body);
    return true;
  }

  close(end: StreamEnd<T>): void {
    const st = this.streams.get(end.stream);
    if (!st || st.sides[end.side].state !== 'open') return;
    st.sides[end.side].state = 'closed';
    if (!st.broken) this.raw(st, end.side, 'fin');
    this.forgetIfDone(st);
  }

  /** Breaks one stream (a fault): both ends learn within noticeMsMax. */
  break(end: StreamEnd<T>): void {
    const st = this.streams.get(end.stream);
    if (st) this.breakStream(st);
  }

  /** The process on `node` died: its ends and listeners vanish; peers get a reset. */
  crash(node: string): void {
    for (const key of [...this.listeners.keys()]) if (key.startsWith(`${node}:`)) this.listeners.delete(key);
    for (const st of [...this.streams.values()]) {
      for (const s of [0, 1] as const) {
        if (st.nodes[s] !== node || st.sides[s].state === 'closed') continue;
        st.sides[s].state = 'closed';
        if (!st.broken) this.raw(st, s, 'rst');
      }
      this.forgetIfDone(st);
    }
  }

  /** Ends still open (either side), for fault injection. */
  openEnds(): StreamEnd<T>[] {
    const out: StreamEnd<T>[] = [];
    for (const st of this.streams.values()) if (!st.broken && st.sides[0].state === 'open') out.push(st.sides[0].end);
    return out;
  }

  private raw(st: StreamState<T>, side: 0 | 1, kind: Segment<T>['kind'], body?: T): void {
    const n = st.sides[side].sendN++;
    this.network.unicast(st.nodes[side], st.nodes[1 - side]!, { stream: st.id, dir: side, n, kind, body });
  }

  private arrive(seg: Segment<T>): void {
    const st = this.streams.get(seg.stream);
    if (!st || st.broken) return;
    const s = (1 - seg.dir) as 0 | 1;
    const side = st.sides[s];
    if (side.state === 'closed' || seg.n < side.recvN) return;
    side.held.set(seg.n, seg);
    for (let next = side.held.get(side.recvN); next; next = side.held.get(side.recvN)) {
      side.held.delete(side.recvN);
      side.recvN += 1;
      // process() may close this side or break the stream (the compiler cannot see that).
      if (!this.process(st, s, next)) break;
    }
    this.forgetIfDone(st);
  }

  /** Handles one in-order segment; false when this side can take no more. */
  private process(st: StreamState<T>, s: 0 | 1, seg: Segment<T>): boolean {
    const side = st.sides[s];
    if (seg.kind === 'syn') {
      const accept = this.listeners.get(`${st.nodes[1]}:${st.port}`);
      const handler = accept?.(side.end);
      if (handler) {
        side.state = 'open';
        side.handler = handler;
      } else {
        side.state = 'closed';
        this.stats.refused += 1;
        this.raw(st, 1, 'rst');
      }
    } else if (side.state === 'open' && seg.kind === 'data') {
      side.handler!.data(side.end, seg.body as T);
    } else if (side.state === 'open') {
      side.state = 'closed';
      if (seg.kind === 'rst') this.stats.resets += 1;
      side.handler!.closed(side.end, seg.kind === 'fin' ? 'fin' : 'reset');
    }
    return !st.broken && side.state !== 'closed';
  }

  private breakBetween(a: string, b: string): void {
    for (const st of [...this.streams.values()]) {
      if ((st.nodes[0] === a && st.nodes[1] === b) || (st.nodes[0] === b && st.nodes[1] === a)) this.breakStream(st);
    }
  }

  private breakStream(st: StreamState<T>): void {
    if (st.broken) return;
    st.broken = true;
    this.stats.broken += 1;
    for (const s of [0, 1] as const) {
      const side = st.sides[s];
      if (side.state === 'pending') side.state = 'closed';
      if (side.state !== 'open') continue;
      this.scheduler.after(this.random.int(0, this.noticeMsMax), () => {
        if (side.state !== 'open') return;
        side.state = 'closed';
        side.handler!.closed(side.end, 'broken');
        this.forgetIfDone(st);
      });
    }
    this.forgetIfDone(st);
  }

  private forgetIfDone(st: StreamState<T>): void {
    if (st.sides[0].state === 'closed' && st.sides[1].state === 'closed') this.streams.delete(st.id);
  }
}
