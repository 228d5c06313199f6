/**
 * Where a node's CPU went: a V8 .cpuprofile (node --cpu-prof) summed into a
 * few buckets by each sample's stack (first matching rule wins), plus the
 * functions with the most self time.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: number[];
}

interface Profile {
  readonly nodes: ProfNode[];
  readonly samples: number[];
  readonly timeDeltas: number[];
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly buckets: { name: string; ms: number; pct: number }[];
  readonly topSelf: { fn: string; ms: number; pct: number }[];
}

type Rule = [string, (stack: readonly CallFrame[]) => boolean];

const has = (stack: readonly CallFrame[], pred: (f: CallFrame) => boolean): boolean => stack.some(pred);
const fileIs = (f: CallFrame, tail: string): boolean => f.url.endsWith(tail);
const isWrite = (f: CallFrame): boolean => ['writeBuffer', 'writev', 'writeUtf8String', 'writeLatin1String'].includes(f.functionName) && f.url === '';

/** stack[0] is the leaf. */
const RULES: Rule[] = [
  ['idle', (s) => s[0]!.functionName === '(idle)'],
  ['garbage collection', (s) => s[0]!.functionName === '(garbage collector)'],
  ['(program: V8/native outside JS)', (s) => s[0]!.functionName === '(program)'],
  ['start-up (module loading, cache restore)', (s) => has(s, (f) => (f.functionName === 'restore' && fileIs(f, 'kv/replica.js')) || f.url.startsWith('node:internal/modules') || f.functionName === 'compileSourceTextModule')],
  ['SQLite commit (group commit transaction)', (s) => has(s, (f) => f.functionName === 'sqliteTransaction' || f.url.includes('better-sqlite3'))],
  ['socket writes: flood to peers', (s) => isWrite(s[0]!) && has(s, (f) => fileIs(f, 'runtime/kv-service.js'))],
  ['socket writes: RESP replies', (s) => isWrite(s[0]!) && has(s, (f) => f.url.includes('api/resp/'))],
  ['socket writes: other', (s) => isWrite(s[0]!)],
  ['flood encoding (protobuf)', (s) => has(s, (f) => f.functionName === 'flood' || f.functionName === 'encodeBatch')],
  ['RESP parsing', (s) => has(s, (f) => fileIs(f, 'resp/decoder.js'))],
  ['RESP encoding', (s) => has(s, (f) => fileIs(f, 'resp/encoder.js'))],
  ['applying peer changes', (s) => has(s, (f) => f.functionName === 'receive' && fileIs(f, 'runtime/kv-service.js'))],
  ['RESP commands and cache', (s) => has(s, (f) => f.url.includes('api/resp/') || f.url.includes('core/kv/') || fileIs(f, 'runtime/kv-service.js'))],
  ['socket reads and other Node internals', (s) => has(s, (f) => f.url.startsWith('node:'))],
];

export function summarizeProfile(path: string, top = 12): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const timeBy = new Map<number, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    timeBy.set(id, (timeBy.get(id) ?? 0) + dt);
    total += dt;
  });
  const buckets = new Map<string, number>();
  const self = new Map<string, number>();
  for (const [id, t] of timeBy) {
    const stack: CallFrame[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) stack.push(byId.get(cur)!.callFrame);
    const rule = RULES.find(([, pred]) => pred(stack));
    const name = rule ? rule[0] : 'other';
    buckets.set(name, (buckets.get(name) ?? 0) + t);
    const f = stack[0]!;
    const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + t);
  }
  const pct = (t: number): number => Math.round((1000 * t) / Math.max(1, total)) / 10;
  return {
    totalMs: Math.round(total / 1000),
    buckets: [...buckets].sort((a, b) => b[1] - a[1]).map(([name, t]) => ({ name, ms: Math.round(t / 1000), pct: pct(t) })),
    topSelf: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, t]) => ({ fn, ms: Math.round(t / 1000), pct: pct(t) })),
  };
}
