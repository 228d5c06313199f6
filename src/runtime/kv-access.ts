/**
 * What the interfaces of the cache (the client protocol, the RESP port)
 * need from a node's cache. Every write resolves only after it is committed
 * to the node's store (it survives a kill -9 of the node); reads see the
 * node's own acknowledged writes at once.
 */
export type KvCondition = 'always' | 'if_absent' | 'if_present';

export interface KvPutOptions {
  /** Milliseconds until the value reads as absent; undefined or 0: never. */
  readonly ttlMs?: number;
  readonly condition?: KvCondition;
}

export interface KvLimits {
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
}

export const KV_LIMITS_DEFAULT: KvLimits = Object.freeze({
  keyBytesMax: 8 * 1024,
  valueBytesMax: 1024 * 1024,
});

export type KvErrorCode = 'too_large' | 'empty_key' | 'busy' | 'unavailable';

/** A refused cache operation; `message` is one line for a person. */
export class KvError extends Error {
  override name = 'KvError';
  constructor(
    readonly code: KvErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface KvAccess {
  readonly limits: KvLimits;
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /**
   * The value `get` would resolve, when the cache can tell at once (a full
   * replica); absent when reads may need another node (a partitioned cache).
   */
  getNow?(key: Uint8Array): Uint8Array | undefined;
  getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]>;
  /** Resolves true when written, false when the condition did not hold. Rejects with KvError. */
  put(key: Uint8Array, value: Uint8Array, options?: KvPutOptions): Promise<boolean>;
  /** All pairs in one commit (MSET). */
  putMany(pairs: readonly (readonly [Uint8Array, Uint8Array])[]): Promise<void>;
  /** Resolves the number of keys that existed (and now are deleted). */
  del(keys: readonly Uint8Array[]): Promise<number>;
  /**
   * Live keys in bytewise order strictly after `after`, matching the Redis
   * glob `pattern` when given, at most `limit` of them.
   */
  scan(after: Uint8Array | undefined, limit: number, pattern?: Uint8Array): Promise<{ keys: Uint8Array[]; more: boolean }>;
  /** Live keys on this node (DBSIZE). */
  size(): number;
  /** Figures for INFO: name -> value. */
  info(): Record<string, string | number>;
}
