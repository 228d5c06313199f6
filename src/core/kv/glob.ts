/**
 * Redis's glob (KEYS, SCAN MATCH) over byte strings held as latin1 strings:
 * `*` any run, `?` one byte, `[abc]`, `[^a]`, `[a-z]` classes, `\x` the byte x.
 * Iterative with one backtrack point for `*`, so a hostile pattern costs
 * O(pattern × subject), never exponential time or stack.
 */
export function globMatch(pattern: string, subject: string): boolean {
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < subject.length) {
    if (p < pattern.length) {
      const c = pattern[p]!;
      if (c === '*') {
        starP = p++;
        starS = s;
        continue;
      }
      if (c === '?') {
        p++;
        s++;
        continue;
      }
      if (c === '[') {
        const cls = matchClass(pattern, p, subject.charCodeAt(s));
        if (cls.matched) {
          p = cls.next;
          s++;
          continue;
        }
      } else {
        const literal = c === '\\' && p + 1 < pattern.length ? pattern[p + 1]! : c;
        const width = c === '\\' && p + 1 < pattern.length ? 2 : 1;
        if (literal === subject[s]) {
          p += width;
          s++;
          continue;
        }
      }
    }
    if (starP < 0) return false;
    p = starP + 1;
    s = ++starS;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** Matches `code` against the class opening at pattern[start] === '['; `next` is the index after its ']'. */
function matchClass(pattern: string, start: number, code: number): { matched: boolean; next: number } {
  let p = start + 1;
  const negate = pattern[p] === '^';
  if (negate) p++;
  let matched = false;
  while (p < pattern.length && pattern[p] !== ']') {
    if (pattern[p] === '\\' && p + 1 < pattern.length) {
      if (pattern.charCodeAt(p + 1) === code) matched = true;
      p += 2;
    } else if (pattern[p + 1] === '-' && p + 2 < pattern.length && pattern[p + 2] !== ']') {
      let lo = pattern.charCodeAt(p);
      let hi = pattern.charCodeAt(p + 2);
      if (lo > hi) [lo, hi] = [hi, lo];
      if (code >= lo && code <= hi) matched = true;
      p += 3;
    } else {
      if (pattern.charCodeAt(p) === code) matched = true;
      p++;
    }
  }
  // An unclosed class matches up to the end of the pattern, as in Redis.
  return { matched: negate ? !matched : matched, next: Math.min(p + 1, pattern.length) };
}
