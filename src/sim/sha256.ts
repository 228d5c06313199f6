import { createHash } from 'node:crypto';
import type { Sha256 } from '../core/gossip/message.js';

/** The SHA-256 the gossip core takes by injection, from node:crypto (as the runtime uses). */
export const sha256: Sha256 = (bytes) => new Uint8Array(createHash('sha256').update(bytes).digest());
