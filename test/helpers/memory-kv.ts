// A Map-based KvAccess for protocol tests of the RESP port (not the cache):
// honours ttl, NX/XX, the limits and the error codes, and lets a test delay
// any operation so that promises settle out of order.
import { KV_LIMITS_DEFAULT, KvError } from '../../src/runtime/kv-access.js';
import type { KvAccess, KvLimits, KvPutOptions } from '../../src/runtime/kv-access.js';
import { globMatch } from '../../src/core/kv/glob.js';

export type KvOp = 'get' | 'getMany' | 'put' | 'putMany' | 'del' | 'scan';

export interface MemoryKvOptions {
  readonly limits?: KvLimits;
  /** Milliseconds to hold an operation before it settles; undefined or 0: settle at once. */
  readonly delayMs?: (op: KvOp, key: Uint8Array | undefined) => number | undefined;
  /** An operation settles only once this promise resolves (a gate the test opens). */
  readonly hold?: (op: KvOp, key: Uint8Array | undefined) => Promise<void> | undefined;
  /** Makes an operation fail with this error instead. */
  readonly failWith?: (op: KvOp, key: Uint8Array | undefined) => KvError | undefined;
  readonly nowMs?: () => number;
  /** Keep `calls` (off by default: a benchmark makes millions). */
  readonly recordCalls?: boolean;
  /** Also offer `getNow` (KvSyncReads), as the node's cache does. */
  readonly syncReads?: boolean;
}

interface Entry {
  readonly value: Uint8Array;
  readonly expiresAtMs: number;
}

const keyOf = (b: Uint8Array) => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)).toString('latin1');

export class MemoryKv implements KvAccess {
  readonly limits: KvLimits;
  readonly entries = new Map<string, Entry>();
  /** Every operation in the order it was called (with recordCalls), for order assertions. */
  readonly calls: { op: KvOp; key: string | undefined }[] = [];

  /** Present with the syncReads option: what get() would resolve, at once. */
  readonly getNow?: (key: Uint8Array) => Uint8Array | undefined;

  constructor(private readonly options: MemoryKvOptions = {}) {
    this.limits = options.limits ?? KV_LIMITS_DEFAULT;
    if (options.syncReads) this.getNow = (key) => this.read(key);
  }

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.run('get', key, () => this.read(key));
  }

  getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return this.run('getMany', keys[0], () => keys.map((k) => this.read(k)));
  }

  put(key: Uint8Array, value: Uint8Array, options: KvPutOptions = {}): Promise<boolean> {
    return this.run('put', key, () => {
      this.check(key, value);
      const k = keyOf(key);
      const condition = options.condition ?? 'always';
      if (condition !== 'always') {
        const present = this.readKey(k) !== undefined;
        if ((condition === 'if_absent') === present) return false;
      }
      const ttlMs = options.ttlMs ?? 0;
      this.entries.set(k, { value, expiresAtMs: ttlMs > 0 ? this.now() + ttlMs : 0 });
      return true;
    });
  }

  putMany(pairs: readonly (readonly [Uint8Array, Uint8Array])[]): Promise<void> {
    return this.run('putMany', pairs[0]?.[0], () => {
      for (const [k, v] of pairs) this.check(k, v);
      for (const [k, v] of pairs) this.entries.set(keyOf(k), { value: v, expiresAtMs: 0 });
    });
  }

  del(keys: readonly Uint8Array[]): Promise<number> {
    return this.run('del', keys[0], () => {
      let n = 0;
      for (const k of keys) {
        if (this.read(k) !== undefined) n += 1;
        this.entries.delete(keyOf(k));
      }
      return n;
    });
  }

  scan(after: Uint8Array | undefined, limit: number, pattern?: Uint8Array): Promise<{ keys: Uint8Array[]; more: boolean }> {
    return this.run('scan', after, () => {
      const from = after === undefined ? undefined : keyOf(after);
      // latin1 strings compare code unit by code unit, i.e. bytewise.
      const live = [...this.entries.keys()].filter((k) => this.readKey(k) !== undefined).sort();
      const keys: Uint8Array[] = [];
      for (const k of live) {
        if (from !== undefined && k <= from) continue;
        const bytes = Buffer.from(k, 'latin1');
        if (pattern && !globMatch(pattern, bytes)) continue;
        if (keys.length === limit) return { keys, more: true };
        keys.push(bytes);
      }
      return { keys, more: false };
    });
  }

  size(): number {
    let n = 0;
    for (const k of [...this.entries.keys()]) if (this.readKey(k) !== undefined) n += 1;
    return n;
  }

  info(): Record<string, string | number> {
    return { fake_entries: this.entries.size };
  }

  private now(): number {
    return this.options.nowMs?.() ?? Date.now();
  }

  private read(key: Uint8Array): Uint8Array | undefined {
    return this.readKey(keyOf(key));
  }

  private readKey(k: string): Uint8Array | undefined {
    const e = this.entries.get(k);
    if (!e) return undefined;
    if (e.expiresAtMs > 0 && e.expiresAtMs <= this.now()) {
      this.entries.delete(k);
      return undefined;
    }
    return e.value;
  }

  private check(key: Uint8Array, value: Uint8Array): void {
    if (key.length === 0) throw new KvError('empty_key', 'the key is empty');
    if (key.length > this.limits.keyBytesMax) throw new KvError('too_large', `key of ${key.length} bytes; the limit is ${this.limits.keyBytesMax} bytes`);
    if (value.length > this.limits.valueBytesMax) throw new KvError('too_large', `value of ${value.length} bytes; the limit is ${this.limits.valueBytesMax} bytes`);
  }

  /** Runs `fn` now (so the state changes in call order) and settles after the op's delay. */
  private run<T>(op: KvOp, key: Uint8Array | undefined, fn: () => T): Promise<T> {
    if (this.options.recordCalls) this.calls.push({ op, key: key === undefined ? undefined : keyOf(key) });
    if (!this.options.failWith && !this.options.delayMs && !this.options.hold) {
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const failure = this.options.failWith?.(op, key);
    let outcome: { ok: true; value: T } | { ok: false; err: unknown };
    if (failure) outcome = { ok: false, err: failure };
    else {
      try {
        outcome = { ok: true, value: fn() };
      } catch (err) {
        outcome = { ok: false, err };
      }
    }
    const delayMs = this.options.delayMs?.(op, key) ?? 0;
    const gate = this.options.hold?.(op, key);
    const settle = (resolve: (v: T) => void, reject: (e: unknown) => void) => (outcome.ok ? resolve(outcome.value) : reject(outcome.err));
    const settled = delayMs <= 0 ? new Promise<T>(settle) : new Promise<T>((resolve, reject) => setTimeout(() => settle(resolve, reject), delayMs));
    return gate ? gate.then(() => settled) : settled;
  }
}
