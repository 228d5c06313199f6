/**
 * serf agents (Debian's `serf` package) in lab hosts, the reference system of
 * the membership bench.
 *
 * Discovery is serf's own mDNS (`-discover`), not a `-join` list. hashicorp/mdns
 * needs an IPv6 socket on the interface (without one the agent panics in
 * `mdns.(*client).setInterface`), and the lab disables IPv6 on eth0, so
 * enableMdns() turns IPv6 back on for eth0 with router solicitations and DAD
 * off (no idle IPv6 chatter); the kernel then routes ff00::/8 to eth0 itself.
 *
 * Timing sources, both kept:
 *  - serf's log lines `serf: EventMemberJoin/EventMemberFailed: NAME ADDR`,
 *    written when serf's member table changes, stamped with their arrival time
 *    here (serf's own log timestamps have 1 s resolution);
 *  - an event handler that appends `date +%s%N`, the event and the members on
 *    stdin to a file per agent: what a user's script sees. The agent coalesces
 *    member events (1 s quiet period, at most 3 s), so these come ~1 s later.
 */
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { debVersion, ensureDebianPackages } from './debian.js';
import type { Lab } from '../../test/helpers/lab.js';
import { onLines, running } from './lines.js';

export const SERF_PORT = 7946;
const DISCOVER_NAME = 'gvbench';

export type SerfEventKind = 'join' | 'failed' | 'leave' | 'suspect' | 'start' | 'user';

export interface SerfEvent {
  readonly kind: SerfEventKind;
  readonly member: string;
  /** Arrival time of the log line in this process (epoch ms). */
  readonly at: number;
}

export interface HandlerEvent {
  /** `date +%s%N` at the start of the handler, in epoch ms (fractional). */
  readonly at: number;
  readonly event: string;
  readonly members: string[];
}

const PATTERNS: [SerfEventKind, RegExp][] = [
  ['join', /serf: EventMemberJoin: (\S+)/],
  ['failed', /serf: EventMemberFailed: (\S+)/],
  ['leave', /serf: EventMemberLeave: (\S+)/],
  ['suspect', /memberlist: Suspect (\S+) has failed/],
  ['start', /agent: Serf agent starting/],
  // The agent's event loop logs every event it takes from serf, before it runs any handler.
  ['user', /agent: Received event: user-event: (\S+)/],
];

export class SerfAgent {
  readonly events: SerfEvent[] = [];
  readonly errors: string[] = [];
  /** User events by name: the arrival time of the agent's first 'Received event: user-event' line. */
  readonly userEvents = new Map<string, number>();

  constructor(
    readonly hostIndex: number,
    readonly name: string,
    readonly proc: ChildProcess,
    readonly handlerFile: string,
  ) {
    onLines(proc, (line, at) => {
      for (const [kind, re] of PATTERNS) {
        const m = re.exec(line);
        if (m) {
          if (kind === 'user') {
            // Indexed, not listed: the gossip bench sends thousands of them.
            if (!this.userEvents.has(m[1]!)) this.userEvents.set(m[1]!, at);
            return;
          }
          this.events.push({ kind, member: m[1] ?? name, at });
          return;
        }
      }
      if (/\[ERR\]|panic/.test(line) && this.errors.length < 20) this.errors.push(line.trim());
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return running(this.proc);
  }

  get startedAt(): number | undefined {
    return this.events.find((e) => e.kind === 'start')?.at;
  }

  /** When this agent's member table (joins minus failures/leaves) first held n members. */
  fullAt(n: number): number | undefined {
    const members = new Set<string>();
    for (const e of this.events) {
      if (e.kind === 'join') members.add(e.member);
      else if (e.kind === 'failed' || e.kind === 'leave') members.delete(e.member);
      if (members.size >= n) return e.at;
    }
    return undefined;
  }

  firstAbout(kind: SerfEventKind, member: string, sinceMs: number): number | undefined {
    return this.events.find((e) => e.kind === kind && e.member === member && e.at >= sinceMs)?.at;
  }

  between(kind: SerfEventKind, fromMs: number, toMs: number): SerfEvent[] {
    return this.events.filter((e) => e.kind === kind && e.at >= fromMs && e.at <= toMs);
  }

  /** The event handler's record, oldest first. */
  handlerEvents(): HandlerEvent[] {
    if (!existsSync(this.handlerFile)) return [];
    const out: HandlerEvent[] = [];
    let cur: HandlerEvent | undefined;
    for (const line of readFileSync(this.handlerFile, 'utf8').split('\n')) {
      const m = /^T (\d+) (\S+)$/.exec(line);
      if (m) {
        cur = { at: Number(BigInt(m[1]!) / 1000n) / 1000, event: m[2]!, members: [] };
        out.push(cur);
      } else if (cur && line.trim() !== '') {
        cur.members.push(line.split('\t')[0]!.trim());
      }
    }
    return out;
  }

  /** Handler view: when the members delivered by member-join (minus failed/leave) first reached n. */
  handlerFullAt(n: number): number | undefined {
    const members = new Set<string>();
    for (const e of this.handlerEvents()) {
      for (const m of e.members) {
        if (e.event === 'member-join') members.add(m);
        else if (e.event === 'member-failed' || e.event === 'member-leave') members.delete(m);
      }
      if (members.size >= n) return e.at;
    }
    return undefined;
  }

  handlerFirst(event: string, member: string, sinceMs: number): number | undefined {
    return this.handlerEvents().find((e) => e.event === event && e.at >= sinceMs && e.members.includes(member))?.at;
  }

  /** The user-event handler's record (see writeUserEventHandlerScript): name → first `date +%s%N` in epoch ms. */
  userHandlerTimes(): Map<string, number> {
    const out = new Map<string, number>();
    if (!existsSync(this.handlerFile)) return out;
    for (const line of readFileSync(this.handlerFile, 'utf8').split('\n')) {
      const m = /^U (\d+) (\S+)$/.exec(line);
      if (m && !out.has(m[2]!)) out.set(m[2]!, Number(BigInt(m[1]!) / 1000n) / 1000);
    }
    return out;
  }
}

/** serf's version; installs Debian's package first when serf is missing (no service is started). */
export function ensureSerf(log: (s: string) => void): { version: string; debVersion: string } {
  ensureDebianPackages('serf', ['serf'], log);
  const version = execFileSync('serf', ['version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  return { version, debVersion: debVersion('serf') };
}

/** IPv6 on host i's eth0 (link-local only, no RS, no DAD) so serf's mDNS discovery works there. */
export async function enableMdns(lab: Lab, i: number): Promise<void> {
  await lab.exec(i, [
    'sysctl', '-q', '-w',
    'net.ipv6.conf.eth0.accept_ra=0',
    'net.ipv6.conf.eth0.router_solicitations=0',
    'net.ipv6.conf.eth0.dad_transmits=0',
    'net.ipv6.conf.eth0.accept_dad=0',
    'net.ipv6.conf.eth0.disable_ipv6=0',
  ]);
  const routes = await lab.exec(i, ['ip', '-6', 'route', 'show', 'table', 'local']);
  if (!/multicast ff00::\/8 dev eth0/.test(routes)) {
    await lab.exec(i, ['ip', '-6', 'route', 'add', 'multicast', 'ff00::/8', 'dev', 'eth0', 'table', 'local']);
  }
}

/** The event handler script: `handler.sh FILE` appends "T <ns> <event>" and the members from stdin. */
export function writeHandlerScript(path: string): string {
  writeFileSync(path, '#!/bin/sh\n{ printf \'T %s %s\\n\' "$(date +%s%N)" "$SERF_EVENT"; cat; } >> "$1"\n', { mode: 0o755 });
  return path;
}

/**
 * The user-event handler script: `handler.sh FILE` appends "U <ns> <event name>", then the
 * payload from stdin and a newline (the payload never starts with "U ").
 */
export function writeUserEventHandlerScript(path: string): string {
  writeFileSync(path, '#!/bin/sh\n{ printf \'U %s %s\\n\' "$(date +%s%N)" "$SERF_USER_EVENT"; cat; echo; } >> "$1"\n', { mode: 0o755 });
  return path;
}

export interface SerfStartOptions {
  /** The events the handler runs for (serf's -event-handler filter); default member-join,member-failed,member-leave. */
  readonly handlerEvents?: string;
}

export function startSerf(lab: Lab, hostIndex: number, name: string, handlerScript: string, handlerFile: string, opts: SerfStartOptions = {}): SerfAgent {
  const ip = lab.host(hostIndex).ip;
  const proc = lab.spawn(hostIndex, [
    'serf', 'agent',
    `-node=${name}`,
    `-bind=${ip}:${SERF_PORT}`,
    '-iface=eth0',
    `-discover=${DISCOVER_NAME}`,
    '-rpc-addr=127.0.0.1:7373',
    '-log-level=info',
    `-event-handler=${opts.handlerEvents ?? 'member-join,member-failed,member-leave'}=${handlerScript} ${handlerFile}`,
  ]);
  if (proc.pid === undefined) throw new Error(`could not start serf in ${lab.host(hostIndex).ns}`);
  return new SerfAgent(hostIndex, name, proc, handlerFile);
}
