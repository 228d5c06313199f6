import type { GossipMessage } from '../core/gossip/message.js';
import type { SimRandom } from './random.js';

/**
 * A copy of `m` damaged in transit (or forged by a faulty peer): its id no
 * longer matches its content, or its text is empty. The path is advisory and
 * not covered by the id, so it is never what changes here. Every such copy
 * must be refused by the receiving core.
 */
export function corruptCopy(rng: SimRandom, m: GossipMessage): GossipMessage {
  switch (rng.int(0, 5)) {
    case 0:
      return { ...m, text: `${m.text}~` };
    case 1:
      return { ...m, text: '' };
    case 2:
      return { ...m, seq: m.seq + 1 };
    case 3:
      return { ...m, incarnation: m.incarnation + 1 };
    case 4:
      return { ...m, origin: `${m.origin}x` };
    default: {
      const last = m.id[m.id.length - 1] === 'A' ? 'B' : 'A';
      return { ...m, id: `${m.id.slice(0, -1)}${last}` };
    }
  }
}
