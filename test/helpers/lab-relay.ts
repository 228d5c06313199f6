/**
 * TCP into the lab from the test process, without a process start per query.
 *
 * The test process lives in the root namespace, which has (by design) no route
 * to 10.77.0.x. A relay process inside host i listens on a unix socket in the
 * lab's tmp dir (filesystem sockets cross network namespaces); the test process
 * listens on 127.0.0.1:<ephemeral> and carries each connection to the relay,
 * which dials the target from inside host i. So an in-process client, e.g.
 * `GrapevineClient.connect(fwd.host, fwd.port)`, can poll 16 nodes in
 * milliseconds where `grapevine status` costs ~0.3 s of CPU per call.
 * Only 127.0.0.1 and lab addresses are ever used.
 */
import type { ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';

/** argv: SOCKET_PATH. Each connection starts with "IP PORT\n"; the rest is piped both ways. */
export const RELAY_SCRIPT = `
const net = require('node:net');
const fs = require('node:fs');
const path = process.argv[1];
try { fs.unlinkSync(path); } catch {}
net.createServer((c) => {
  let head = Buffer.alloc(0);
  const onData = (d) => {
    head = Buffer.concat([head, d]);
    const nl = head.indexOf(10);
    if (nl < 0) { if (head.length > 100) c.destroy(); return; }
    c.pause();
    c.off('data', onData);
    const [ip, port] = head.subarray(0, nl).toString().split(' ');
    const t = net.connect({ host: ip, port: Number(port) }, () => {
      if (nl + 1 < head.length) t.write(head.subarray(nl + 1));
      c.pipe(t); t.pipe(c); c.resume();
    });
    const end = () => { c.destroy(); t.destroy(); };
    t.on('error', end); t.on('close', end); c.on('error', end); c.on('close', end);
  };
  c.on('data', onData);
}).listen(path, () => console.log('ready'));
`;

export interface Forward {
  /** Always 127.0.0.1. */
  readonly host: string;
  readonly port: number;
  readonly target: string;
  close(): Promise<void>;
}

/** Waits for the relay's "ready" line (it prints nothing else). */
export function relayReady(proc: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`lab relay pid ${proc.pid} not ready within ${timeoutMs} ms`)), timeoutMs);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`lab relay exited (${code ?? sig}) before it was ready`));
    });
  });
}

/** Listens on 127.0.0.1 and carries each connection through the relay at socketPath to ip:port. */
export async function openForward(socketPath: string, ip: string, port: number): Promise<Forward> {
  const conns = new Set<Socket>();
  const server: Server = createServer((c) => {
    const r = createConnection(socketPath, () => {
      r.write(`${ip} ${port}\n`);
      c.pipe(r);
      r.pipe(c);
    });
    conns.add(c);
    const end = (): void => {
      c.destroy();
      r.destroy();
      conns.delete(c);
    };
    c.on('error', end);
    c.on('close', end);
    r.on('error', end);
    r.on('close', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('forward: no TCP address');
  return {
    host: '127.0.0.1',
    port: addr.port,
    target: `${ip}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.destroy();
        server.close(() => resolve());
      }),
  };
}
