/**
 * Tiny `node -e` programs the lab smoke test runs inside hosts: a TCP echo
 * server and client, a multicast receiver and sender. Each takes its
 * parameters from argv so nothing is interpolated into code.
 */

/** argv: HOST PORT. Prints "listening" once bound; echoes every connection's bytes back. */
export const ECHO_SERVER = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
net.createServer((s) => s.pipe(s)).listen(Number(port), host, () => console.log('listening'));
`;

/**
 * argv: HOST PORT TEXT [HOLD_MS]. Connects within 1 s, sends TEXT, prints the
 * echo and exits 0; with HOLD_MS it keeps the connection open that long first
 * (so the test can see it with ss). Exit 1 on timeout or error.
 */
export const ECHO_CLIENT = `
const net = require('node:net');
const [host, port, text, holdMs] = process.argv.slice(1);
const fail = (why) => { console.error(why); process.exit(1); };
const timer = setTimeout(() => fail('timeout'), 1000 + Number(holdMs || 0));
const s = net.connect({ host, port: Number(port) }, () => s.write(text));
s.on('error', (e) => fail(e.message));
s.once('data', (d) => setTimeout(() => { clearTimeout(timer); console.log(String(d)); s.destroy(); }, Number(holdMs || 0)));
`;

/**
 * argv: GROUP PORT IFACE_IP. Joins GROUP on the interface with IFACE_IP, prints
 * "ready", then "<text> <source-ip>" for each datagram; exits after the first.
 */
export const MCAST_RECEIVER = `
const dgram = require('node:dgram');
const [group, port, iface] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (m, r) => { console.log(String(m) + ' ' + r.address); s.close(); });
s.bind(Number(port), () => { s.addMembership(group, iface); console.log('ready'); });
`;

/** argv: GROUP PORT IFACE_IP TEXT COUNT. Sends TEXT COUNT times, 50 ms apart, out of IFACE_IP only, TTL 1. */
export const MCAST_SENDER = `
const dgram = require('node:dgram');
const [group, port, iface, text, count] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.bind(0, iface, () => {
  s.setMulticastInterface(iface);
  s.setMulticastTTL(1);
  let n = 0;
  const t = setInterval(() => {
    s.send(text, Number(port), group);
    if (++n >= Number(count)) { clearInterval(t); setTimeout(() => s.close(), 50); }
  }, 50);
});
`;
