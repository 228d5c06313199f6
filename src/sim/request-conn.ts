import type { Scheduler } from './scheduler.js';
import type { StreamEnd } from './streams.js';

/**
 * One handshaken simulated connection with request/answer bookkeeping, as
 * src/runtime/connection.ts does it: frames out, requests numbered and
 * answered by id, each with its own timeout, failed when the connection
 * closes first. Shared by the overlay links (kv-links.ts) and the request
 * connections of a partitioned cache (kv-partition-rpc.ts).
 */
export type Unnumbered<T> = T extends { readonly id: number } ? Omit<T, 'id'> : never;

interface Waiting<Res> {
  readonly answer: (frame: Res) => void;
  readonly fail: () => void;
  readonly timer: { cancel(): void };
}

export class SimRequestConn<F, Req extends F & { readonly id: number }, Res extends F & { readonly id: number }> {
  private readonly waiting = new Map<number, Waiting<Res>>();
  private nextId = 1;
  private closedNow = false;

  constructor(
    private readonly end: StreamEnd<F>,
    private readonly scheduler: Scheduler,
  ) {}

  get peer(): string {
    return this.end.peer;
  }

  get isClosed(): boolean {
    return this.closedNow || !this.end.open;
  }

  send(frame: F): boolean {
    return !this.isClosed && this.end.send(frame);
  }

  /** `answer` or `fail` is called once: fail on a timeout or when the connection closes first. */
  request(init: Unnumbered<Req>, timeoutMs: number, answer: (frame: Res) => void, fail: () => void): void {
    if (this.isClosed) return this.later(fail);
    const id = this.nextId++;
    const timer = this.scheduler.after(timeoutMs, () => {
      if (this.waiting.delete(id)) fail();
    });
    this.waiting.set(id, { answer, fail, timer });
    this.send({ ...init, id } as unknown as Req);
  }

  reply(request: Req, frame: Unnumbered<Res>): boolean {
    return this.send({ ...frame, id: request.id } as unknown as Res);
  }

  /** A response frame: true when it answered one of our requests. */
  take(frame: Res): boolean {
    const w = this.waiting.get(frame.id);
    if (!w) return false;
    this.waiting.delete(frame.id);
    w.timer.cancel();
    w.answer(frame);
    return true;
  }

  /** Closes (gracefully when the stream is still up) and fails every open request. */
  close(): void {
    if (this.closedNow) return;
    this.closedNow = true;
    this.end.close();
    for (const w of this.waiting.values()) {
      w.timer.cancel();
      this.later(w.fail);
    }
    this.waiting.clear();
  }

  // A promise rejected by close() runs its handler after the current task, as a
  // microtask does: the code that closed the connection finishes first.
  private later(run: () => void): void {
    this.scheduler.after(0, run);
  }
}
