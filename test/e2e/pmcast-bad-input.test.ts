// Seed 004, bad input through the real binaries on 127.0.0.1:
//   - a coordinator or participant config with a missing or malformed line:
//     exit 2 and exactly one stderr line naming the file and the line;
//     a coordinator port someone else holds: exit 1, one line;
//   - a running participant given an unknown command, `msend` before
//     `register`, `reconnect` while online, a receiver port already in use,
//     a bad port: one `error:` line each, and it keeps running (the next
//     command works; the guarantees still hold afterwards);
//   - a coordinator that is down (nothing listening) or hung (accepts TCP,
//     never answers): a clear `error:` line, at once or within the timeout
//     (--timeout-ms, default 5000 ms), never a hang; quit and end of input
//     still end the participant with status 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { assertGuarantees, Coordinator, COORDINATOR, holdPort, PARTICIPANT, PmParticipant, portIsFree, writeCoordinatorConfig } from '../helpers/pmcast.js';
import { freePort, runCli, tempDir } from '../helpers/proc.js';
import type { CliResult } from '../helpers/proc.js';

/** Exit `code`, nothing on stdout, exactly one stderr line "PROGRAM: ..." mentioning every needle, no stack trace. */
function assertOneLine(r: CliResult, program: string, code: number, needles: readonly string[], what: string): void {
  assert.equal(r.code, code, `${what}: exit status ${r.code} (want ${code}); stderr: ${r.stderr}`);
  assert.equal(r.stderrLines.length, 1, `${what}: want exactly one stderr line, got ${r.stderrLines.length}:\n${r.stderr}`);
  const line = r.stderrLines[0]!;
  assert.ok(line.startsWith(`${program}: `), `${what}: ${line}`);
  assert.doesNotMatch(line, /internal error|\bat .+:\d+:\d+/, `${what}: ${line}`);
  for (const n of needles) assert.ok(line.includes(n), `${what}: '${line}' should mention '${n}'`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
}

test('pmcast: a coordinator or participant config with a missing or malformed line exits 2 naming the file and the line', async (t) => {
  const dir = tempDir(t, 'grapevine-pmcast-bad-');
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const coordinatorCases: { what: string; path: string; needles: string[] }[] = [
    { what: 'empty file', path: file('c-empty.conf', ''), needles: ['line 1'] },
    { what: 'td line missing', path: file('c-no-td.conf', '5000\n'), needles: ['line 2', 'missing'] },
    { what: 'port not a number', path: file('c-port-x.conf', 'five\n3\n'), needles: ['line 1', "'five'"] },
    { what: 'port out of range', path: file('c-port-big.conf', '70000\n3\n'), needles: ['line 1', "'70000'"] },
    { what: 'td not a number', path: file('c-td-x.conf', '5000\nsoon\n'), needles: ['line 2', "'soon'"] },
    { what: 'td negative', path: file('c-td-neg.conf', '5000\n-1\n'), needles: ['line 2', "'-1'"] },
    { what: 'a third line', path: file('c-extra.conf', '5000\n3\n127.0.0.1\n'), needles: ['line 3'] },
    { what: 'no such file', path: join(dir, 'c-absent.conf'), needles: ['no such file'] },
  ];
  const participantCases: { what: string; path: string; needles: string[] }[] = [
    { what: 'empty file', path: file('p-empty.conf', ''), needles: ['line 1'] },
    { what: 'id with a space', path: file('p-id-space.conf', 'p 1\np.log\n127.0.0.1 5000\n'), needles: ['line 1'] },
    { what: 'log line missing', path: file('p-no-log.conf', 'p1\n'), needles: ['line 2'] },
    { what: 'log line empty', path: file('p-empty-log.conf', 'p1\n\n127.0.0.1 5000\n'), needles: ['line 2'] },
    { what: 'coordinator line missing', path: file('p-no-addr.conf', 'p1\np1.log\n'), needles: ['line 3'] },
    { what: 'coordinator port missing', path: file('p-no-port.conf', 'p1\np1.log\n127.0.0.1\n'), needles: ['line 3', "'127.0.0.1'"] },
    { what: 'coordinator host not an IP', path: file('p-host.conf', 'p1\np1.log\ncoordinator 5000\n'), needles: ['line 3', "'coordinator 5000'"] },
    { what: 'coordinator port malformed', path: file('p-port.conf', 'p1\np1.log\n127.0.0.1 50x0\n'), needles: ['line 3', "'50x0'"] },
    { what: 'IP:PORT instead of IP PORT', path: file('p-colon.conf', 'p1\np1.log\n127.0.0.1:5000\n'), needles: ['line 3'] },
    { what: 'a fourth line', path: file('p-extra.conf', 'p1\np1.log\n127.0.0.1 5000\nmore\n'), needles: ['line 4'] },
  ];
  const runs = await Promise.all([
    ...coordinatorCases.map(async (c) => ({ c, program: 'coordinator', r: await runCli([c.path, '--data-dir', join(dir, 'data')], { script: COORDINATOR }) })),
    ...participantCases.map(async (c) => ({ c, program: 'participant', r: await runCli([c.path], { script: PARTICIPANT }) })),
  ]);
  for (const { c, program, r } of runs) assertOneLine(r, program, 2, [c.path, ...c.needles], `${program} config: ${c.what}`);

  // Not the config, but the same contract: a port someone holds is an operational failure (exit 1).
  const taken = await freePort();
  await holdPort(t, taken);
  const held = file('c-taken.conf', `${taken}\n2\n`);
  assertOneLine(await runCli([held, '--data-dir', join(dir, 'data-taken')], { script: COORDINATOR }), 'coordinator', 1, [`${taken}`, 'in use'], 'coordinator on a taken port');
});

test('pmcast: bad commands get one error line and the participant keeps running', async (t) => {
  const dir = tempDir(t, 'grapevine-pmcast-bad-');
  const port = await freePort();
  const tdMs = 2_000;
  await Coordinator.start(t, writeCoordinatorConfig(join(dir, 'coordinator.conf'), port, tdMs / 1000), port);
  const a = new PmParticipant(t, 'a', dir, port).start();
  const b = new PmParticipant(t, 'b', dir, port).start();
  const taken = await freePort();
  await holdPort(t, taken);
  const [pa, pa2, pb] = [await freePort(), await freePort(), await freePort()];

  const refused = async (line: string, pattern: RegExp) => {
    const answer = await a.command(line);
    assert.match(answer, /^error: \S/, `'${line}' should be refused in one error line`);
    assert.match(answer, pattern, `'${line}': ${answer}`);
  };
  await refused('fly me to the moon', /unknown command 'fly'/);
  await refused('msend too-early', /not registered/);
  await refused(`reconnect ${pa}`, /not registered/);
  await refused('disconnect', /not registered/);
  await refused('register', /port/);
  await refused('register 0', /port/);
  await refused('register http', /port/);
  await refused(`register ${taken}`, new RegExp(`port ${taken} is already in use`));
  await a.register(pa);
  await b.register(pb);
  await refused(`reconnect ${pa2}`, /already online/);
  await refused(`register ${pa2}`, /already registered/);
  await refused('quit now', /takes no argument/);
  await a.msend('bad-works-1');
  await a.disconnect();
  await refused('disconnect', /already offline/);
  await refused(`reconnect ${taken}`, new RegExp(`port ${taken} is already in use`));
  await b.msend('bad-while-away');
  await a.reconnect(pa2);
  await a.msend('bad-works-2');
  // One answer per command, nothing else on stdout; no log noise on stderr either.
  assert.equal(a.proc!.seen.stdout, a.transcript.length);
  assert.deepEqual(a.proc!.stderr, []);
  assert.ok(a.proc!.running);

  await assertGuarantees(tdMs, [a, b]);
  assert.deepEqual(a.log(), ['bad-works-1', 'bad-while-away', 'bad-works-2']);
  await a.quit();
  // End of input is quit.
  b.proc!.child.stdin!.end();
  assert.equal((await b.proc!.exited).code, 0);
});

test('pmcast: a coordinator that is down or hung gives a clear error within the timeout, no hang', async (t) => {
  const dir = tempDir(t, 'grapevine-pmcast-bad-');
  // Down: nothing listens on the coordinator's port.
  const nobody = await freePort();
  const down = new PmParticipant(t, 'down', dir, nobody).start();
  let started = Date.now();
  const refusedAnswer = await down.command(`register ${await freePort()}`);
  const refusedMs = Date.now() - started;
  assert.match(refusedAnswer, new RegExp(`^error: cannot reach the coordinator at 127\\.0\\.0\\.1:${nobody}`));
  assert.ok(refusedMs < 2_000, `a refused connection is reported at once (${refusedMs} ms)`);
  assert.match(await down.command('msend nobody-hears'), /^error: not registered/);

  // Hung: it accepts connections and never says a word.
  const hung = net.createServer(() => undefined);
  const sockets = new Set<net.Socket>();
  hung.on('connection', (s) => sockets.add(s));
  const hungPort = await freePort();
  await new Promise<void>((resolve) => hung.listen({ host: '127.0.0.1', port: hungPort }, resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        hung.close(() => resolve());
      }),
  );
  const quick = new PmParticipant(t, 'quick', dir, hungPort, ['--timeout-ms', '600']).start();
  const patient = new PmParticipant(t, 'patient', dir, hungPort).start();
  const [qp, pp] = [await freePort(), await freePort()];
  started = Date.now();
  const [quickAnswer, patientAnswer] = await Promise.all([
    quick.command(`register ${qp}`).then((a) => ({ a, ms: Date.now() - started })),
    patient.command(`register ${pp}`).then((a) => ({ a, ms: Date.now() - started })),
  ]);
  assert.match(quickAnswer.a, new RegExp(`^error: .*coordinator at 127\\.0\\.0\\.1:${hungPort}`));
  assert.ok(quickAnswer.ms >= 500 && quickAnswer.ms < 2_000, `--timeout-ms 600: answered after ${quickAnswer.ms} ms`);
  assert.match(patientAnswer.a, new RegExp(`^error: .*coordinator at 127\\.0\\.0\\.1:${hungPort}`));
  assert.ok(patientAnswer.ms >= 4_500 && patientAnswer.ms < 7_000, `default timeout 5000 ms: answered after ${patientAnswer.ms} ms`);
  // The failed register released its receiver port, and the participant is still there.
  assert.ok(await portIsFree(qp) && (await portIsFree(pp)), 'a failed register releases its receiver port');
  const again = await quick.command(`register ${qp}`);
  assert.match(again, /^error: .*coordinator/, 'quick tries again');
  for (const p of [down, quick, patient]) {
    await p.quit();
    assert.deepEqual(p.sent, []);
  }
  t.diagnostic(`refused: ${refusedMs} ms; hung with --timeout-ms 600: ${quickAnswer.ms} ms; default: ${patientAnswer.ms} ms`);
});
