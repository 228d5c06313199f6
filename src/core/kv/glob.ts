// Redis's glob (util.c stringmatchlen) over bytes: `*`, `?`, `[abc]`,
// `[^a]`, `[a-z]` (ends in either order), `\x` escapes; an unterminated `[`
// is a class up to the end of the pattern. Redis recurses at every `*`;
// here a `*` is remembered and retried one byte later (classic two-pointer
// matching), which gives the same answers in O(pattern x subject) time, so
// a hostile KEYS pattern like `a*a*a*a*b` cannot burn the CPU.
// One deliberate difference: `*` matches the empty subject (Redis answers
// `KEYS *` through a shortcut anyway).

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BACKSLASH = 0x5c;
const CARET = 0x5e;
const DASH = 0x2d;

/** Whether `subject` matches the Redis glob `pattern`; `nocase` folds ASCII letters (CONFIG GET does). */
export function globMatch(pattern: Uint8Array, subject: Uint8Array, nocase = false): boolean {
  const patternLen = pattern.length;
  const subjectLen = subject.length;
  let p = 0;
  let s = 0;
  let starP = -1; // index just after the last `*` seen
  let starS = 0; // subject index that `*` was last tried up to
  while (s < subjectLen) {
    if (p < patternLen) {
      if (pattern[p] === STAR) {
        while (p < patternLen && pattern[p] === STAR) p++;
        if (p === patternLen) return true;
        starP = p;
        starS = s;
        continue;
      }
      const next = matchOne(pattern, p, subject[s]!, nocase);
      if (next >= 0) {
        p = next;
        s++;
        continue;
      }
    }
    if (starP < 0) return false;
    starS++;
    s = starS;
    p = starP;
  }
  while (p < patternLen && pattern[p] === STAR) p++;
  return p === patternLen;
}

/** Matches one pattern token at `p` against byte `c`: the index after the token, or -1. */
function matchOne(pattern: Uint8Array, p: number, c: number, nocase: boolean): number {
  const end = pattern.length;
  const t = pattern[p]!;
  if (t === QUESTION) return p + 1;
  if (t === OPEN) return matchClass(pattern, p + 1, c, nocase);
  let literal = t;
  if (t === BACKSLASH && p + 1 < end) literal = pattern[++p]!;
  return sameByte(literal, c, nocase) ? p + 1 : -1;
}

/** A `[...]` class starting after `[`; follows Redis's loop, including its unterminated-class rule. */
function matchClass(pattern: Uint8Array, p: number, c: number, nocase: boolean): number {
  const end = pattern.length;
  const not = p < end && pattern[p] === CARET;
  if (not) p++;
  let match = false;
  for (;;) {
    if (p >= end) break; // unterminated: the class ends with the pattern
    const t = pattern[p]!;
    if (t === BACKSLASH && end - p >= 2) {
      p++;
      if (sameByte(pattern[p]!, c, nocase)) match = true;
    } else if (t === CLOSE) {
      p++;
      break;
    } else if (end - p >= 3 && pattern[p + 1] === DASH) {
      let lo = pattern[p]!;
      let hi = pattern[p + 2]!;
      if (lo > hi) [lo, hi] = [hi, lo];
      let x = c;
      if (nocase) {
        lo = lower(lo);
        hi = lower(hi);
        x = lower(x);
      }
      if (x >= lo && x <= hi) match = true;
      p += 2;
    } else if (sameByte(t, c, nocase)) {
      match = true;
    }
    p++;
  }
  return match !== not ? p : -1;
}

function sameByte(a: number, b: number, nocase: boolean): boolean {
  return a === b || (nocase && lower(a) === lower(b));
}

function lower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
}

/** The same over byte strings held as latin1 JavaScript strings (the cache's keys). */
export function globMatchLatin1(pattern: string, subject: string): boolean {
  return globMatch(latin1Bytes(pattern), latin1Bytes(subject));
}

function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}
