import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseClusterFile } from '../../src/cli/cluster-file.js';
import { UsageError } from '../../src/cli/exit.js';

const parse = (o: unknown) => parseClusterFile(typeof o === 'string' ? o : JSON.stringify(o), 'c.json');
const fails = (o: unknown, pattern: RegExp) =>
  assert.throws(() => parse(o), (e: unknown) => e instanceof UsageError && pattern.test(e.message) && !e.message.includes('\n'));

test('the example of DESIGN.md parses, with defaults filled in', () => {
  const c = parse({ name: 'demo', nodes: [{ id: 1, host: '127.0.0.1', port: 7001 }, { id: '2', host: '127.0.0.1', port: 7002 }], links: [['1', 2]] });
  assert.equal(c.name, 'demo');
  assert.deepEqual(c.nodes.map((n) => n.id), ['1', '2']);
  assert.deepEqual(c.links, [['1', '2']]);
  assert.equal(c.multicast.group, '239.255.77.77');
  assert.equal(c.multicast.interface, undefined);
  assert.ok(Object.isFrozen(c));
});

test('every problem names the file and the field', () => {
  fails('{ "nodes": [ }', /^c\.json: not valid JSON: .* line 1 column \d+/);
  fails([], /^c\.json: the top level must be a JSON object/);
  fails({ nodes: [{ id: 'a', host: 'h', port: 'x' }] }, /^c\.json: nodes\[0\]\.port must be an integer/);
  fails({ nodes: [{ id: 'a b', host: 'h', port: 1 }] }, /nodes\[0\]\.id must be/);
  fails({ nodes: [{ id: 'a', host: 'h', port: 1 }, { id: 'a', host: 'h', port: 2 }] }, /nodes\[1\]\.id 'a' appears twice/);
  fails({ nodes: [{ id: 'a', host: 'h', port: 1 }, { id: 'b', host: 'h', port: 1 }] }, /nodes\[1\] uses h:1/);
  fails({ nodes: [], colour: 'red' }, /unknown field 'colour'/);
  fails({ nodes: [], multicast: { group: '10.77.0.1' } }, /multicast\.group must be an IPv4 multicast address/);
  fails({ nodes: [{ id: 'a', host: 'h', port: 1 }], links: [['a', 'z']] }, /links\[0\] names node 'z'/);
  fails({ nodes: [{ id: 'a', host: 'h', port: 1 }], links: [['a', 'a']] }, /links\[0\] links node 'a' to itself/);
  fails({ name: 'no spaces please', nodes: [] }, /name must be/);
});
