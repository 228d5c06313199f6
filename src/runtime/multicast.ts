import dgram from 'node:dgram';
import type { Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';

/**
 * Multicast sockets that never pick an interface on their own: every socket
 * names its interface explicitly (IP_MULTICAST_IF and the membership's
 * interface), so multicast leaves only where the configuration says
 * (DESIGN.md "Safe network defaults"; the default interface is 127.0.0.1).
 */
export interface MulticastConfig {
  /** IPv4 multicast group, e.g. 239.255.77.77. */
  readonly group: string;
  readonly port: number;
  /** Address of the local interface to send and join on, e.g. 127.0.0.1. */
  readonly interface: string;
  readonly ttl: number;
}

export function assertMulticastConfig(c: MulticastConfig): void {
  if (!isIPv4(c.group) || !isMulticastGroup(c.group)) throw new RangeError(`multicast group must be an IPv4 address in 224.0.0.0/4, got '${c.group}'`);
  if (!isIPv4(c.interface)) throw new RangeError(`multicast interface must be a local IPv4 address, got '${c.interface}'`);
  if (!(Number.isInteger(c.port) && c.port > 0 && c.port < 65_536)) throw new RangeError(`multicast port must be 1-65535, got ${c.port}`);
  if (!(Number.isInteger(c.ttl) && c.ttl >= 0 && c.ttl <= 255)) throw new RangeError(`multicast ttl must be 0-255, got ${c.ttl}`);
}

export function isMulticastGroup(ip: string): boolean {
  const first = Number(ip.split('.')[0]);
  return first >= 224 && first <= 239;
}

/**
 * Opens a socket that receives the group's datagrams on `interface`. It binds
 * the group address itself (not 0.0.0.0) so it only sees this group's traffic,
 * with SO_REUSEADDR so several processes on one host can all listen.
 */
export async function openMulticastReceiver(c: MulticastConfig): Promise<Socket> {
  assertMulticastConfig(c);
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await bindSocket(socket, c.port, c.group);
  try {
    socket.addMembership(c.group, c.interface);
  } catch (err) {
    socket.close();
    throw new Error(`cannot join multicast group ${c.group} on interface ${c.interface}: ${(err as Error).message}`, { cause: err });
  }
  return socket;
}

/**
 * Opens a socket for sending to the group: bound to `bindHost`:`bindPort`
 * (port 0 for any), sending out of `interface` only, with the given TTL and
 * loopback on (so other processes on this host hear us).
 */
export async function openMulticastSender(c: MulticastConfig, bindHost = c.interface, bindPort = 0): Promise<Socket> {
  assertMulticastConfig(c);
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  await bindSocket(socket, bindPort, bindHost);
  socket.setMulticastInterface(c.interface);
  socket.setMulticastTTL(c.ttl);
  socket.setMulticastLoopback(true);
  return socket;
}

export function bindSocket(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.close();
      reject(err);
    };
    socket.once('error', onError);
    socket.bind({ port, address, exclusive: false }, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

export function sendDatagram(socket: Socket, bytes: Uint8Array, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => socket.send(bytes, port, address, (err) => (err ? reject(err) : resolve())));
}
