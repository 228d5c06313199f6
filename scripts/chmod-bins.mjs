// npm links bin entries on install, but a plain `tsc` emits files without the
// executable bit; set it so `dist/cli/*.js` also run directly.
import { chmodSync, readFileSync, existsSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
for (const rel of Object.values(pkg.bin)) {
  const path = new URL(`../${rel}`, import.meta.url);
  if (existsSync(path)) chmodSync(path, 0o755);
}
