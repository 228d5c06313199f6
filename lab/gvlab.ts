/**
 * gvlab: the network-namespace lab for humans (the tests use test/helpers/lab.ts
 * directly). Needs root.
 *
 *   node --import tsx lab/gvlab.ts up K        build K hosts (10.77.0.1..K) on a bridge; kept until `down`
 *   node --import tsx lab/gvlab.ts exec I CMD  run CMD inside host I of that lab
 *   node --import tsx lab/gvlab.ts list        show the lab and any other lab namespaces
 *   node --import tsx lab/gvlab.ts down        kill what runs in it and delete its namespaces
 *   node --import tsx lab/gvlab.ts clean [--all]  remove stale labs: those of dead test runs and
 *                                              gvlab labs no longer recorded; --all: the recorded one too
 *
 * State lives in lab/tmp/state.json (git-ignored).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PREFIX, parseName } from '../test/helpers/lab-names.js';
import { listNamespaces, removeNamespaces } from '../test/helpers/lab-ns.js';
import { Lab, MAX_HOSTS } from '../test/helpers/lab.js';
import type { LabHost } from '../test/helpers/lab.js';

const TMP_DIR = fileURLToPath(new URL('./tmp/', import.meta.url));
const STATE_FILE = `${TMP_DIR}state.json`;

interface State {
  readonly run: string;
  readonly prefix: string;
  readonly bridgeNs: string;
  readonly hosts: LabHost[];
  readonly tmpDir: string;
  readonly createdAt: string;
}

class Usage extends Error {}

function readState(): State | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as State;
}

function printLab(s: State): void {
  console.log(`lab ${s.run} (bridge namespace ${s.bridgeNs}, created ${s.createdAt})`);
  console.log('host  namespace                 address');
  for (const h of s.hosts) console.log(`${String(h.index).padEnd(5)} ${h.ns.padEnd(25)} ${h.ip}`);
  const h0 = s.hosts[0]!;
  console.log(`\nrun a command in host I:   node --import tsx lab/gvlab.ts exec I CMD...`);
  console.log(`                      or:   ip netns exec ${h0.ns} CMD...`);
  console.log(`e.g. a node in host 0:      ip netns exec ${h0.ns} node dist/cli/grapevine.js node --host ${h0.ip} --port 7001 --data-dir ${s.tmpDir}/h0`);
  console.log(`tear it down:               node --import tsx lab/gvlab.ts down`);
}

async function up(args: string[]): Promise<number> {
  const k = Number(args[0]);
  if (!Number.isInteger(k) || k < 1 || k > MAX_HOSTS) throw new Usage(`up needs a host count from 1 to ${MAX_HOSTS}, got '${args[0] ?? ''}'`);
  const old = readState();
  if (old && (await listNamespaces()).includes(old.bridgeNs)) {
    console.error(`gvlab: lab ${old.run} is already up; run \`gvlab down\` first`);
    return 1;
  }
  const lab = await Lab.create({ hosts: k, prefix: DEFAULT_PREFIX, keep: true });
  const state: State = { run: lab.run, prefix: DEFAULT_PREFIX, bridgeNs: lab.bridgeNs, hosts: [...lab.hosts], tmpDir: lab.tmpDir, createdAt: new Date().toISOString() };
  mkdirSync(TMP_DIR, { recursive: true });
  writeFileSync(STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
  printLab(state);
  return 0;
}

async function down(): Promise<number> {
  const s = readState();
  if (!s) {
    console.error('gvlab: no lab is up (no lab/tmp/state.json); `gvlab clean` removes leftovers');
    return 1;
  }
  // Only names of the lab's own pattern, in case the state file was edited.
  const names = [...s.hosts.map((h) => h.ns), s.bridgeNs].filter((ns) => parseName(s.prefix, ns)?.run === s.run);
  const existing = new Set(await listNamespaces());
  const errors = await removeNamespaces(names.filter((ns) => existing.has(ns)));
  rmSync(s.tmpDir, { recursive: true, force: true });
  rmSync(STATE_FILE, { force: true });
  for (const e of errors) console.error(`gvlab: ${e}`);
  console.log(`lab ${s.run} removed`);
  return errors.length > 0 ? 1 : 0;
}

async function clean(args: string[]): Promise<number> {
  const all = args.includes('--all');
  const s = readState();
  const keepRun = s && !all ? [s.run] : [];
  const removed = await Lab.cleanStale(DEFAULT_PREFIX, { includeKept: true, exceptRuns: keepRun });
  if (all && s) {
    rmSync(s.tmpDir, { recursive: true, force: true });
    rmSync(STATE_FILE, { force: true });
  }
  console.log(removed.length > 0 ? `removed ${removed.join(' ')}` : 'nothing stale');
  return 0;
}

async function list(): Promise<number> {
  const s = readState();
  if (s) printLab(s);
  else console.log('no gvlab lab is up');
  const others = (await listNamespaces()).filter((ns) => parseName(DEFAULT_PREFIX, ns) && parseName(DEFAULT_PREFIX, ns)?.run !== s?.run);
  if (others.length > 0) console.log(`\nother lab namespaces (test runs, or stale): ${others.join(' ')}`);
  return 0;
}

function exec(args: string[]): number {
  const s = readState();
  if (!s) throw new Usage('no lab is up: run `gvlab up K` first');
  const i = Number(args[0]);
  const host = s.hosts[i];
  if (!Number.isInteger(i) || !host) throw new Usage(`exec needs a host index from 0 to ${s.hosts.length - 1}, got '${args[0] ?? ''}'`);
  const cmd = args.slice(1);
  if (cmd.length === 0) throw new Usage('exec needs a command');
  const r = spawnSync('ip', ['netns', 'exec', host.ns, ...cmd], { stdio: 'inherit' });
  return r.status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  const can = Lab.canRun();
  if (cmd && cmd !== '--help' && !can.ok) {
    console.error(`gvlab: cannot build a lab here: ${can.reason}`);
    return 1;
  }
  switch (cmd) {
    case 'up': return up(args);
    case 'down': return down();
    case 'clean': return clean(args);
    case 'list': return list();
    case 'exec': return exec(args);
    case '--help':
      console.log('usage: gvlab up K | exec I CMD... | list | down | clean [--all]');
      return 0;
    default:
      throw new Usage(`unknown command '${cmd ?? ''}'; usage: gvlab up K | exec I CMD... | list | down | clean [--all]`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`gvlab: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof Usage ? 2 : 1);
  },
);
