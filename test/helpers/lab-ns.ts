/**
 * Listing and removing the lab's namespaces. Removal first kills the processes
 * still inside them (`ip netns pids`): those can only have been started by the
 * lab or by a human inside a lab built by gvlab, and a namespace whose
 * processes live on keeps its veths (and its traffic) alive after `ip netns del`.
 */
import { parseName } from './lab-names.js';
import { run, runSync } from './lab-sh.js';

export async function listNamespaces(): Promise<string[]> {
  return parseNsList(await run(['ip', 'netns', 'list']));
}

export function listNamespacesSync(): string[] {
  return parseNsList(runSync(['ip', 'netns', 'list']));
}

/** `ip netns list` prints "name (id: 3)" or just "name", one per line. */
function parseNsList(out: string): string[] {
  return out.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.length > 0);
}

function killPids(out: string): void {
  for (const tok of out.split(/\s+/)) {
    const pid = Number(tok);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Kills what runs inside each namespace, then deletes it (hosts before the bridge is fine either way). */
export async function removeNamespaces(names: readonly string[]): Promise<string[]> {
  const errors: string[] = [];
  for (const ns of names) {
    try {
      killPids(await run(['ip', 'netns', 'pids', ns]));
    } catch {
      // the namespace may already be gone; deletion below reports real trouble
    }
  }
  for (const ns of names) {
    try {
      await run(['ip', 'netns', 'del', ns]);
    } catch (err) {
      if (!/No such file|not exist/i.test(String(err))) errors.push(String(err));
    }
  }
  return errors;
}

export function removeNamespacesSync(names: readonly string[]): void {
  for (const ns of names) {
    try {
      killPids(runSync(['ip', 'netns', 'pids', ns]));
    } catch {
      // gone already
    }
    try {
      runSync(['ip', 'netns', 'del', ns]);
    } catch {
      // best effort at exit: cleanStale() of the next run removes leftovers
    }
  }
}

function ownerAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM means it exists but is not ours: treat as alive, never delete another's lab
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface StaleOptions {
  /** Also remove labs built by the gvlab CLI (owner `keep`), except these runs. */
  readonly includeKept?: boolean;
  readonly exceptRuns?: readonly string[];
}

/**
 * Namespaces named by this lab code (see lab-names.ts) whose owning process is
 * gone. Labs of live processes, e.g. a concurrent test run, are never listed.
 */
export async function staleNamespaces(prefix: string, opts: StaleOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for (const ns of await listNamespaces()) {
    const p = parseName(prefix, ns);
    if (!p || opts.exceptRuns?.includes(p.run)) continue;
    if (p.ownerPid === undefined ? opts.includeKept === true : !ownerAlive(p.ownerPid)) out.push(ns);
  }
  return out;
}
