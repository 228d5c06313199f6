/**
 * Per-process scheduler figures: CPU time of the whole process (utime +
 * stime of every thread, /proc/PID/stat) and, for its main thread (the one
 * running JavaScript in Node, the event loop in redis-server), the time it
 * ran and the time it was runnable but waited for a CPU (/proc/PID/schedstat).
 * A large wait says the process was starved by other work on the machine,
 * not that it was slow.
 */
import { readFile } from 'node:fs/promises';

export interface ProcSample {
  /** utime + stime of all threads, seconds. */
  readonly cpuS: number;
  /** Main thread: on a CPU / runnable but waiting, seconds. */
  readonly runS: number;
  readonly waitS: number;
}

export async function procSample(pid: number): Promise<ProcSample | null> {
  try {
    const [stat, sched] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/schedstat`, 'utf8')]);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [run, wait] = sched.trim().split(/\s+/).map(Number);
    return { cpuS: (Number(fields[11]) + Number(fields[12])) / 100, runS: run! / 1e9, waitS: wait! / 1e9 };
  } catch {
    return null;
  }
}

export interface ProcDelta {
  readonly cpuS: number | null;
  readonly runS: number | null;
  readonly waitS: number | null;
}

export function procDelta(a: ProcSample | null, b: ProcSample | null): ProcDelta {
  if (!a || !b) return { cpuS: null, runS: null, waitS: null };
  const r = (x: number): number => Math.round(x * 1000) / 1000;
  return { cpuS: r(b.cpuS - a.cpuS), runS: r(b.runS - a.runS), waitS: r(b.waitS - a.waitS) };
}
