import net from 'node:net';
import type { ProbeOutcome } from '../core/membership.js';

/**
 * Probes of suspects (DESIGN.md section 2): a TCP connection to the member's
 * port, closed as soon as it is up. The kernel completes the handshake for a
 * listening socket even while the process is frozen or starved of CPU, so an
 * answer proves the process exists; a refusal (RST) proves nothing listens
 * there any more (kill -9). No answer within the timeout (host down, link
 * cut, SYN lost) reports nothing. Connections are bounded, one per member.
 */
export interface PortProberOptions {
  readonly timeoutMs: number;
  readonly inFlightMax: number;
  readonly onResult: (id: string, incarnation: number, outcome: ProbeOutcome) => void;
}

export class PortProber {
  private readonly inFlight = new Map<string, net.Socket>();
  probesSent = 0;

  constructor(private readonly options: PortProberOptions) {}

  /** Starts a probe of member `id` unless one is already under way (or too many are). */
  probe(target: { id: string; incarnation: number; host: string; port: number }): void {
    if (this.inFlight.has(target.id) || this.inFlight.size >= this.options.inFlightMax) return;
    this.probesSent += 1;
    const socket = net.connect({ host: target.host, port: target.port });
    this.inFlight.set(target.id, socket);
    let timer: NodeJS.Timeout | undefined;
    const finish = (outcome: ProbeOutcome | undefined): void => {
      if (timer === undefined) return;
      clearTimeout(timer);
      timer = undefined;
      if (this.inFlight.get(target.id) === socket) this.inFlight.delete(target.id);
      socket.destroy();
      if (outcome) this.options.onResult(target.id, target.incarnation, outcome);
    };
    timer = setTimeout(() => finish(undefined), this.options.timeoutMs);
    socket.once('connect', () => finish('answered'));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? 'refused' : undefined));
  }

  /** Abandons every probe under way (the node stops). */
  stop(): void {
    for (const s of this.inFlight.values()) s.destroy();
    this.inFlight.clear();
  }
}
