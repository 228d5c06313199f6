import net from 'node:net';
import type { ProbeOutcome } from '../core/membership.js';

/**
 * Probes of suspects (DESIGN.md section 2): a TCP connection to the member's
 * port, closed as soon as it is up. The kernel completes the handshake for a
 * listening socket even while the process is frozen or starved of CPU, so an
 * answer proves the process exists; a refusal (RST) proves nothing listens
 * there any more (kill -9). No answer within the timeout (host down, link
 * cut, SYN lost) reports nothing. Connections are bounded: two per member, inFlightMax in all.
 */
export interface PortProberOptions {
  readonly timeoutMs: number;
  readonly inFlightMax: number;
  readonly onResult: (id: string, incarnation: number, outcome: ProbeOutcome) => void;
}

/** Probes of one member under way at once. */
const PROBES_PER_MEMBER_MAX = 2;

export class PortProber {
  /** Probes under way, per member id (a lost SYN waits for its timeout while the next probe goes out). */
  private readonly inFlight = new Map<string, Map<net.Socket, NodeJS.Timeout>>();
  private inFlightCount = 0;
  probesSent = 0;

  constructor(private readonly options: PortProberOptions) {}

  /** Starts a probe of member `id` unless PROBES_PER_MEMBER_MAX are under way for it (or inFlightMax in all). */
  probe(target: { id: string; incarnation: number; host: string; port: number }): void {
    const mine = this.inFlight.get(target.id) ?? new Map<net.Socket, NodeJS.Timeout>();
    if (mine.size >= PROBES_PER_MEMBER_MAX || this.inFlightCount >= this.options.inFlightMax) return;
    this.probesSent += 1;
    const socket = net.connect({ host: target.host, port: target.port });
    const finish = (outcome: ProbeOutcome | undefined): void => {
      const timer = mine.get(socket);
      if (timer === undefined) return; // finished already, or stopped
      clearTimeout(timer);
      mine.delete(socket);
      this.inFlightCount -= 1;
      if (mine.size === 0 && this.inFlight.get(target.id) === mine) this.inFlight.delete(target.id);
      socket.destroy();
      if (outcome) this.options.onResult(target.id, target.incarnation, outcome);
    };
    mine.set(socket, setTimeout(() => finish(undefined), this.options.timeoutMs));
    this.inFlight.set(target.id, mine);
    this.inFlightCount += 1;
    socket.once('connect', () => finish('answered'));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? 'refused' : undefined));
  }

  /** Abandons every probe under way (the node stops). */
  stop(): void {
    for (const mine of this.inFlight.values()) {
      for (const [socket, timer] of mine) {
        clearTimeout(timer);
        socket.destroy();
      }
      mine.clear();
    }
    this.inFlight.clear();
    this.inFlightCount = 0;
  }
}
