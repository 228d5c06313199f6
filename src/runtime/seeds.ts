import type { BeaconInfo } from '../core/membership.js';
import type { Logger } from './log.js';
import { connectAndGreet } from './handshake.js';
import type { HelloInfo } from './handshake.js';
import { beaconFromWire, beaconToWire } from './beacon-codec.js';
import type { Service } from './supervisor.js';

/**
 * `--seed HOST:PORT`: for peers beyond multicast reach. At start and then
 * every `rejoinIntervalMs`, each seed is told who we are over TCP and
 * answers with the members it knows; from then on beacons flow by unicast
 * between nodes that do not hear each other's multicast.
 */
export interface SeedJoinerOptions {
  readonly seeds: readonly { host: string; port: number }[];
  readonly me: () => HelloInfo;
  readonly selfBeacon: () => BeaconInfo;
  readonly onMembers: (beacons: BeaconInfo[]) => void;
  readonly timeoutMs: number;
  readonly log: Logger;
  readonly rejoinIntervalMs?: number;
}

/** A seed's answer is bounded like the member table. */
const JOIN_MEMBERS_MAX = 1_024;

export class SeedJoiner implements Service {
  readonly name = 'seeds';
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly options: SeedJoinerOptions) {}

  async start(): Promise<void> {
    this.running = true;
    this.round();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private round(): void {
    if (!this.running) return;
    for (const seed of this.options.seeds) void this.joinOne(seed);
    this.timer = setTimeout(() => this.round(), this.options.rejoinIntervalMs ?? 5_000);
  }

  private async joinOne(seed: { host: string; port: number }): Promise<void> {
    const me = { ...this.options.me(), role: 'client' as const };
    try {
      const { conn } = await connectAndGreet(seed.host, seed.port, me, { timeoutMs: this.options.timeoutMs });
      try {
        const self = { ...this.options.selfBeacon(), leaving: false };
        const answer = await conn.request({ body: { case: 'joinRequest', value: { self: beaconToWire(self) } } }, this.options.timeoutMs);
        if (answer.body.case !== 'joinResponse') throw new Error(`seed answered ${answer.body.case ?? 'nothing'}`);
        const members = answer.body.value.members.slice(0, JOIN_MEMBERS_MAX).map(beaconFromWire).filter((b): b is BeaconInfo => b !== undefined);
        if (this.running) this.options.onMembers(members);
      } finally {
        conn.close({ kind: 'local', why: 'join done' });
      }
    } catch (err) {
      this.options.log.debug({ seed: `${seed.host}:${seed.port}`, err: (err as Error).message }, 'seed join failed');
    }
  }
}
