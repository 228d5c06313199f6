import { backoffDelayMs } from '../core/backoff.js';
import type { BackoffConfig } from '../core/backoff.js';
import type { Logger } from './log.js';

/**
 * Seed 000's "main thread ... restart the threads if they go down": each
 * service of a node runs under this supervisor. When a service fails (its
 * start throws, or it reports a failure later), the supervisor logs why,
 * stops it, and starts it again after a capped, jittered backoff. The node
 * itself keeps running. start/stop are safe to call twice.
 */
export interface Service {
  readonly name: string;
  /** `fail` lets the service report a failure after it started (a socket error). */
  start(fail: (err: Error) => void): Promise<void>;
  stop(): Promise<void>;
}

export interface SupervisorOptions {
  readonly backoff: BackoffConfig;
  /** A service that ran this long without failing starts its backoff over. */
  readonly healthyAfterMs: number;
  readonly random: () => number;
}

export const SUPERVISOR_DEFAULTS: SupervisorOptions = Object.freeze({
  backoff: { initialMs: 200, maxMs: 10_000, factor: 2 },
  healthyAfterMs: 30_000,
  random: Math.random,
});

type Phase = 'stopped' | 'starting' | 'running' | 'restarting';

interface Slot {
  readonly service: Service;
  phase: Phase;
  attempt: number;
  startedAtMs: number;
  restartTimer: NodeJS.Timeout | undefined;
  restarts: number;
  /** Bumped on every (re)start so late failure reports of an old run are ignored. */
  generation: number;
}

export interface ServiceStatus {
  readonly name: string;
  readonly phase: Phase;
  readonly restarts: number;
}

export class Supervisor {
  private readonly slots = new Map<string, Slot>();
  private running = false;

  constructor(
    private readonly log: Logger,
    private readonly options: SupervisorOptions = SUPERVISOR_DEFAULTS,
  ) {}

  add(service: Service): void {
    if (this.slots.has(service.name)) throw new Error(`service ${service.name} added twice`);
    this.slots.set(service.name, { service, phase: 'stopped', attempt: 0, startedAtMs: 0, restartTimer: undefined, restarts: 0, generation: 0 });
  }

  /**
   * Starts every service not started yet, in the order added. A failing
   * start is retried in the background. Called again after more services
   * were added, it starts those: a node starts its beacons and links first
   * and its stores afterwards (membership does not wait for the disk).
   */
  async start(): Promise<void> {
    this.running = true;
    for (const slot of this.slots.values()) {
      if (slot.phase === 'stopped') await this.startSlot(slot);
    }
  }

  /** Stops every service in reverse order and cancels pending restarts. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const slot of [...this.slots.values()].reverse()) {
      clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
      slot.generation += 1;
      if (slot.phase !== 'stopped') await this.stopQuietly(slot);
      slot.phase = 'stopped';
    }
  }

  status(): ServiceStatus[] {
    return [...this.slots.values()].map((s) => ({ name: s.service.name, phase: s.phase, restarts: s.restarts }));
  }

  private async startSlot(slot: Slot): Promise<void> {
    slot.generation += 1;
    const generation = slot.generation;
    slot.phase = 'starting';
    try {
      await slot.service.start((err) => this.onFailure(slot, generation, err));
      if (generation !== slot.generation || !this.running) return;
      slot.phase = 'running';
      slot.startedAtMs = performance.now();
      if (slot.restarts > 0) this.log.info({ service: slot.service.name, restarts: slot.restarts }, 'service restarted');
    } catch (err) {
      this.onFailure(slot, generation, err instanceof Error ? err : new Error(String(err)));
    }
  }

  private onFailure(slot: Slot, generation: number, err: Error): void {
    if (!this.running || generation !== slot.generation || slot.phase === 'restarting') return;
    if (slot.phase === 'running' && performance.now() - slot.startedAtMs >= this.options.healthyAfterMs) slot.attempt = 0;
    const delayMs = backoffDelayMs(slot.attempt, this.options.random, this.options.backoff);
    slot.attempt += 1;
    slot.phase = 'restarting';
    this.log.error({ service: slot.service.name, err: err.message, restartInMs: delayMs, attempt: slot.attempt }, 'service failed; restarting');
    void this.stopQuietly(slot).then(() => {
      if (!this.running || slot.phase !== 'restarting') return;
      slot.restartTimer = setTimeout(() => {
        slot.restartTimer = undefined;
        slot.restarts += 1;
        void this.startSlot(slot);
      }, delayMs);
    });
  }

  private async stopQuietly(slot: Slot): Promise<void> {
    try {
      await slot.service.stop();
    } catch (err) {
      this.log.warn({ service: slot.service.name, err: (err as Error).message }, 'service stop failed');
    }
  }
}
