/**
 * Errors of the lock area. A LockError is the caller's fault (a bound
 * broken: key, ttl, wait) or a limit of this node (busy, no quorum,
 * stopped); `code` is stable and each is documented here:
 *   bad_key    the key is empty or longer than keyBytesMax
 *   bad_ttl    ttlMs is not a whole number of ms within [ttlMsMin, ttlMsMax]
 *   bad_wait   waitMs is not a whole number of ms within [0, waitMsMax]
 *   no_quorum  the quorum set is empty (or smaller than the configured minimum)
 *   busy       this node has attemptsMax acquires in flight
 *   stopped    the lock service is not running
 */
export type LockErrorCode = 'bad_key' | 'bad_ttl' | 'bad_wait' | 'no_quorum' | 'busy' | 'stopped';

/** A refused lock operation (the caller broke a bound, or the node cannot take more). */
export class LockError extends Error {
  override name = 'LockError';
  constructor(readonly code: LockErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

