// Fails when src/wire/gen no longer matches proto/: regenerates into a
// temporary directory with the pinned local plugin and compares byte by byte.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const out = mkdtempSync(join(tmpdir(), 'gv-gen-'));
try {
  const template = JSON.stringify({
    version: 'v2',
    inputs: [{ directory: 'proto' }],
    plugins: [{ local: 'protoc-gen-es', out, opt: ['target=ts', 'import_extension=js'] }],
  });
  const r = spawnSync('npx', ['--no-install', 'buf', 'generate', '--template', template], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  const files = (dir) => readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
  const fresh = files(out).map((p) => relative(out, p)).sort();
  const committed = files('src/wire/gen').map((p) => relative('src/wire/gen', p)).sort();
  const problems = [];
  if (JSON.stringify(fresh) !== JSON.stringify(committed)) problems.push(`file lists differ: ${committed} vs ${fresh}`);
  for (const f of fresh) {
    if (committed.includes(f) && readFileSync(join(out, f), 'utf8') !== readFileSync(join('src/wire/gen', f), 'utf8')) problems.push(`${f} differs`);
  }
  if (problems.length) {
    console.error(`check:gen: generated code is out of date with proto/ (run npm run gen): ${problems.join('; ')}`);
    process.exit(1);
  }
  console.log('check:gen: src/wire/gen matches proto/');
} finally {
  rmSync(out, { recursive: true, force: true });
}
