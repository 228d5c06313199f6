// End-to-end: the real `redis-cli` and `redis-benchmark` (Debian's
// redis-tools; scripts/test.sh installs them) against a real
// `grapevine node --resp PORT` (DESIGN.md section 1, "Cache over the Redis
// protocol"). redis-cli must get Redis's replies for SET/GET/DEL/PING/DBSIZE/
// KEYS/SCAN, what it writes must be the node's cache (read back through
// `grapevine kv get`), and `redis-benchmark -t ping,set,get` must finish
// every test with a throughput and no error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { freePort, randomMcast, runCli, startNode, tempDir } from '../helpers/proc.js';

const TOOLS = ['redis-cli', 'redis-benchmark'] as const;
const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
const skip = missing.length > 0 ? `${missing.join(', ')} not installed (Debian package redis-tools; scripts/test.sh installs it)` : false;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a tool to completion (killed after `timeoutMs`). */
function run(command: string, args: readonly string[], timeoutMs = 10_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test('redis-cli and redis-benchmark work unchanged against grapevine node --resp', { skip, timeout: 180_000 }, async (t) => {
  const port = await freePort();
  const respPort = await freePort();
  const node = await startNode(t, { id: 'n1', port, dataDir: tempDir(t), mcast: randomMcast().arg, extraArgs: ['--resp', String(respPort)] }, 10_000);

  const cli = async (...args: string[]): Promise<string> => {
    const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(respPort), ...args]);
    assert.equal(r.code, 0, `redis-cli ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    assert.equal(r.stderr, '', `redis-cli ${args.join(' ')} wrote to stderr`);
    return r.stdout;
  };

  // Piped (not a terminal), redis-cli prints replies raw: one line per element, nil as an empty line.
  assert.equal(await cli('PING'), 'PONG\n');
  assert.equal(await cli('PING', 'hello there'), 'hello there\n');
  assert.equal(await cli('SET', 'greeting', 'hello world'), 'OK\n');
  assert.equal(await cli('GET', 'greeting'), 'hello world\n');
  assert.equal(await cli('SET', 'greeting', 'other', 'NX'), '\n', 'NX on a present key replies nil');
  assert.equal(await cli('SET', 'temp', 'v', 'EX', '100'), 'OK\n');
  assert.equal(await cli('MSET', 'user:1', 'ann', 'user:2', 'bob', 'user:3', 'cyd'), 'OK\n');
  assert.equal(await cli('MGET', 'user:1', 'nope', 'user:3'), 'ann\n\ncyd\n');
  assert.equal(await cli('EXISTS', 'user:1', 'nope'), '1\n');
  assert.equal(await cli('DBSIZE'), '5\n');
  assert.equal(await cli('KEYS', 'user:*'), 'user:1\nuser:2\nuser:3\n');
  const scan = (await cli('SCAN', '0', 'MATCH', 'user:*', 'COUNT', '100')).split('\n');
  assert.deepEqual(scan, ['0', 'user:1', 'user:2', 'user:3', '']);
  assert.equal(await cli('--scan', '--pattern', 'user:*'), 'user:1\nuser:2\nuser:3\n', 'redis-cli --scan follows the cursors');
  assert.equal(await cli('DEL', 'user:1', 'user:2', 'nope'), '2\n');
  assert.equal(await cli('DEL', 'user:1'), '0\n');
  assert.equal(await cli('GET', 'user:1'), '\n');
  assert.equal(await cli('DBSIZE'), '3\n');
  assert.match(await cli('INFO', 'keyspace'), /^# Keyspace\r?\ndb0:keys=3,expires=0,avg_ttl=0/);
  assert.equal(await cli('CONFIG', 'GET', 'save'), 'save\n\n');
  // redis-cli ends a raw error reply with an empty line (it does so with Redis too).
  assert.equal(await cli('FOO', 'bar'), "ERR unknown command 'FOO', with args beginning with: 'bar' \n\n");

  // What redis-cli wrote is the node's cache.
  const viaNode = await runCli(['kv', 'get', 'greeting', '--addr', `127.0.0.1:${port}`]);
  assert.equal(viaNode.code, 0, viaNode.stderr);
  assert.equal(viaNode.stdout, 'hello world');

  const bench = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(respPort), '-t', 'ping,set,get', '-n', '20000', '-q'], 120_000);
  assert.equal(bench.code, 0, `redis-benchmark exited ${bench.code}: ${bench.stderr}`);
  // -q prints progress lines ending in CR and one summary line per test.
  const lines = `${bench.stdout}\n${bench.stderr}`.split(/[\r\n]+/).map((l) => l.trim()).filter((l) => l.length > 0);
  const summaries = new Map<string, number>();
  for (const line of lines) {
    const m = /^([A-Z_]+): ([0-9.]+) requests per second/.exec(line);
    if (m) summaries.set(m[1]!, Number(m[2]));
  }
  t.diagnostic(`redis-benchmark: ${[...summaries].map(([k, v]) => `${k} ${Math.round(v)}/s`).join(', ')}`);
  for (const name of ['PING_INLINE', 'PING_MBULK', 'SET', 'GET']) {
    assert.ok((summaries.get(name) ?? 0) > 0, `${name} summary with a throughput > 0; output:\n${lines.join('\n')}`);
  }
  const trouble = lines.filter((l) => /error|ERR|WARNING|Could not/i.test(l));
  assert.deepEqual(trouble, [], 'redis-benchmark reported no error or warning');
  // The benchmark's SETs are in the cache: its key is key:__rand_int__ with -r unset.
  assert.equal(await cli('EXISTS', 'key:__rand_int__'), '1\n');
  assert.ok(node.proc.running, 'the node is still up');
});
