/**
 * A Bloom filter over the message ids a store holds (two probes into
 * 2^23 bits, 1 MiB, allocated at the first id). Looking an id up in
 * SQLite's `message_ids` cost a B-tree descent and a native call for every
 * message stored, although almost every id is new; the filter answers "not
 * here" for those from memory. It never forgets (a purged or rolled-back id
 * may still answer "maybe", which only costs the SQLite lookup), so false
 * positives grow with the ids added since the store was opened: about 0.05 %
 * at 100,000 and 4.5 % at a million.
 */
const FILTER_BITS = 1 << 23;

export class IdFilter {
  private words: Uint32Array | undefined;

  add(id: string): void {
    const words = (this.words ??= new Uint32Array(FILTER_BITS / 32));
    const a = probe(id, 0x811c9dc5);
    const b = probe(id, 0x01000193);
    words[a >>> 5]! |= 1 << (a & 31);
    words[b >>> 5]! |= 1 << (b & 31);
  }

  /** The bits, to be stored (undefined while empty). */
  bytes(): Uint8Array | undefined {
    return this.words && new Uint8Array(this.words.buffer, this.words.byteOffset, this.words.byteLength);
  }

  /** Adds the ids of a filter saved with bytes(); false (nothing added) if the bytes are not one. */
  load(bytes: Uint8Array): boolean {
    if (bytes.byteLength !== FILTER_BITS / 8) return false;
    const words = (this.words ??= new Uint32Array(FILTER_BITS / 32));
    const saved = new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    for (let i = 0; i < words.length; i++) words[i]! |= saved[i]!;
    return true;
  }

  /** False: the id was never added. True: it may have been. */
  mightHave(id: string): boolean {
    const words = this.words;
    if (!words) return false;
    const a = probe(id, 0x811c9dc5);
    if ((words[a >>> 5]! & (1 << (a & 31))) === 0) return false;
    const b = probe(id, 0x01000193);
    return (words[b >>> 5]! & (1 << (b & 31))) !== 0;
  }
}

/** FNV-1a of the id's UTF-16 code units from `seed`, folded to a bit index. */
function probe(id: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 15)) & (FILTER_BITS - 1);
}
