// Supervision with a real failure: a node told to multicast on an interface
// address its host does not have yet cannot open its beacon sockets. The node
// must keep running and serving status while the supervisor retries the
// beacon service with backoff, and the service must come up — and the node
// join its peer — once the address appears.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, labTestOptions, requireLab } from '../helpers/lab.js';
import { logRecords, startNode, statusOf, waitUntil } from '../helpers/lab-cluster.js';

const PORT = 7000;
const LATE_IFACE = '10.77.0.50';

test('a failing beacon service is restarted with backoff and recovers; the node keeps serving', labTestOptions({ timeout: 60_000 }), async (t) => {
  requireLab();
  const lab = await Lab.create({ hosts: 2 });
  t.after(() => lab.destroy());

  const late = startNode(lab, 0, { port: PORT, mcastInterface: LATE_IFACE, extraArgs: ['--id', 'late'] });
  const peer = startNode(lab, 1, { port: PORT, extraArgs: ['--id', 'peer', '--mcast-interface', lab.host(1).ip] });

  const beaconFailures = () => logRecords(late).filter((r) => r.msg === 'service failed; restarting' && r.service === 'beacon');
  await waitUntil(() => beaconFailures().length >= 3, 10_000, 100, () => `beacon failures logged: ${beaconFailures().length}`);
  const delays = beaconFailures().map((r) => Number(r.restartInMs));
  assert.ok(delays[2]! > delays[0]!, `backoff grows: ${delays.join(', ')} ms`);

  // Still serving meanwhile, and alone: it cannot hear or be heard.
  const lonely = await statusOf(lab, 0, PORT);
  assert.equal(lonely.id, 'late');
  assert.deepEqual(lonely.members.map((m) => m.id), ['late']);

  await lab.exec(0, ['ip', 'addr', 'add', `${LATE_IFACE}/24`, 'dev', 'eth0']);
  await waitUntil(() => logRecords(late).some((r) => r.msg === 'service restarted' && r.service === 'beacon'), 15_000, 100, () => 'no "service restarted" log for beacon');
  await waitUntil(async () => {
    const [a, b] = [await statusOf(lab, 0, PORT), await statusOf(lab, 1, PORT)];
    return [a, b].every((s) => s.members.length === 2 && s.members.every((m) => m.state === 'alive'));
  }, 5_000, 200, () => 'late and peer do not see each other alive');
  assert.equal(late.proc.exitCode, null);
  assert.equal(peer.proc.exitCode, null);
});
