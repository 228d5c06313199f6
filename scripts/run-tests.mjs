// Runs one test tier (unit | sim | e2e | lab) with node:test through tsx.
// Node 20's --test takes no globs, so the files are listed here.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const tiers = process.argv.slice(2);
if (tiers.length === 0) tiers.push('unit', 'sim', 'e2e', 'lab');

function listTests(dir) {
  let out = [];
  let entries = [];
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(listTests(p));
    else if (/\.test\.ts$/.test(e)) out.push(p);
  }
  return out;
}

const files = tiers.flatMap((t) => listTests(join('test', t)));
if (files.length === 0) {
  console.error(`no test files for ${tiers.join(', ')}`);
  process.exit(1);
}
// Lab tests share network namespaces and the machine's 2 cores: run files one at a time.
const concurrency = tiers.includes('lab') || tiers.includes('e2e') ? '1' : '2';
const args = ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
