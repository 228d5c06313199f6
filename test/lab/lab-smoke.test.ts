/**
 * Smoke test of the lab itself (not of grapevine): 3 hosts on a bridge with
 * real TCP and multicast between namespaces, kill -9 by PID, link cut/heal,
 * iptables loss, and cleanup that leaves no namespace behind.
 *
 * When the lab cannot run here (not root, no iptables) this test FAILS with
 * "lab tests cannot run: <reason>"; GRAPEVINE_LAB=off skips it loudly instead.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { establishedTcp, waitUntil } from '../helpers/lab-cluster.js';
import { listNamespaces } from '../helpers/lab-ns.js';
import { run } from '../helpers/lab-sh.js';
import { Lab, labTestOptions, requireLab } from '../helpers/lab.js';
import { ECHO_CLIENT, ECHO_SERVER, MCAST_RECEIVER, MCAST_SENDER } from './lab-scripts.js';

const NODE = process.execPath;
const ECHO_PORT = 7901;
const MCAST_GROUP = '239.255.77.31';
const MCAST_PORT = 7931;

let lab: Lab | undefined;
after(async () => {
  await lab?.destroy();
});

/** Resolves with the first stdout line of proc that satisfies match. */
async function lineFrom(proc: ChildProcess, match: (line: string) => boolean, timeoutMs: number): Promise<string> {
  const rl = createInterface({ input: proc.stdout! });
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching line from pid ${proc.pid} within ${timeoutMs} ms`)), timeoutMs);
      rl.on('line', (l) => {
        if (match(l)) {
          clearTimeout(timer);
          resolve(l);
        }
      });
      proc.once('exit', (code, sig) => reject(new Error(`pid ${proc.pid} exited (${code ?? sig}) before the line`)));
    });
  } finally {
    rl.close();
  }
}

function echo(l: Lab, from: number, to: number, text: string): Promise<string> {
  return l.exec(from, [NODE, '-e', ECHO_CLIENT, l.host(to).ip, String(ECHO_PORT), text], { timeoutMs: 5_000 });
}

/** One round trip from this process through lab.forward's 127.0.0.1 port. */
async function echoVia(host: string, port: number, text: string): Promise<string> {
  const s = connect({ host, port });
  try {
    await once(s, 'connect');
    s.write(text);
    const [data] = (await once(s, 'data')) as [Buffer];
    return data.toString();
  } finally {
    s.destroy();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('lab: namespaces, TCP, multicast, kill -9, link cut/heal, loss, cleanup', labTestOptions({ timeout: 60_000 }), async () => {
  requireLab();
  const started = performance.now();
  lab = await Lab.create({ hosts: 3 });
  const l = lab;
  const built = performance.now();

  // Layout: one namespace per host plus the bridge, addresses 10.77.0.1..3.
  assert.deepEqual(l.hosts.map((h) => h.ip), ['10.77.0.1', '10.77.0.2', '10.77.0.3']);
  const names = await listNamespaces();
  for (const ns of [l.bridgeNs, ...l.hosts.map((h) => h.ns)]) assert.ok(names.includes(ns), `namespace ${ns} exists`);
  assert.match(await l.exec(1, ['ip', '-4', 'addr', 'show', 'dev', 'eth0']), /inet 10\.77\.0\.2\/24/);
  assert.match(await l.exec(1, ['ip', 'route', 'show', '224.0.0.0/4']), /224\.0\.0\.0\/4 dev eth0/);
  assert.equal((await run(['ip', 'netns', 'exec', l.bridgeNs, 'cat', '/sys/class/net/br0/bridge/multicast_snooping'])).trim(), '0');

  // TCP between namespaces: echo server on host 0, clients on hosts 1 and 2.
  const server = l.spawn(0, [NODE, '-e', ECHO_SERVER, l.host(0).ip, String(ECHO_PORT)]);
  await lineFrom(server, (s) => s === 'listening', 5_000);
  assert.equal((await echo(l, 1, 0, 'from-h1')).trim(), 'from-h1');
  assert.equal((await echo(l, 2, 0, 'from-h2')).trim(), 'from-h2');

  // A held connection shows up in ss on both ends, as one connection (the helper tests use for
  // "exactly one TCP connection"). Runs before any other connection to host 0 exists.
  const holder = l.exec(1, [NODE, '-e', ECHO_CLIENT, l.host(0).ip, String(ECHO_PORT), 'hold', '2000'], { timeoutMs: 6_000 });
  holder.catch(() => undefined); // awaited below; this only keeps an earlier failure from adding an unhandled rejection
  let clientSide: Awaited<ReturnType<typeof establishedTcp>> = [];
  await waitUntil(async () => (clientSide = await establishedTcp(l, 1, ECHO_PORT)).length > 0, 3_000, 50);
  assert.equal(clientSide.length, 1, JSON.stringify(clientSide));
  assert.deepEqual(clientSide[0]!.peer, { host: '10.77.0.1', port: ECHO_PORT });
  const serverSide = await establishedTcp(l, 0, ECHO_PORT);
  assert.deepEqual(serverSide.map((c) => c.peer), [clientSide[0]!.local], JSON.stringify(serverSide));
  assert.equal((await holder).trim(), 'hold');

  // lab.forward: this process (root namespace) reaches host 0 from inside host 1 via 127.0.0.1.
  const fwd = await l.forward(1, ECHO_PORT, l.host(0).ip);
  assert.equal(fwd.host, '127.0.0.1');
  assert.equal(await echoVia(fwd.host, fwd.port, 'via-forward'), 'via-forward');
  assert.deepEqual(await Promise.all([1, 2, 3].map((n) => echoVia(fwd.host, fwd.port, `fwd-${n}`))), ['fwd-1', 'fwd-2', 'fwd-3']);
  await fwd.close();

  // Multicast between namespaces: receivers on hosts 1 and 2, sender on host 0.
  const receivers = [1, 2].map((i) => l.spawn(i, [NODE, '-e', MCAST_RECEIVER, MCAST_GROUP, String(MCAST_PORT), l.host(i).ip]));
  await Promise.all(receivers.map((r) => lineFrom(r, (s) => s === 'ready', 5_000)));
  const heard = receivers.map((r) => lineFrom(r, (s) => s.startsWith('mc-hello'), 5_000));
  await l.exec(0, [NODE, '-e', MCAST_SENDER, MCAST_GROUP, String(MCAST_PORT), l.host(0).ip, 'mc-hello', '10']);
  assert.deepEqual(await Promise.all(heard), ['mc-hello 10.77.0.1', 'mc-hello 10.77.0.1']);

  // ip netns exec execs in place: proc.pid is the process itself, and kill -9 of it ends the server.
  const reported = l.spawn(2, [NODE, '-e', 'console.log(process.pid); setInterval(() => {}, 1000)']);
  assert.equal(Number(await lineFrom(reported, () => true, 5_000)), reported.pid);
  assert.deepEqual(await l.kill9(reported), { code: null, signal: 'SIGKILL' });
  const serverPid = server.pid!;
  assert.deepEqual(await l.kill9(server), { code: null, signal: 'SIGKILL' });
  assert.equal(pidAlive(serverPid), false, 'echo server is gone after kill9');
  await assert.rejects(echo(l, 1, 0, 'after-kill'), /ECONNREFUSED/);

  // Link cut: host 1 cannot reach host 0; heal restores it. Host 1 keeps its address meanwhile.
  const server2 = l.spawn(0, [NODE, '-e', ECHO_SERVER, l.host(0).ip, String(ECHO_PORT)]);
  await lineFrom(server2, (s) => s === 'listening', 5_000);
  await l.cutLink(1);
  await assert.rejects(echo(l, 1, 0, 'cut'), /timeout|EHOSTUNREACH|ENETUNREACH/);
  assert.match(await l.exec(1, ['ip', '-4', 'addr', 'show', 'dev', 'eth0']), /inet 10\.77\.0\.2\/24/);
  assert.equal((await echo(l, 2, 0, 'others-fine')).trim(), 'others-fine');
  await l.healLink(1);
  await waitUntil(async () => (await echo(l, 1, 0, 'healed')).trim() === 'healed', 10_000, 200);

  // Loss: the iptables rules are installed (in and out of eth0), 100 % loss stops traffic, clearLoss removes them.
  await l.addLoss(2, 0.25);
  const rules = await l.listLossRules(2);
  assert.equal(rules.length, 2, rules.join('\n'));
  assert.ok(rules.some((r) => /^-A INPUT -i eth0 -m statistic --mode random --probability 0\.2\d+ .*-j DROP$/.test(r)), rules.join('\n'));
  assert.ok(rules.some((r) => /^-A OUTPUT -o eth0 -m statistic --mode random --probability 0\.2\d+ .*-j DROP$/.test(r)), rules.join('\n'));
  await l.addLoss(2, 1);
  assert.equal((await l.listLossRules(2)).length, 2, 'addLoss replaces the previous rules');
  await assert.rejects(echo(l, 2, 0, 'lossy'), /timeout/);
  await l.clearLoss(2);
  assert.deepEqual(await l.listLossRules(2), []);
  assert.equal((await echo(l, 2, 0, 'clear')).trim(), 'clear');

  // cleanStale removes a dead run's namespaces and never a live lab's.
  const dead = l.spawn(0, ['true']);
  await once(dead, 'exit');
  const staleNs = `gvlab-p${dead.pid!.toString(36)}-zzz-h0`;
  await run(['ip', 'netns', 'add', staleNs]);
  try {
    const removed = await Lab.cleanStale();
    // (a concurrent lab's create() may have removed it first: what matters is that it is gone)
    assert.ok(!(await listNamespaces()).includes(staleNs), `cleanStale removed ${staleNs}: ${removed.join(', ')}`);
    assert.ok(!removed.some((ns) => ns.startsWith(l.run)), 'cleanStale left the live lab alone');
    const ours = await listNamespaces();
    for (const h of l.hosts) assert.ok(ours.includes(h.ns), `${h.ns} still exists`);
  } finally {
    await run(['ip', 'netns', 'del', staleNs]).catch(() => undefined);
  }

  // destroy: no namespace of this run remains, and the processes it started are dead.
  const server2Pid = server2.pid!;
  const run0 = l.run;
  // A forward still being set up when destroy() runs (its relay already up) must not
  // leave a listening server behind (it kept a failed bench process alive): it fails.
  const late = l.forward(1, ECHO_PORT, l.host(0).ip).then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  await l.destroy();
  lab = undefined;
  assert.match(await late, /destroyed while forwarding/);
  assert.deepEqual((await listNamespaces()).filter((ns) => ns.startsWith(run0)), []);
  assert.equal(pidAlive(server2Pid), false, 'destroy killed the processes the lab started');

  const totalMs = performance.now() - started;
  process.stderr.write(`lab smoke: build ${Math.round(built - started)} ms, total ${Math.round(totalMs)} ms\n`);
  assert.ok(totalMs < 60_000);
});
