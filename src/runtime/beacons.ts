import type { Socket } from 'node:dgram';
import type { BeaconInfo } from '../core/membership.js';
import { decodeDatagram, encodeDatagram } from '../wire/index.js';
import { beaconFromWire, beaconToWire } from './beacon-codec.js';
import type { Beacon } from '../wire/index.js';
import type { Logger } from './log.js';
import { RateLimitedLog } from './log.js';
import { openMulticastReceiver, openMulticastSender, sendDatagram } from './multicast.js';
import type { MulticastConfig } from './multicast.js';
import type { Service } from './supervisor.js';

/**
 * The beacon service: multicasts our beacons on the configured interface and
 * hears everyone else's. The same UDP port number as the node's TCP port is
 * bound on the node's host for unicast beacons, which reach --seed peers
 * beyond multicast range. Garbage datagrams are dropped and logged at most
 * once per sender per interval.
 */
export interface BeaconServiceOptions {
  readonly multicast: MulticastConfig;
  readonly host: string;
  readonly port: number;
  readonly log: Logger;
  readonly onBeacon: (beacon: BeaconInfo, from: string, via: 'multicast' | 'unicast') => void;
  readonly clock: () => number;
}

export class BeaconService implements Service {
  readonly name = 'beacon';
  private receiver: Socket | undefined;
  private sender: Socket | undefined;
  private readonly offences: RateLimitedLog;
  datagramsSent = 0;
  bytesSent = 0;
  /** The last beacon we encoded and its bytes: ours changes rarely, and we send it 5 times a second. */
  private lastSent: { beacon: BeaconInfo; bytes: Uint8Array } | undefined;
  /**
   * Per sender, its last datagram and what it decoded to: a member repeats
   * the same bytes every beacon interval, so most datagrams are compared,
   * not decoded (the generated decoder was most of an idle node's work).
   */
  private readonly lastHeard = new Map<string, { bytes: Buffer; info: BeaconInfo }>();

  constructor(private readonly options: BeaconServiceOptions) {
    this.offences = new RateLimitedLog(options.log);
  }

  async start(fail: (err: Error) => void): Promise<void> {
    const { multicast, host, port } = this.options;
    const receiver = await openMulticastReceiver(multicast);
    this.receiver = receiver;
    let sender: Socket;
    try {
      sender = await openMulticastSender(multicast, host, port);
    } catch (err) {
      // The UDP twin of our TCP port is taken: still beacon by multicast from
      // any port; only seed peers that need unicast replies lose out.
      this.options.log.warn({ err: (err as Error).message, port }, 'cannot bind unicast beacon port; using an ephemeral port');
      sender = await openMulticastSender(multicast, host, 0);
    }
    this.sender = sender;
    receiver.on('message', (msg, rinfo) => this.onDatagram(msg, `${rinfo.address}:${rinfo.port}`, 'multicast'));
    sender.on('message', (msg, rinfo) => this.onDatagram(msg, `${rinfo.address}:${rinfo.port}`, 'unicast'));
    for (const socket of [receiver, sender]) socket.on('error', (err) => fail(err));
  }

  async stop(): Promise<void> {
    const sockets = [this.receiver, this.sender];
    this.receiver = undefined;
    this.sender = undefined;
    await Promise.all(sockets.map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : undefined)));
  }

  /** Multicasts `beacon` and also unicasts it to `unicastTargets`. Errors are logged, not thrown. */
  send(beacon: BeaconInfo, unicastTargets: readonly { host: string; port: number }[] = []): void {
    void this.sendAll(beacon, unicastTargets);
  }

  /**
   * The same, resolving once the datagrams left (or failed): a leaving node
   * waits for it before it closes the socket, which would cancel them.
   */
  sendAll(beacon: BeaconInfo, unicastTargets: readonly { host: string; port: number }[] = []): Promise<void> {
    const sender = this.sender;
    if (!sender) return Promise.resolve();
    const sends: Promise<unknown>[] = [];
    const bytes = this.encoded(beacon);
    const targets = [{ host: this.options.multicast.group, port: this.options.multicast.port }, ...unicastTargets];
    for (const t of targets) {
      this.datagramsSent += 1;
      this.bytesSent += bytes.length;
      sends.push(
        sendDatagram(sender, bytes, t.port, t.host).catch((err: Error) => {
          this.offences.warn(`send:${t.host}:${t.port}`, this.options.clock(), { err: err.message, to: `${t.host}:${t.port}` }, 'beacon send failed');
        }),
      );
    }
    return Promise.all(sends).then(() => undefined);
  }

  private encoded(beacon: BeaconInfo): Uint8Array {
    const last = this.lastSent;
    if (last && sameBeacon(last.beacon, beacon)) return last.bytes;
    const bytes = encodeDatagram({ body: { case: 'beacon', value: beaconToWire(beacon) } });
    this.lastSent = { beacon, bytes };
    return bytes;
  }

  private onDatagram(msg: Buffer, from: string, via: 'multicast' | 'unicast'): void {
    const heard = this.lastHeard.get(from);
    if (heard && heard.bytes.equals(msg)) {
      this.options.onBeacon(heard.info, from, via);
      return;
    }
    let beacon: Beacon;
    try {
      const d = decodeDatagram(msg);
      if (d.body.case !== 'beacon') return;
      beacon = d.body.value;
    } catch (err) {
      this.offences.warn(`datagram:${from}`, this.options.clock(), { from, bytes: msg.length, err: (err as Error).message }, 'dropped a malformed datagram');
      return;
    }
    const info = beaconFromWire(beacon);
    if (!info) {
      this.offences.warn(`beacon:${from}`, this.options.clock(), { from }, 'dropped a beacon with out-of-range fields');
      return;
    }
    // Bounded: senders are members (and the odd stranger); start over rather than grow.
    if (this.lastHeard.size >= LAST_HEARD_MAX) this.lastHeard.clear();
    this.lastHeard.set(from, { bytes: msg, info });
    this.options.onBeacon(info, from, via);
  }
}

/** Senders whose last datagram is remembered. */
const LAST_HEARD_MAX = 4_096;

/** Every field of BeaconInfo equal (a field added there must be added here, or a stale beacon goes out). */
function sameBeacon(a: BeaconInfo, b: BeaconInfo): boolean {
  return (
    a.cluster === b.cluster &&
    a.id === b.id &&
    a.host === b.host &&
    a.port === b.port &&
    a.incarnation === b.incarnation &&
    a.oldestPendingMs === b.oldestPendingMs &&
    a.cacheDigest === b.cacheDigest &&
    a.leaving === b.leaving
  );
}
