/** Per-host traffic counters and per-process memory. */
import { readFile } from 'node:fs/promises';
import type { Lab } from '../../test/helpers/lab.js';

export interface TxCounters {
  readonly bytes: number;
  readonly packets: number;
}

/** eth0's transmit counters in host i: every frame the host sent, Ethernet header included, any protocol. */
export async function txCounters(lab: Lab, i: number): Promise<TxCounters> {
  const out = await lab.exec(i, ['cat', '/sys/class/net/eth0/statistics/tx_bytes', '/sys/class/net/eth0/statistics/tx_packets']);
  const [bytes, packets] = out.trim().split('\n').map(Number);
  return { bytes: bytes!, packets: packets! };
}

/** VmRSS of a process in MiB, or null when it is gone. */
export async function rssMiB(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used so far, in seconds, or null when it is gone. */
export async function cpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the whole line (1-based): 12 and 13 here; clock ticks of 1/100 s.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}
