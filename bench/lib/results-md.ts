/**
 * bench/RESULTS.md holds one section per benchmark between markers
 *   <!-- bench:NAME:begin --> ... <!-- bench:NAME:end -->
 * Each bench rewrites only its own section, so they can run independently.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

const HEADER = `# Benchmark results

Written by the benchmark scripts (\`npm run bench:*\`). Each script replaces only its
own section (between its \`bench:NAME\` markers) when it runs; the raw figures of every
run are in \`bench/results/\`.
`;

export function writeSection(file: string, name: string, body: string): void {
  const begin = `<!-- bench:${name}:begin -->`;
  const end = `<!-- bench:${name}:end -->`;
  const section = `${begin}\n${body.trimEnd()}\n${end}`;
  const old = existsSync(file) ? readFileSync(file, 'utf8') : HEADER;
  const from = old.indexOf(begin);
  const to = old.indexOf(end);
  let next: string;
  if (from >= 0 && to > from) {
    next = old.slice(0, from) + section + old.slice(to + end.length);
  } else {
    next = `${old.trimEnd()}\n\n${section}\n`;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, next);
}
