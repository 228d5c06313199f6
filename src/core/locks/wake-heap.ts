/**
 * Wake-up times of keys: a binary min-heap of (atMs, key). Entries are not
 * removed when a key's time moves; the owner skips entries that no longer
 * match (lazy deletion) and calls `rebuild` if stale entries pile up.
 */
export interface WakeEntry {
  readonly atMs: number;
  readonly key: string;
}

export class WakeHeap {
  private heap: WakeEntry[] = [];

  get size(): number {
    return this.heap.length;
  }

  peekMs(): number | undefined {
    return this.heap[0]?.atMs;
  }

  push(entry: WakeEntry): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.atMs <= entry.atMs) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = entry;
  }

  /** The earliest entry due at or before nowMs, removed; undefined when none is due. */
  popDue(nowMs: number): WakeEntry | undefined {
    const h = this.heap;
    const top = h[0];
    if (top === undefined || top.atMs > nowMs) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= h.length) break;
        const right = left + 1;
        const child = right < h.length && h[right]!.atMs < h[left]!.atMs ? right : left;
        if (h[child]!.atMs >= last.atMs) break;
        h[i] = h[child]!;
        i = child;
      }
      h[i] = last;
    }
    return top;
  }

  rebuild(entries: readonly WakeEntry[]): void {
    this.heap = [];
    for (const e of entries) this.push(e);
  }
}
