/** The figures table of a benchmark: grapevine, the reference system, their ratio and the goal. */
import { ratio } from './stats.js';

export interface Row {
  readonly metric: string;
  readonly ours: string;
  readonly serf: string;
  readonly ratio: string;
  readonly goal: string;
}

export interface Goal {
  readonly limit: number;
  /** How the goal reads in the table, e.g. '<= 20 ms'. */
  readonly text: string;
  /** The figure must be at least `limit` (throughput, delivery); default: at most. */
  readonly atLeast?: boolean;
  /** Strictly below / above `limit` ('< 2 s'). */
  readonly strict?: boolean;
}

export function goalMet(value: number, goal: Goal): boolean {
  if (goal.atLeast) return goal.strict ? value > goal.limit : value >= goal.limit;
  return goal.strict ? value < goal.limit : value <= goal.limit;
}

export function fmtRatio(x: number | null): string {
  return x === null ? '—' : x.toFixed(2);
}

export function row(metric: string, ours: number | null, theirs: number | null, fmt: (x: number | null) => string, goal?: Goal): Row {
  const met = goal && ours !== null ? (goalMet(ours, goal) ? ' — met' : ' — MISSED') : goal ? ' — not measured' : '';
  return { metric, ours: fmt(ours), serf: fmt(theirs), ratio: fmtRatio(ratio(ours, theirs)), goal: goal ? `${goal.text}${met}` : '' };
}

export function textTable(rs: readonly Row[], reference = 'serf'): string {
  const head: Row = { metric: 'metric', ours: 'grapevine', serf: reference, ratio: `ours/${reference}`, goal: 'goal (grapevine)' };
  const all = [head, ...rs];
  const w = (k: keyof Row): number => Math.max(...all.map((r) => r[k].length));
  const line = (r: Row): string => `${r.metric.padEnd(w('metric'))}  ${r.ours.padStart(w('ours'))}  ${r.serf.padStart(w('serf'))}  ${r.ratio.padStart(w('ratio'))}  ${r.goal}`;
  return [line(head), '-'.repeat(line(head).length), ...rs.map(line)].join('\n');
}

export function mdTable(rs: readonly Row[], reference = 'serf'): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| metric | grapevine | ${reference} | ours/${reference} | goal (grapevine) |`,
    '| --- | ---: | ---: | ---: | --- |',
    ...rs.map((r) => `| ${esc(r.metric.trim())} | ${r.ours} | ${r.serf} | ${r.ratio} | ${r.goal} |`),
  ].join('\n');
}
