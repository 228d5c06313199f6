import type { PmCluster } from './pmcast-cluster.js';
import type { SimRandom } from './random.js';

/**
 * The faults of a pmcast run: coordinator crashes (restart from the store
 * after a while), participant crashes (anywhere, or armed to strike between
 * a log line and its state), broken streams, partitions of some participants
 * from the coordinator, link cuts, packet loss. Each temporary fault undoes
 * itself unless a newer one of its kind replaced it; end() undoes them all
 * and restarts the coordinator (participants are the scenario's to restart).
 */
export class PmFaults {
  /** Set by end(): no fault strikes or undoes itself any more. */
  over = false;
  private partitionGeneration = 0;
  private readonly cutGeneration = new Map<string, number>();

  constructor(
    private readonly cluster: PmCluster,
    private readonly rng: SimRandom,
    private readonly tdMs: number,
    private readonly log: (what: string) => void,
  ) {}

  restartCoordinator(): void {
    const c = this.cluster.coordinator;
    if (c.running) return;
    c.start();
    this.log(`coordinator restarted: ${c.store.members.size} members, ${c.store.messages.size} messages, last seq ${c.store.lastSeq}`);
  }

  /** One random fault, now. */
  inject(): void {
    if (this.over) return;
    const { cluster, rng, log } = this;
    const net = cluster.net.network;
    const sched = cluster.scheduler;
    const kind = rng.pick(['coordinator', 'coordinator', 'participant', 'participant', 'between-writes', 'between-writes', 'break', 'break', 'partition', 'cut', 'loss'] as const);
    const running = cluster.allParticipants().filter((p) => p.running);
    const ids = cluster.allParticipants().map((p) => p.id);
    if (kind === 'coordinator') {
      if (!cluster.coordinator.running) return;
      cluster.coordinator.crash();
      const downMs = rng.int(10, 2_500);
      log(`coordinator crashed, down ${downMs} ms`);
      sched.after(downMs, () => {
        if (!this.over) this.restartCoordinator();
      });
    } else if (kind === 'participant' && running.length > 0) {
      rng.pick(running).crash();
    } else if (kind === 'between-writes') {
      const online = running.filter((p) => p.status === 'online');
      if (online.length === 0) return;
      const p = rng.pick(online);
      p.crashAfterNextLine = true;
      log(`${p.id} will crash after its next log line`);
    } else if (kind === 'break') {
      const ends = cluster.net.openEnds();
      for (let i = rng.int(1, 3); i > 0 && ends.length > 0; i--) {
        const end = ends.splice(rng.int(0, ends.length - 1), 1)[0]!;
        cluster.net.break(end);
        log(`break stream ${end.node} -> ${end.peer}:${end.port}`);
      }
    } else if (kind === 'partition') {
      const away = ids.filter(() => rng.chance(0.4));
      if (away.length === 0) return;
      const ms = rng.int(50, Math.round(1.5 * this.tdMs));
      const generation = ++this.partitionGeneration;
      net.partition([away]);
      log(`partition [${away.join(',')}] from the coordinator for ${ms} ms`);
      sched.after(ms, () => {
        if (this.over || generation !== this.partitionGeneration) return;
        net.heal();
        log('heal');
      });
    } else if (kind === 'cut') {
      const id = rng.pick(ids);
      const ms = rng.int(50, 2_000);
      const generation = (this.cutGeneration.get(id) ?? 0) + 1;
      this.cutGeneration.set(id, generation);
      net.cutLink(id);
      log(`cut ${id} for ${ms} ms`);
      sched.after(ms, () => {
        if (this.over || this.cutGeneration.get(id) !== generation) return;
        net.restoreLink(id);
        log(`restore ${id}`);
      });
    } else if (kind === 'loss') {
      const lossProbability = rng.chance(0.4) ? 0 : rng.range(0, 0.01);
      net.setKnobs({ lossProbability });
      log(`loss ${lossProbability.toFixed(4)}`);
    }
  }

  /** No more faults: the network heals, loss stops, the coordinator is up, no crash stays armed. */
  end(): void {
    this.over = true;
    const net = this.cluster.net.network;
    net.heal();
    for (const p of this.cluster.allParticipants()) {
      net.restoreLink(p.id);
      p.crashAfterNextLine = false;
    }
    net.setKnobs({ lossProbability: 0 });
    this.restartCoordinator();
  }
}
