import { createHash } from 'node:crypto';

/** The SHA-256 the gossip core takes by injection (a string is hashed as UTF-8), from node:crypto; the digest as bytes. */
export function sha256(input: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(input).digest());
}
