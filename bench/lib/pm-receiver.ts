/**
 * A receiver of the pmcast bench's reference systems, run as a child process:
 *
 *   node --import tsx bench/lib/pm-receiver.ts mqtt|nats PORT ID LOGFILE
 *
 * It appends the text of every message it receives to LOGFILE, one line each
 * (written once per event-loop turn, like grapevine's participant writes a
 * delivered batch), and takes commands on stdin:
 *
 *   connect      MQTT: connect the persistent session ID (clean start false,
 *                session expiry 1 h, receive maximum 65,535, Nagle off), subscribing with
 *                QoS 1 the first time; NATS: bind to the durable consumer ID
 *                (created on the first connect, starting with new messages) and
 *                pull with up to 20,000 unacknowledged. Answers "ok connect at=T",
 *                T = epoch ms of the broker's CONNACK / of the start of the pull.
 *   disconnect   end the session (it persists on the broker) → "ok disconnect"
 *   quit         → "ok quit", exit
 *
 * Acknowledgements: NATS messages are acked after their line is written;
 * mqtt.js sends PUBACK as soon as its 'message' handler returned, which is
 * before the write of that turn (mqtt.js has no batched manual ack).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { AckPolicy, DeliverPolicy, connect as natsConnect, nanos } from 'nats';
import type { ConsumerMessages, JsMsg, NatsConnection } from 'nats';
import { MQTT_TOPIC, NATS_STREAM, RECEIVER_WINDOW, mqttNoDelay } from './pm-refs.js';

const [system, portArg, idArg, logArg] = process.argv.slice(2);
if ((system !== 'mqtt' && system !== 'nats') || !portArg || !idArg || !logArg) {
  process.stderr.write('usage: pm-receiver.ts mqtt|nats PORT ID LOGFILE\n');
  process.exit(2);
}
const port = Number(portArg);
const id: string = idArg;
const logPath: string = logArg;
const fd = openSync(logPath, 'a');
const say = (line: string): void => void process.stdout.write(`${line}\n`);

let lines: string[] = [];
let natsPending: JsMsg[] = [];
let flushScheduled = false;

function received(text: string, msg?: JsMsg): void {
  lines.push(`${text}\n`);
  if (msg) natsPending.push(msg);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function flush(): void {
  flushScheduled = false;
  if (lines.length === 0) return;
  const buf = Buffer.from(lines.join(''), 'utf8');
  lines = [];
  let written = 0;
  while (written < buf.length) written += writeSync(fd, buf, written, buf.length - written);
  const acks = natsPending;
  natsPending = [];
  for (const m of acks) m.ack();
}

// --- MQTT -----------------------------------------------------------------

let mqttClient: MqttClient | undefined;

async function mqttOpen(): Promise<number> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 5,
    clientId: id,
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    properties: { sessionExpiryInterval: 3_600, receiveMaximum: 65_535 },
  });
  // Attached before the CONNACK: queued messages follow it at once.
  client.on('message', (_topic, payload) => received(payload.toString('utf8')));
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
    client.once('connect', (p) => {
      mqttNoDelay(client);
      resolve(p);
    });
    client.once('error', reject);
  });
  const at = Date.now();
  mqttClient = client;
  if (!connack.sessionPresent) await client.subscribeAsync(MQTT_TOPIC, { qos: 1 });
  return at;
}

async function mqttClose(): Promise<void> {
  const c = mqttClient;
  mqttClient = undefined;
  await c?.endAsync();
  flush();
}

// --- NATS -----------------------------------------------------------------

let nc: NatsConnection | undefined;
let natsMessages: ConsumerMessages | undefined;
const decoder = new TextDecoder();

async function natsOpen(): Promise<number> {
  const conn = await natsConnect({ servers: `127.0.0.1:${port}`, name: id, reconnect: false, timeout: 10_000 });
  nc = conn;
  const jsm = await conn.jetstreamManager();
  try {
    await jsm.consumers.info(NATS_STREAM, id);
  } catch {
    await jsm.consumers.add(NATS_STREAM, {
      durable_name: id,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      max_ack_pending: RECEIVER_WINDOW,
      ack_wait: nanos(60_000),
    });
  }
  const consumer = await conn.jetstream().consumers.get(NATS_STREAM, id);
  const at = Date.now();
  const messages = await consumer.consume({ max_messages: 1_000 });
  natsMessages = messages;
  void (async () => {
    for await (const m of messages) received(decoder.decode(m.data), m);
  })();
  return at;
}

async function natsClose(): Promise<void> {
  flush();
  natsMessages?.stop();
  natsMessages = undefined;
  const conn = nc;
  nc = undefined;
  await conn?.close();
}

// --- commands ---------------------------------------------------------------

const input = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
for await (const line of input) {
  const cmd = line.trim();
  try {
    if (cmd === 'connect') {
      const at = system === 'mqtt' ? await mqttOpen() : await natsOpen();
      say(`ok connect at=${at}`);
    } else if (cmd === 'disconnect') {
      if (system === 'mqtt') await mqttClose();
      else await natsClose();
      say('ok disconnect');
    } else if (cmd === 'quit') {
      break;
    } else if (cmd !== '') {
      say(`error: unknown command '${cmd}'`);
    }
  } catch (err) {
    say(`error: ${(err as Error).message}`);
  }
}
if (system === 'mqtt') await mqttClose();
else await natsClose();
closeSync(fd);
say('ok quit');
process.exit(0);
