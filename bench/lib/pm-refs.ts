/**
 * The reference systems of the pmcast bench, run as child processes on
 * 127.0.0.1 with their own config and data directories:
 *
 *  - mosquitto (Debian's package), MQTT 5: persistence on, every receiver a
 *    persistent session (clean start false, session expiry 1 h) subscribed with
 *    QoS 1, every message published with QoS 1 and message expiry = td;
 *    no limit on queued messages (the default of 1,000 would drop a backlog).
 *  - nats-server (Debian's package) with JetStream: one stream on file
 *    storage, MaxAge = td; every receiver a durable consumer (explicit acks).
 *
 * The publishers live in the bench process (like grapevine's load client);
 * receivers are child processes (pm-receiver.ts) that append every message to
 * a log file, one line each, like grapevine's participants.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { AckPolicy, DeliverPolicy, StorageType, connect as natsConnect, nanos } from 'nats';
import type { JetStreamClient, NatsConnection } from 'nats';
import { onLines, running } from './lines.js';
import { LineProcess, stopChild, track } from './procs.js';

export const MQTT_TOPIC = 'pmcast/group';
export const NATS_STREAM = 'PMCAST';
export const NATS_SUBJECT = 'pmcast.group';
/** Unacknowledged messages in flight to one receiver: grapevine's delivery window. */
export const RECEIVER_WINDOW = 20_000;

const RECEIVER_TS = fileURLToPath(new URL('./pm-receiver.ts', import.meta.url));
const TSX_IMPORT = ['--import', 'tsx'];

/** A server child process that is up once a line matching `ready` appeared on its output. */
export class ServerProcess {
  readonly lines: string[] = [];

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    onLines(proc, (line) => {
      this.lines.push(line);
      if (this.lines.length > 200) this.lines.shift();
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return running(this.proc);
  }

  static async start(name: string, command: string, args: readonly string[], ready: RegExp, timeoutMs = 20_000): Promise<ServerProcess> {
    const proc = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const s = new ServerProcess(name, proc);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready within ${timeoutMs} ms: ${s.lines.slice(-3).join(' | ')}`)), timeoutMs);
      onLines(proc, (line) => {
        if (ready.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? signal}) before it was ready: ${s.lines.slice(-3).join(' | ')}`));
      });
    });
    return s;
  }

  stop(): Promise<void> {
    return stopChild(this.proc, 'SIGTERM', 10_000);
  }
}

// ---------------------------------------------------------------------------
// mosquitto

export async function startMosquitto(dir: string, port: number): Promise<ServerProcess> {
  const data = join(dir, 'data');
  mkdirSync(data, { recursive: true });
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      // Running as root, mosquitto would switch to the 'mosquitto' user, which cannot write our temp dir.
      'user root',
      'persistence true',
      `persistence_location ${data}/`,
      // No limit on what is queued for an offline persistent session (default 1,000, then dropped).
      'max_queued_messages 0',
      'max_queued_bytes 0',
      // In-flight QoS 1 messages towards a client: bounded by the client's own receive maximum.
      'max_inflight_messages 0',
      // Nagle off, as grapevine and NATS do (mosquitto's default leaves it on).
      'set_tcp_nodelay true',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'connection_messages false',
      '',
    ].join('\n'),
  );
  return ServerProcess.start('mosquitto', 'mosquitto', ['-c', conf], /mosquitto version \S+ running/);
}

/** Nagle off on an MQTT client's socket (mqtt.js leaves Node's default, on). */
export function mqttNoDelay(client: MqttClient): void {
  const socket = client.stream as unknown as { setNoDelay?: (on: boolean) => void };
  socket.setNoDelay?.(true);
}

export async function mqttConnect(port: number, clientId: string, persistent: boolean): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 5,
    clientId,
    clean: !persistent,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    properties: persistent ? { sessionExpiryInterval: 3_600, receiveMaximum: 65_535 } : { receiveMaximum: 65_535 },
  });
  mqttNoDelay(client);
  return client;
}

export class MqttSender {
  private constructor(
    private readonly client: MqttClient,
    private readonly expirySeconds: number,
  ) {}

  static async connect(port: number, id: string, tdSeconds: number): Promise<MqttSender> {
    return new MqttSender(await mqttConnect(port, id, false), tdSeconds);
  }

  /** QoS 1 publish; resolves on the broker's PUBACK. */
  async send(text: string): Promise<void> {
    await this.client.publishAsync(MQTT_TOPIC, text, { qos: 1, properties: { messageExpiryInterval: this.expirySeconds } });
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}

// ---------------------------------------------------------------------------
// nats-server with JetStream

export async function startNats(dir: string, port: number): Promise<ServerProcess> {
  const data = join(dir, 'jetstream');
  mkdirSync(data, { recursive: true });
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    [`listen: "127.0.0.1:${port}"`, `server_name: "bench"`, 'jetstream {', `  store_dir: "${data}"`, '  max_memory_store: 1GB', '  max_file_store: 20GB', '}', ''].join('\n'),
  );
  return ServerProcess.start('nats-server', 'nats-server', ['-c', conf], /Server is ready/);
}

export async function natsOpen(port: number, name: string): Promise<NatsConnection> {
  return natsConnect({ servers: `127.0.0.1:${port}`, name, reconnect: false, timeout: 10_000 });
}

/** The stream (file storage, MaxAge = td). */
export async function natsCreateStream(port: number, tdMs: number): Promise<void> {
  const nc = await natsOpen(port, 'bench-admin');
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: NATS_STREAM, subjects: [NATS_SUBJECT], storage: StorageType.File, max_age: nanos(tdMs), num_replicas: 1 });
  } finally {
    await nc.close();
  }
}

/** A durable consumer that starts with the messages published from now on (a member joining the group). */
export async function natsCreateDurable(port: number, durable: string): Promise<void> {
  const nc = await natsOpen(port, 'bench-admin');
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add(NATS_STREAM, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      max_ack_pending: RECEIVER_WINDOW,
      ack_wait: nanos(60_000),
    });
  } finally {
    await nc.close();
  }
}

export class NatsSender {
  private readonly encoder = new TextEncoder();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
  ) {}

  static async connect(port: number, id: string): Promise<NatsSender> {
    const nc = await natsOpen(port, id);
    return new NatsSender(nc, nc.jetstream({ timeout: 60_000 }));
  }

  /** JetStream publish; resolves on the stream's PubAck (the message is stored). */
  async send(text: string): Promise<void> {
    await this.js.publish(NATS_SUBJECT, this.encoder.encode(text));
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

// ---------------------------------------------------------------------------
// receivers (child processes)

export type RefSystem = 'mqtt' | 'nats';

/**
 * A receiver child (pm-receiver.ts): `connect` → "ok connect at=T" (T: epoch
 * ms when the broker accepted the session: MQTT's CONNACK, or the start of
 * NATS's pull consumer), `disconnect`, `quit`.
 */
export class RefReceiver extends LineProcess {
  constructor(
    system: RefSystem,
    port: number,
    readonly id: string,
    readonly logPath: string,
  ) {
    super(`${system} receiver ${id}`, process.execPath, [...TSX_IMPORT, RECEIVER_TS, system, String(port), id, logPath]);
  }

  static at(line: string): number {
    const m = /\bat=(\d+(\.\d+)?)/.exec(line);
    if (!m) throw new Error(`no at= in '${line}'`);
    return Number(m[1]);
  }
}

/**
 * An MQTT receiver that is mosquitto's own C client (`mosquitto_sub` from
 * mosquitto-clients, MQTT 5, persistent session: -c, session expiry 1 h, QoS 1),
 * its standard output appended to the log: one payload per line. Online = the
 * process runs; `disconnect` ends it with SIGTERM (it disconnects, the session
 * stays on the broker). `register` makes the session and its subscription and
 * returns (-E).
 */
export class MosquittoSubReceiver {
  private proc: ChildProcess | undefined;

  constructor(
    readonly port: number,
    readonly id: string,
    readonly logPath: string,
  ) {}

  private args(): string[] {
    return ['-h', '127.0.0.1', '-p', String(this.port), '-V', '5', '-i', this.id, '-c', '-x', '3600', '-q', '1', '-t', MQTT_TOPIC];
  }

  async register(): Promise<void> {
    const p = track(spawn('mosquitto_sub', [...this.args(), '-E'], { stdio: ['ignore', 'ignore', 'pipe'] }));
    const code = await new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c)));
    if (code !== 0) throw new Error(`mosquitto_sub -E for ${this.id} exited with ${code}`);
    await this.connect();
  }

  /** Starts the client; resolves with the spawn time (epoch ms). */
  async connect(): Promise<number> {
    if (this.proc && running(this.proc)) throw new Error(`${this.id} is online already`);
    const fd = openSync(this.logPath, 'a');
    const at = Date.now();
    this.proc = track(spawn('mosquitto_sub', this.args(), { stdio: ['ignore', fd, 'pipe'] }));
    closeSync(fd);
    return at;
  }

  async disconnect(): Promise<void> {
    if (this.proc) await stopChild(this.proc, 'SIGTERM', 5_000);
    this.proc = undefined;
  }
}
