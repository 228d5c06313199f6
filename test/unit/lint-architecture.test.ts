import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';

// The architecture rule of DESIGN.md section 3 is only worth something if the
// linter really rejects these; lint in-memory snippets as if they lived there.
const eslint = new ESLint({ cwd: process.cwd() });
const rulesHit = async (code: string, filePath: string) => {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.map((m) => m.ruleId);
};

test('src/core may not read the clock, randomness, timers, process or node: modules', async () => {
  const file = 'src/core/_probe.ts';
  assert.ok((await rulesHit('export const t = Date.now();\n', file)).includes('no-restricted-globals'));
  assert.ok((await rulesHit('export const r = Math.random();\n', file)).includes('no-restricted-properties'));
  assert.ok((await rulesHit('setTimeout(() => {}, 1);\n', file)).includes('no-restricted-globals'));
  assert.ok((await rulesHit('export const p = process.pid;\n', file)).includes('no-restricted-globals'));
  assert.ok((await rulesHit("import { readFileSync } from 'node:fs';\nexport const f = readFileSync;\n", file)).includes('no-restricted-imports'));
});

test('imports flow one way: core may not import runtime, runtime may not import cli', async () => {
  assert.ok((await rulesHit("import { GrapevineNode } from '../runtime/node.js';\nexport const n = GrapevineNode;\n", 'src/core/_probe.ts')).includes('no-restricted-imports'));
  assert.ok((await rulesHit("import { runMain } from '../cli/exit.js';\nexport const r = runMain;\n", 'src/runtime/_probe.ts')).includes('no-restricted-imports'));
  assert.ok((await rulesHit("import { serveClients } from '../api/server.js';\nexport const s = serveClients;\n", 'src/sim/_probe.ts')).includes('no-restricted-imports'));
});

test('runtime code may use the clock (the rule is for core only)', async () => {
  assert.deepEqual(await rulesHit('export const t = Date.now();\n', 'src/runtime/_probe.ts'), []);
});
