/**
 * Steal time of this virtual machine: the share of CPU time the hypervisor
 * gave to other guests while ours wanted to run (the 8th figure of the `cpu`
 * line of /proc/stat). It slows every process here alike and shows in no
 * process's own CPU time, so a bench that does not report it cannot tell a
 * slow build from a busy host (seen in session 6: 15–74 % steal for minutes).
 */
import { readFileSync } from 'node:fs';

interface CpuTicks {
  readonly steal: number;
  readonly total: number;
}

function readCpuTicks(): CpuTicks | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    return { steal: fields[7] ?? 0, total };
  } catch {
    return null;
  }
}

/** Returns a reader: each call gives the steal share (%) since the previous call (or since creation), null where /proc/stat is missing. */
export function stealMeter(): () => number | null {
  let last = readCpuTicks();
  return () => {
    const now = readCpuTicks();
    const before = last;
    last = now;
    if (!now || !before || now.total <= before.total) return null;
    return Math.round((1000 * (now.steal - before.steal)) / (now.total - before.total)) / 10;
  };
}

/** A phase list's steal shares for a results line: "0.4 / 12.0 / n/a". */
export function fmtSteal(shares: readonly (number | null)[]): string {
  return shares.map((s) => (s === null ? 'n/a' : s.toFixed(1))).join(' / ');
}
