import { LockError } from '../core/locks/errors.js';
import { LOCK_TTL_DEFAULT_MS } from '../core/locks/types.js';
import type { Envelope } from '../wire/index.js';
import type { FramedConnection } from './connection.js';
import type { LockService } from './lock-service.js';

/**
 * The client requests of the lock service (LockAcquireRequest,
 * LockReleaseRequest), answered on the client's connection; true if `env`
 * was one. ttl_ms 0 means the default ttl (LOCK_TTL_DEFAULT_MS). A refused
 * request is answered with an Error frame carrying the LockError's code
 * (bad_key, bad_ttl, bad_wait: the caller's fault; no_quorum,
 * busy, stopped: the node's). A client that goes away while it waits gives
 * up its place; a lock granted to a client that is gone is released.
 */
export function handleLockClientRequest(locks: LockService, env: Envelope, conn: FramedConnection): boolean {
  const fail = (err: unknown): void => {
    const code = err instanceof LockError ? err.code : 'internal';
    conn.reply(env, { body: { case: 'error', value: { code, message: (err as Error).message } } });
  };
  switch (env.body.case) {
    case 'lockAcquireRequest': {
      const { key, ttlMs, waitMs } = env.body.value;
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      conn.once('close', onClose);
      locks.acquire(key, ttlMs === 0n ? LOCK_TTL_DEFAULT_MS : safeMs(ttlMs), safeMs(waitMs), gone.signal).then(
        (r) => {
          conn.off('close', onClose);
          if (r.acquired && conn.isClosed) {
            void locks.release(key, r.token).catch(() => {});
            return;
          }
          conn.reply(env, { body: { case: 'lockAcquireResponse', value: { acquired: r.acquired, token: r.token } } });
        },
        (err: unknown) => {
          conn.off('close', onClose);
          fail(err);
        },
      );
      return true;
    }
    case 'lockReleaseRequest': {
      const { key, token } = env.body.value;
      locks.release(key, token).then(
        (released) => conn.reply(env, { body: { case: 'lockReleaseResponse', value: { released } } }),
        fail,
      );
      return true;
    }
    default:
      return false;
  }
}

/** uint64 ms from the wire; beyond a safe integer it becomes -1, which the service refuses as out of range. */
function safeMs(ms: bigint): number {
  return ms <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ms) : -1;
}
