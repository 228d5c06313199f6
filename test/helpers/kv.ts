// Shared by the cache (kv) e2e and lab tests: what `grapevine kv list`
// prints, a node's whole cache through the client library, "do these nodes
// hold the same thing", one reconnecting client per node, exactly-one-line
// error checks, a hostile peer's handshake, and a two-sided partition of lab
// hosts with iptables.
import assert from 'node:assert/strict';
import net from 'node:net';
import { GrapevineClient } from '../../src/api/client.js';
import { FramedConnection } from '../../src/runtime/connection.js';
import { helloBody } from '../../src/runtime/handshake.js';
import type { Envelope } from '../../src/wire/index.js';
import type { BinResult } from './gossip.js';
import type { Lab } from './lab.js';

/** A cache's contents as text: key -> value (both UTF-8). */
export type KvContents = Map<string, string>;

/** How `grapevine kv list` writes a key or a value: a backslash as \\, a newline as \n, a tab as \t. */
export function kvEscape(text: string): string {
  let out = '';
  for (const ch of text) out += ch === '\\' ? '\\\\' : ch === '\n' ? '\\n' : ch === '\t' ? '\\t' : ch;
  return out;
}

/** Bytewise order of the UTF-8 encodings (the cache's key order). */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Exactly what `grapevine kv list` must print for these contents: sorted, one escaped `KEY<TAB>VALUE` line each. */
export function kvListOutput(contents: ReadonlyMap<string, string>): string {
  return [...contents.keys()]
    .sort(compareUtf8)
    .map((k) => `${kvEscape(k)}\t${kvEscape(contents.get(k)!)}\n`)
    .join('');
}

/**
 * Every live key and value a node lists (all pages), checked on the way:
 * each key once and in bytewise order (a duplicate or disorder throws).
 */
export async function kvSnapshot(client: GrapevineClient, pattern?: string, pageSize?: number): Promise<KvContents> {
  const out: KvContents = new Map();
  let last: Buffer | undefined;
  for await (const { key, value } of client.kvList({ pattern, pageSize })) {
    const k = Buffer.from(key);
    if (last !== undefined && Buffer.compare(last, k) >= 0) throw new Error(`kvList of ${client.nodeId}: key ${JSON.stringify(k.toString('utf8'))} after ${JSON.stringify(last.toString('utf8'))} (duplicate or out of order)`);
    last = k;
    out.set(k.toString('utf8'), Buffer.from(value).toString('utf8'));
  }
  return out;
}

/** What differs between a node's contents and the wanted ones; empty when equal. */
export function kvDiff(got: ReadonlyMap<string, string>, want: ReadonlyMap<string, string>, max = 5): string[] {
  const missing: string[] = [];
  const extra: string[] = [];
  const wrong: string[] = [];
  for (const [k, v] of want) {
    const g = got.get(k);
    if (g === undefined) missing.push(k);
    else if (g !== v) wrong.push(`${k}=${JSON.stringify(g.slice(0, 30))} (want ${JSON.stringify(v.slice(0, 30))})`);
  }
  for (const k of got.keys()) if (!want.has(k)) extra.push(k);
  const out: string[] = [];
  const some = (xs: string[]) => xs.slice(0, max).map((x) => JSON.stringify(x.slice(0, 60))).join(', ');
  if (missing.length > 0) out.push(`${missing.length} missing (${some(missing)})`);
  if (extra.length > 0) out.push(`${extra.length} unexpected (${some(extra)})`);
  if (wrong.length > 0) out.push(`${wrong.length} with another value (${wrong.slice(0, max).join(', ')})`);
  return out;
}

/** Problems when the nodes' contents are not all the same (compared with the first); empty when identical. */
export function kvDisagreement<Id extends string | number>(contents: ReadonlyMap<Id, ReadonlyMap<string, string>>): string[] {
  const entries = [...contents];
  if (entries.length === 0) return [];
  const [firstId, first] = entries[0]!;
  return entries.slice(1).flatMap(([id, c]) => kvDiff(c, first, 3).map((p) => `${id} vs ${firstId}: ${p}`));
}

/** One in-process client per node, reconnected after any failure (nodes restart). */
export class KvClients<Id extends string | number = string> {
  private readonly clients = new Map<Id, GrapevineClient>();
  constructor(
    private readonly addressOf: (id: Id) => { host: string; port: number },
    private readonly timeoutMs = 3_000,
  ) {}

  async use<T>(id: Id, fn: (c: GrapevineClient) => Promise<T>): Promise<T> {
    let c = this.clients.get(id);
    if (!c) {
      const { host, port } = this.addressOf(id);
      c = await GrapevineClient.connect(host, port, { timeoutMs: this.timeoutMs });
      this.clients.set(id, c);
    }
    try {
      return await fn(c);
    } catch (err) {
      this.drop(id);
      throw err;
    }
  }

  snapshot(id: Id, pattern?: string): Promise<KvContents> {
    return this.use(id, (c) => kvSnapshot(c, pattern));
  }

  /** Every node's contents at (about) one moment. */
  async snapshots(ids: readonly Id[]): Promise<Map<Id, KvContents>> {
    const all = await Promise.all(ids.map((id) => this.snapshot(id)));
    return new Map(ids.map((id, k) => [id, all[k]!]));
  }

  drop(id: Id): void {
    this.clients.get(id)?.close();
    this.clients.delete(id);
  }

  closeAll(): void {
    for (const id of [...this.clients.keys()]) this.drop(id);
  }
}

/**
 * Exactly one stderr line "grapevine: ..." naming the problem (every needle),
 * no stack trace, nothing on stdout, and the exit status `code`.
 */
export function assertOneLine(r: BinResult, code: number, needles: readonly string[], what: string, program = 'grapevine'): void {
  assert.equal(r.code, code, `${what}: exit status ${r.code} (want ${code}); stderr: ${r.stderr.slice(0, 500)}`);
  assert.equal(r.stderrLines.length, 1, `${what}: want exactly one stderr line, got ${r.stderrLines.length}:\n${r.stderr.slice(0, 1_000)}`);
  const line = r.stderrLines[0]!;
  assert.ok(line.startsWith(`${program}: `), `${what}: '${line}' starts with '${program}: '`);
  assert.doesNotMatch(line, /internal error|\bat .+:\d+:\d+|Error:/, `${what}: ${line}`);
  assert.ok(line.length < 400, `${what}: the line is short (${line.length} chars)`);
  for (const n of needles) assert.ok(line.includes(n), `${what}: '${line}' should mention '${n}'`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
}

// ---- hostile peers ------------------------------------------------------

/**
 * A peer handshake from `localAddress` (our id `peerId`, the node's cluster
 * `cluster`), as a real node would do it. `onEnvelope` sees every frame the
 * node sends from the start (it opens anti-entropy as soon as it accepts us).
 */
export async function greetAsPeer(port: number, localAddress: string, cluster: string, peerId: string, onEnvelope?: (env: Envelope, conn: FramedConnection) => void): Promise<FramedConnection> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', reject);
  });
  socket.on('error', () => undefined); // a reset by the node is what some cases expect
  const conn = new FramedConnection(socket);
  if (onEnvelope) conn.on('envelope', (env) => onEnvelope(env, conn));
  const answer = await conn.request({ body: helloBody({ cluster, id: peerId, incarnation: 1, role: 'peer' }) }, 3_000);
  assert.equal(answer.body.case, 'hello', `the node accepted ${peerId}'s handshake`);
  return conn;
}

/** Resolves with ms until the node closed `conn`, or Infinity if it is still open after `guardMs`. */
export function closedWithin(conn: FramedConnection, guardMs: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    if (conn.isClosed) return resolve(0);
    const timer = setTimeout(() => resolve(Infinity), guardMs);
    conn.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

/** The connection is open and served: a ping is answered. */
export async function pingable(conn: FramedConnection): Promise<boolean> {
  if (conn.isClosed) return false;
  const answer = await conn.request({ body: { case: 'ping', value: { sentMs: 42n } } }, 2_000).catch(() => undefined);
  return answer?.body.case === 'pong';
}

// ---- lab partitions -----------------------------------------------------

const PARTITION_COMMENT = 'gvkv-partition';

function partitionRules(lab: Lab, host: number, others: readonly number[]): string[][] {
  return others.flatMap((j) => [
    ['INPUT', '-s', lab.host(j).ip, '-m', 'comment', '--comment', PARTITION_COMMENT, '-j', 'DROP'],
    ['OUTPUT', '-d', lab.host(j).ip, '-m', 'comment', '--comment', PARTITION_COMMENT, '-j', 'DROP'],
  ]);
}

/**
 * Cuts the lab hosts into two sides: every host drops all packets (unicast
 * and the other side's multicast beacons alike) from and to the hosts of the
 * other side, inside its own namespace. heal() removes exactly these rules.
 */
export async function partition(lab: Lab, sideA: readonly number[], sideB: readonly number[]): Promise<{ heal: () => Promise<void> }> {
  const installed: [number, string[]][] = [];
  const heal = async () => {
    while (installed.length > 0) {
      const [i, rule] = installed.pop()!;
      await lab.exec(i, ['iptables', '-w', '-D', ...rule]);
    }
  };
  try {
    for (const [side, other] of [
      [sideA, sideB],
      [sideB, sideA],
    ] as const) {
      for (const i of side) {
        for (const rule of partitionRules(lab, i, other)) {
          await lab.exec(i, ['iptables', '-w', '-A', ...rule]);
          installed.push([i, rule]);
        }
      }
    }
  } catch (err) {
    await heal().catch(() => undefined);
    throw err;
  }
  return { heal };
}

/** The partition rules now installed in host i (as `iptables -S` prints them). */
export async function partitionRulesOf(lab: Lab, i: number): Promise<string[]> {
  return (await lab.exec(i, ['iptables', '-S'])).split('\n').filter((l) => l.includes(PARTITION_COMMENT));
}
