import { Membership, MEMBERSHIP_DEFAULTS } from '../core/membership.js';
import type { BeaconInfo, BeaconSource, Member, MembershipConfig, MembershipEvent } from '../core/membership.js';
import { ringNeighbours } from '../core/ring.js';
import { dynamicNeighbours, dynamicOverlay, staticNeighbours } from '../core/overlay.js';
import type { Endpoint } from '../core/address.js';
import type { RetentionPolicy } from '../store/gossip-store.js';
import { GOSSIP_SERVICE_DEFAULTS, GossipService } from './gossip-service.js';
import { KV_SERVICE_DEFAULTS, KvService } from './kv-service.js';
import type { KvLimits } from './kv-access.js';
import { BACKOFF_DEFAULTS } from '../core/backoff.js';
import type { Beacon, Envelope } from '../wire/index.js';
import { beaconFromWire, beaconToWire } from './beacon-codec.js';
import { BeaconService } from './beacons.js';
import { PortProber } from './port-probe.js';
import { CONNECTION_LIMITS_DEFAULT } from './connection.js';
import type { ConnectionLimits, FramedConnection } from './connection.js';
import { connectAndGreet } from './handshake.js';
import type { HelloInfo } from './handshake.js';
import { loadIdentity, lockDataDir } from './identity.js';
import type { Identity } from './identity.js';
import { PeerLinks } from './links.js';
import { PeerRpc } from './peer-rpc.js';
import { LockService } from './lock-service.js';
import type { PeerEndpoint } from './links.js';
import { Listener } from './listener.js';
import type { Logger } from './log.js';
import { RateLimitedLog } from './log.js';
import { EarlyFrames } from './early-frames.js';
import type { MulticastConfig } from './multicast.js';
import { SeedJoiner } from './seeds.js';
import { Supervisor } from './supervisor.js';
import type { Service } from './supervisor.js';

/** Everything a node needs, validated by the CLI into this frozen shape. */
export interface NodeConfig {
  /** Undefined: make one up once and keep it in the data directory. */
  readonly id: string | undefined;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly clusterName: string;
  readonly multicast: MulticastConfig;
  readonly seeds: readonly { host: string; port: number }[];
  readonly membership: Omit<MembershipConfig, 'clusterName'>;
  readonly limits: ConnectionLimits;
  readonly connectionsMax: number;
  /** Bytes all accepted connections together may hold in half-received frames. */
  readonly inboundBudgetBytes: number;
  readonly helloTimeoutMs: number;
  readonly dialTimeoutMs: number;
  /** The cluster file's `links`: the static overlay. Undefined: the dynamic overlay. */
  readonly staticLinks: readonly (readonly [string, string])[] | undefined;
  /** Addresses of the nodes of the cluster file (static links dial these). */
  readonly clusterNodes: readonly Endpoint[];
  readonly gossip: {
    readonly messageBytesMax: number;
    readonly retention: RetentionPolicy;
    readonly syncIntervalMs: number;
  };
  readonly kv: {
    readonly limits: KvLimits;
    readonly keysMax: number;
    readonly idleSyncIntervalMs: number;
    readonly tombstoneRetentionMs: number;
    /** Copies of each key (the cluster file's `replicas`); undefined: every node holds every key. */
    readonly replicas: number | undefined;
  };
}

export const NODE_DEFAULTS = Object.freeze({
  membership: MEMBERSHIP_DEFAULTS,
  limits: CONNECTION_LIMITS_DEFAULT,
  connectionsMax: 1_024,
  inboundBudgetBytes: 64 * 1024 * 1024,
  helloTimeoutMs: 5_000,
  dialTimeoutMs: 2_000,
  gossip: Object.freeze({
    messageBytesMax: GOSSIP_SERVICE_DEFAULTS.messageBytesMax,
    retention: GOSSIP_SERVICE_DEFAULTS.retention,
    syncIntervalMs: GOSSIP_SERVICE_DEFAULTS.syncIntervalMs,
  }),
  kv: Object.freeze({
    limits: KV_SERVICE_DEFAULTS.limits,
    keysMax: KV_SERVICE_DEFAULTS.keysMax,
    idleSyncIntervalMs: KV_SERVICE_DEFAULTS.idleSyncIntervalMs,
    tombstoneRetentionMs: KV_SERVICE_DEFAULTS.tombstoneRetentionMs,
    replicas: undefined,
  }),
});

export interface NodeStatus {
  readonly id: string;
  readonly cluster: string;
  readonly incarnation: number;
  readonly host: string;
  readonly port: number;
  readonly members: readonly Member[];
  /** Ring neighbours (dynamic overlay) or linked nodes (static `links`). */
  readonly neighbours: readonly string[];
  /** Those of `neighbours` with an open connection. */
  readonly connected: readonly string[];
  /** Every overlay link (ring + chord, or the static links) and whether it is connected. */
  readonly links: readonly { readonly id: string; readonly connected: boolean }[];
  readonly gossip: { readonly messages: number } & GossipService['stats'];
  readonly cache: { readonly values: number } & KvService['stats'];
  readonly connections: { readonly inbound: number; readonly outbound: number };
  readonly services: readonly { name: string; phase: string; restarts: number }[];
}

/** Request connections to members beyond the overlay links (lock votes, a partitioned cache's owners). */
const RPC_CONNECTIONS_MAX = 256;
/**
 * Resolves after the event loop has polled for I/O at least once: a single
 * setImmediate set from an I/O callback runs before the next poll; the
 * second one, set from the check phase, after it.
 */
async function afterIoPoll(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

/** The stores open at most this many heartbeat intervals after membership started (1 s by default). */
const STORES_WAIT_BEATS_MAX = 5;
/** An early frame counts at least this many bytes (envelope, connection and closure). */
const EARLY_FRAME_BYTES_MIN = 256;
/** Suspects probed at once, at most (each probe is one short TCP connection). */
const PROBES_IN_FLIGHT_MAX = 64;

/** A leaving node waits this long at most for its leave beacon to go out. */
const LEAVE_SEND_WAIT_MS = 500;

/** Handles one request from a client connection (the api layer installs one). */
export type ClientHandler = (env: Envelope, conn: FramedConnection) => void;

/**
 * A grapevine node: the membership core driven by a monotonic clock and the
 * beacon socket, the ring computed from live members, and the links that
 * follow it — each I/O part a supervised service.
 */
export class GrapevineNode {
  private membership!: Membership;
  private identity!: Identity;
  private unlock: (() => void) | undefined;
  private readonly supervisor: Supervisor;
  private readonly beacons: BeaconService;
  private readonly prober: PortProber;
  private links!: PeerLinks;
  private readonly listener: Listener;
  private readonly seeds: SeedJoiner;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private neighbours: PeerEndpoint[] = [];
  /** Overlay peers: what the links follow and gossip floods to. */
  private overlay: PeerEndpoint[] = [];
  private overlayIds: string[] = [];
  /** Every node's overlay neighbours as this node computes them (the cache avoids sending what a neighbour's flood covers). */
  private overlayGraph = new Map<string, Set<string>>();
  private overlaySignature = '';
  private overlayChangedAtMs = 0;
  private gossipService!: GossipService;
  private kvService!: KvService;
  private rpc!: PeerRpc;
  private lockService!: LockService;
  private clientHandler: ClientHandler | undefined;
  private started = false;
  /**
   * Set while the stores are not open (start-up, and from stop on): peer
   * and client frames for them wait here (see early-frames.ts).
   */
  private early: EarlyFrames | undefined;
  /** Monotonic ms of the last member that joined, came back or restarted (start-up waits for a quiet moment). */
  private lastJoinAtMs = 0;
  /** Monotonic ms of the last beacon heard from anyone (diagnostics of a false 'dead'). */
  private lastAnyBeaconAtMs = 0;
  /** Size of the frame being decoded now (set by the frame hooks, read by holdEarly). */
  private frameBytes = 0;
  private readonly offences: RateLimitedLog;
  /** Monotonic ms: membership timeouts must not jump with the wall clock. */
  readonly clock = (): number => performance.now();

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    this.supervisor = new Supervisor(log.child({ component: 'supervisor' }));
    this.offences = new RateLimitedLog(log);
    this.beacons = new BeaconService({
      multicast: config.multicast,
      host: config.host,
      port: config.port,
      log: log.child({ component: 'beacon' }),
      clock: this.clock,
      onBeacon: (beacon, _from, via) => this.onBeacon(beacon, via === 'multicast' ? 'direct' : 'unicast'),
    });
    this.prober = new PortProber({
      // An answer later than a heartbeat or two is too old to keep a suspect anyway.
      timeoutMs: 2 * config.membership.heartbeatIntervalMs,
      inFlightMax: PROBES_IN_FLIGHT_MAX,
      onResult: (id, incarnation, outcome) => this.membership?.probeResult(id, incarnation, outcome, this.clock()),
    });
    this.listener = new Listener({
      host: config.host,
      port: config.port,
      me: () => this.hello(),
      limits: config.limits,
      connectionsMax: config.connectionsMax,
      inboundBudgetBytes: config.inboundBudgetBytes,
      helloTimeoutMs: config.helloTimeoutMs,
      log: log.child({ component: 'listener' }),
      clock: this.clock,
      onPeer: (peer, conn) => this.links.acceptInbound(peer.id, conn),
      onClient: (conn) => this.onClient(conn),
    });
    this.seeds = new SeedJoiner({
      seeds: config.seeds,
      me: () => this.hello(),
      selfBeacon: () => this.membership.leaveBeacon(),
      onMembers: (beacons) => {
        for (const b of beacons) this.onBeacon(b, 'indirect');
      },
      timeoutMs: config.dialTimeoutMs,
      log: log.child({ component: 'seeds' }),
    });
  }

  get id(): string {
    return this.identity.id;
  }

  /** Installs the handler of client connections (status, kv, ...). */
  setClientHandler(handler: ClientHandler): void {
    this.clientHandler = handler;
  }

  /**
   * Takes the data dir, loads identity, starts every service: first the
   * beacons, links and membership, then the stores (gossip, cache, locks),
   * so that a node is found without waiting for SQLite — 16 nodes starting
   * at once on 2 cores each spent a few hundred ms opening stores before
   * their first beacon. Frames for the stores that arrive before they are
   * open wait in a bounded queue. Resolves once everything is open. Throws
   * on a bad data dir or a taken port.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.unlock = lockDataDir(this.config.dataDir);
    this.identity = loadIdentity(this.config.dataDir, this.config.id, Date.now());
    const self = { id: this.identity.id, host: this.config.host, port: this.config.port, incarnation: this.identity.incarnation };
    this.links = new PeerLinks({
      self,
      dial: (peer) => this.dialPeer(peer),
      onEnvelope: (peerId, env, conn) => this.onPeerEnvelope(peerId, env, conn),
      onFrame: (peerId, payload) => this.onPeerFrame(peerId, payload),
      onLinkUp: (peerId) => {
        // Before the stores are open: each syncs with every connected neighbour as it opens.
        if (this.early) return;
        this.gossipService.onLinkUp(peerId);
        this.kvService.onLinkUp(peerId);
      },
      log: this.log.child({ component: 'links' }),
      random: Math.random,
      backoff: BACKOFF_DEFAULTS,
    });
    this.rpc = new PeerRpc({
      addressOf: (peerId) => this.membership.get(peerId) ?? this.config.clusterNodes.find((n) => n.id === peerId),
      me: () => this.hello(),
      timeoutMs: this.config.dialTimeoutMs,
      limits: this.config.limits,
      connectionsMax: RPC_CONNECTIONS_MAX,
    });
    this.membership = new Membership(self, { clusterName: this.config.clusterName, ...this.config.membership }, Math.random, this.clock());
    // The services exist from the start (status and the early queue use
    // them); their stores open only after membership is running.
    this.gossipService = new GossipService({
      ...GOSSIP_SERVICE_DEFAULTS,
      ...this.config.gossip,
      selfId: self.id,
      incarnation: self.incarnation,
      dataDir: this.config.dataDir,
      log: this.log.child({ component: 'gossip' }),
      neighbours: () => this.overlayIds,
      overlayOf: (peerId) => this.overlayGraph.get(peerId),
      overlayStableSinceMs: () => this.overlayChangedAtMs,
      connection: (peerId) => this.links.connectionTo(peerId),
    });
    this.kvService = new KvService({
      ...KV_SERVICE_DEFAULTS,
      ...this.config.kv,
      selfId: self.id,
      dataDir: this.config.dataDir,
      log: this.log.child({ component: 'cache' }),
      neighbours: () => this.overlayIds,
      connection: (peerId) => this.links.connectionTo(peerId),
      membersOldestPendingMs: () => this.membership.liveOthers().map((m) => m.oldestPendingMs),
      members: () => [self.id, ...this.membership.liveOthers().map((m) => m.id)],
      overlayOf: (peerId) => this.overlayGraph.get(peerId),
      overlayStableSinceMs: () => this.overlayChangedAtMs,
      rpc: (peerId) => this.rpc.connect(peerId),
      peerCacheDigest: (peerId) => this.membership.get(peerId)?.cacheDigest,
    });
    this.lockService = new LockService({
      selfId: self.id,
      dataDir: this.config.dataDir,
      log: this.log.child({ component: 'locks' }),
      quorum: () => this.lockQuorum(),
      connect: (peerId) => this.rpc.connect(peerId),
    });
    this.early = new EarlyFrames();
    // The listener is started first and outside supervision retries: a port
    // that is taken is a configuration error the user must see at once, as
    // the one line of the CLI's error (so nothing is logged before it).
    await this.listener.start((err) => this.log.error({ err: err.message }, 'listener error'));
    this.log.info({ id: self.id, incarnation: self.incarnation, addr: `${self.host}:${self.port}`, cluster: this.config.clusterName }, 'node starting');
    this.supervisor.add(this.beacons);
    this.supervisor.add(this.links);
    this.supervisor.add(this.membershipService());
    if (this.config.seeds.length > 0) this.supervisor.add(this.seeds);
    await this.supervisor.start();
    this.started = true;
    // Static links are dialled from the start, before membership hears anyone.
    this.updateRing();
    await this.untilMembershipQuiet();
    // Opening a store blocks the event loop (SQLite is synchronous): before
    // each, let the loop poll its sockets, so beacons heard meanwhile (the
    // answers to our first one) are taken in instead of waiting for all three.
    for (const store of [this.gossipService, this.kvService, this.lockService]) {
      await afterIoPoll();
      if (!this.started) return;
      this.supervisor.add(store);
      await this.supervisor.start();
    }
    this.openEarly();
  }

  /**
   * Waits until no member has joined for one heartbeat interval, at most
   * STORES_WAIT_BEATS_MAX intervals after membership started. A newcomer
   * hears the whole cluster within one interval (everyone answers its first
   * beacon at once); when many nodes start together, each keeps its CPU for
   * beacons until the joins stop, and the stores' work (loading SQLite,
   * opening three databases, the first anti-entropy rounds) comes after.
   */
  private async untilMembershipQuiet(): Promise<void> {
    const beatMs = this.config.membership.heartbeatIntervalMs;
    const latestMs = this.clock() + beatMs * STORES_WAIT_BEATS_MAX;
    this.lastJoinAtMs = this.clock();
    while (this.started) {
      const now = this.clock();
      const wakeMs = Math.min(this.lastJoinAtMs + beatMs, latestMs);
      if (now >= wakeMs) return;
      await new Promise((resolve) => setTimeout(resolve, wakeMs - now));
    }
  }

  /** The stores are open: frames that came before are handled now, in arrival order. */
  private openEarly(): void {
    const early = this.early;
    if (!early) return;
    this.early = undefined;
    if (early.size > 0 || early.refused > 0) this.log.debug({ frames: early.size, bytes: early.bytes, refused: early.refused }, 'stores open; handling the frames that came before');
    early.drain();
  }

  /** Says goodbye (a leaving beacon), closes everything, releases the data dir. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    // Sent before anything closes: closing the beacon socket would cancel it.
    await Promise.race([this.beacons.sendAll(this.membership.leaveBeacon(), this.unicastTargets()), new Promise((r) => setTimeout(r, LEAVE_SEND_WAIT_MS))]);
    this.rpc.close();
    // From now on frames for the stores are held, not handed to stores that are closing.
    const early = (this.early ??= new EarlyFrames());
    await this.supervisor.stop();
    await this.listener.stop();
    early.clear();
    this.unlock?.();
  }

  status(): NodeStatus {
    return {
      id: this.identity.id,
      cluster: this.config.clusterName,
      incarnation: this.identity.incarnation,
      host: this.config.host,
      port: this.config.port,
      members: this.membership.members(),
      ...this.linkStatus(),
      connections: this.links.connectionCounts(),
      services: this.supervisor.status(),
      gossip: { messages: this.gossipService.count(), ...this.gossipService.stats },
      cache: { values: this.kvService.size(), ...this.kvService.stats },
    };
  }

  /** The node's gossip (submit, get, list, watch). */
  get gossip(): GossipService {
    return this.gossipService;
  }

  /** The node's replicated cache. */
  get kv(): KvService {
    return this.kvService;
  }

  /** The node's distributed locks. */
  get locks(): LockService {
    return this.lockService;
  }

  /**
   * The fixed set a lock's majority is counted in, the same on every node:
   * the cluster file's nodes; without a file, every member this node ever
   * knew (dead ones too) and itself. A majority of the live members would
   * not do: in a partition each side would see a majority of its own.
   */
  private lockQuorum(): string[] {
    if (this.config.clusterNodes.length > 0) return this.config.clusterNodes.map((n) => n.id);
    return [this.identity.id, ...this.membership.members().map((m) => m.id).filter((id) => id !== this.identity.id)];
  }

  private linkStatus(): Pick<NodeStatus, 'neighbours' | 'connected' | 'links'> {
    const connected = new Set(this.links.connectedIds());
    const neighbours = this.config.staticLinks ? this.overlayIds : this.neighbours.map((n) => n.id);
    return {
      neighbours,
      connected: neighbours.filter((id) => connected.has(id)),
      links: this.overlayIds.map((id) => ({ id, connected: connected.has(id) })),
    };
  }

  /** Beacon traffic counters, for benchmarks. */
  traffic(): { datagramsSent: number; bytesSent: number } {
    return { datagramsSent: this.beacons.datagramsSent, bytesSent: this.beacons.bytesSent };
  }

  /** Members as beacons, for a seed's JoinResponse. */
  knownBeacons(): BeaconInfo[] {
    return this.membership
      .members()
      .filter((m) => m.state !== 'dead')
      .map((m) => ({ cluster: this.config.clusterName, id: m.id, host: m.host, port: m.port, incarnation: m.incarnation, oldestPendingMs: m.oldestPendingMs, leaving: false }));
  }

  private hello(): HelloInfo {
    return { cluster: this.config.clusterName, id: this.identity.id, incarnation: this.identity.incarnation, role: 'peer' };
  }

  private membershipService(): Service {
    return {
      name: 'membership',
      start: async () => this.step(),
      stop: async () => {
        clearTimeout(this.timer);
        this.timer = undefined;
        clearImmediate(this.immediate);
        this.immediate = undefined;
        this.prober.stop();
      },
    };
  }

  /** One turn of the core: timeouts, a beacon if due, then sleep until the next wake-up. */
  private step(): void {
    clearTimeout(this.timer);
    clearImmediate(this.immediate);
    this.immediate = undefined;
    const now = this.clock();
    this.handle(this.membership.tick(now));
    this.membership.setOldestPendingMs(this.kvService.oldestPendingMs());
    this.membership.setCacheDigest(this.kvService.cacheDigest());
    const beacon = this.membership.pollBeacon(now);
    if (beacon) this.beacons.send(beacon, this.unicastTargets());
    const delayMs = Math.max(1, Math.min(this.membership.nextWakeMs() - this.clock(), this.config.membership.heartbeatIntervalMs));
    // The step runs from setImmediate, i.e. after the event loop's poll phase:
    // when our loop was frozen or starved, the beacons that queued in the
    // socket meanwhile are read before the timeouts are judged (a timer
    // callback runs before them, and would count their wait as silence).
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.step();
      });
    }, delayMs);
  }

  private onBeacon(beacon: BeaconInfo, source: BeaconSource): void {
    if (!this.membership) return;
    this.lastAnyBeaconAtMs = this.clock();
    const events = this.membership.receiveBeacon(beacon, this.clock(), source);
    this.handle(events);
    // A newcomer may have made an early beacon due: run the core now.
    if (events.some((e) => e.type === 'joined' || e.type === 'restarted' || e.type === 'recovered')) this.step();
  }

  private handle(events: readonly MembershipEvent[]): void {
    if (events.length === 0) return;
    let ringMayChange = false;
    for (const e of events) {
      switch (e.type) {
        case 'joined':
        case 'restarted':
        case 'recovered':
          ringMayChange = true;
          this.lastJoinAtMs = this.clock();
          this.log.info({ event: e.type, member: e.member.id, addr: `${e.member.host}:${e.member.port}`, incarnation: e.member.incarnation, alive: this.aliveCount() }, `member ${e.type}`);
          break;
        case 'suspect':
          this.log.warn({ event: e.type, member: e.member.id, silentMs: Math.round(this.clock() - e.member.lastHeardMs) }, 'member suspect');
          break;
        case 'dead':
          ringMayChange = true;
          this.links.drop(e.member.id);
          this.rpc.drop(e.member.id);
          this.log.warn({ event: e.type, member: e.member.id, reason: e.reason, silentMs: Math.round(this.clock() - e.member.lastHeardMs), anyHeardAgoMs: Math.round(this.clock() - this.lastAnyBeaconAtMs), alive: this.aliveCount() }, 'member dead');
          break;
        case 'forgotten':
          this.log.info({ event: e.type, member: e.id }, 'member forgotten');
          break;
        case 'probe':
          this.prober.probe(e.member);
          break;
        case 'stall':
          this.log.warn({ event: e.type, stalledMs: Math.round(e.stalledMs) }, 'event loop stalled; not blaming peers for the silence');
          break;
        case 'ignored':
          if (e.reason === 'id_conflict' || e.reason === 'table_full') {
            this.log.error({ event: e.type, reason: e.reason, member: e.id, addr: `${e.host}:${e.port}` }, 'beacon ignored');
          }
          break;
      }
    }
    if (ringMayChange) this.updateRing();
  }

  /** Recomputes the ring and the overlay from live members; the links follow the overlay. */
  private updateRing(): void {
    const self = this.membership.self;
    const live = this.membership.liveOthers();
    const asPeer = (m: { id: string; host: string; port: number; incarnation: number }): PeerEndpoint => ({ id: m.id, host: m.host, port: m.port, incarnation: m.incarnation });
    this.neighbours = ringNeighbours(self, live).map((n) => asPeer(live.find((m) => m.id === n.id)!));
    if (this.config.staticLinks) {
      // Static graph: exactly the configured links, live or not (retried with backoff while down).
      this.overlay = staticNeighbours(self.id, this.config.staticLinks).flatMap((id) => {
        const known = this.membership.get(id);
        const node = this.config.clusterNodes.find((n) => n.id === id);
        if (known && known.state !== 'dead') return [asPeer(known)];
        return node ? [{ ...node, incarnation: known?.incarnation ?? 0 }] : [];
      });
    } else {
      this.overlay = dynamicNeighbours(self, live).map((n) => asPeer(live.find((m) => m.id === n.id)!));
    }
    this.overlayIds = this.overlay.map((p) => p.id);
    this.links.setDesired(this.overlay);
    this.updateOverlayGraph(self, live);
    this.kvService.onMembersChanged();
  }

  private updateOverlayGraph(self: Endpoint, live: readonly Endpoint[]): void {
    const graph = new Map<string, Set<string>>();
    if (this.config.staticLinks) {
      for (const [a, b] of this.config.staticLinks) {
        if (a === b) continue;
        (graph.get(a) ?? graph.set(a, new Set()).get(a)!).add(b);
        (graph.get(b) ?? graph.set(b, new Set()).get(b)!).add(a);
      }
    } else {
      for (const [id, adj] of dynamicOverlay([self, ...live])) graph.set(id, adj);
    }
    const signature = [...graph].map(([id, adj]) => `${id}:${[...adj].sort().join(',')}`).sort().join(';');
    if (signature !== this.overlaySignature) {
      this.overlaySignature = signature;
      this.overlayChangedAtMs = this.clock();
    }
    this.overlayGraph = graph;
  }

  private aliveCount(): number {
    return this.membership.members().filter((m) => m.state === 'alive').length;
  }

  private unicastTargets(): { host: string; port: number }[] {
    const targets = new Map<string, { host: string; port: number }>();
    for (const s of this.config.seeds) targets.set(`${s.host}:${s.port}`, s);
    for (const m of this.membership.notHeardDirectly()) targets.set(`${m.host}:${m.port}`, { host: m.host, port: m.port });
    return [...targets.values()];
  }

  private async dialPeer(peer: PeerEndpoint): Promise<FramedConnection> {
    const { conn } = await connectAndGreet(peer.host, peer.port, this.hello(), {
      timeoutMs: this.config.dialTimeoutMs,
      limits: this.config.limits,
      expectId: peer.id,
    });
    return conn;
  }

  /** The hot frames of gossip and the cache are read by hand-written codecs first; before the stores are open every frame takes the generic path (to the early queue). */
  private onPeerFrame(peerId: string, payload: Uint8Array): boolean {
    if (this.early) {
      this.frameBytes = payload.length;
      return false;
    }
    return this.gossipService.onPeerFrame(peerId, payload) || this.kvService.onPeerFrame(peerId, payload);
  }

  /**
   * Keeps a frame that came before the stores were open. When the queue is
   * full: a lock message gets no answer (its proposer sends again, as to a
   * stopped lock service), another request an 'unavailable' error its asker
   * retries on, and a flood is dropped — every store syncs with each
   * connected neighbour as it opens, which fetches it again.
   */
  private holdEarly(early: EarlyFrames, env: Envelope, conn: FramedConnection, handle: () => void): void {
    const bytes = Math.max(this.frameBytes, EARLY_FRAME_BYTES_MIN);
    this.frameBytes = 0;
    if (early.offer({ bytes, handle })) return;
    const body = env.body.case;
    if (env.requestId !== 0 && body !== 'lockPropose' && body !== 'lockRelease') {
      conn.reply(env, { body: { case: 'error', value: { code: 'unavailable', message: 'the node is starting: its stores are not open yet; try again' } } });
    }
    this.offences.warn('early-frames', this.clock(), { frames: early.size, bytes: early.bytes, body }, 'stores not open yet and the queue of early frames is full; refused a frame');
  }

  private onPeerEnvelope(peerId: string, env: Envelope, conn: FramedConnection): void {
    const early = this.early;
    if (early && env.body.case !== 'ping') return this.holdEarly(early, env, conn, () => this.onPeerEnvelope(peerId, env, conn));
    if (this.kvService.onPeerEnvelope(peerId, env, conn)) return;
    if (this.gossipService.onPeerEnvelope(peerId, env, conn)) return;
    switch (env.body.case) {
      case 'ping':
        conn.reply(env, { body: { case: 'pong', value: { sentMs: env.body.value.sentMs } } });
        break;
      default:
        this.log.debug({ peer: peerId, body: env.body.case }, 'unexpected frame from peer');
    }
  }

  private onClient(conn: FramedConnection): void {
    if (this.early) {
      conn.setFrameHook((payload) => {
        this.frameBytes = payload.length;
        return false;
      });
    }
    conn.on('envelope', (env) => {
      if (env.body.case === 'joinRequest') {
        const self = env.body.value.self;
        if (self) this.onJoinRequest(self, conn, env);
        return;
      }
      if (env.body.case === 'ping') {
        conn.reply(env, { body: { case: 'pong', value: { sentMs: env.body.value.sentMs } } });
        return;
      }
      this.onClientRequest(env, conn);
    });
  }

  private onClientRequest(env: Envelope, conn: FramedConnection): void {
    // Status answers at once; anything for the stores waits until they are open.
    const early = this.early;
    if (early && env.body.case !== 'statusRequest') return this.holdEarly(early, env, conn, () => this.onClientRequest(env, conn));
    if (this.clientHandler) this.clientHandler(env, conn);
    else conn.reply(env, { body: { case: 'error', value: { code: 'unsupported', message: 'this node serves no client requests' } } });
  }

  /** A --seed joiner introduced itself: take it in and answer with everyone we know. */
  private onJoinRequest(beacon: Beacon, conn: FramedConnection, env: Envelope): void {
    const info = beaconFromWire(beacon);
    if (info && info.cluster === this.config.clusterName) this.onBeacon(info, 'unicast');
    conn.reply(env, { body: { case: 'joinResponse', value: { members: this.knownBeacons().map(beaconToWire) } } });
  }
}
