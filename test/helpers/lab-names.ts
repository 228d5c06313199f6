/**
 * Names of the lab's network namespaces. Every name the lab creates is
 *   <prefix>-<owner>-<rnd>-<role>     e.g.  gvlab-p2n9c-x7q-h3
 * where owner is `p` + the owning process's PID in base 36 (a test run) or
 * `keep` (a lab built by the gvlab CLI, which outlives its process), rnd makes
 * concurrent labs of one process distinct, and role is `br` (the bridge) or
 * `h<i>` (host i). The pattern is strict so that stale-lab cleanup can never
 * match a namespace this code did not create.
 */
import { randomBytes } from 'node:crypto';

export const DEFAULT_PREFIX = 'gvlab';
export const KEPT_OWNER = 'keep';

export interface ParsedName {
  readonly run: string; // <prefix>-<owner>-<rnd>: every namespace of one lab shares it
  readonly owner: string;
  readonly ownerPid: number | undefined; // undefined for kept labs
  readonly role: string;
}

/** Prefixes are short lowercase words so they are safe inside a RegExp and a name. */
export function checkPrefix(prefix: string): string {
  if (!/^[a-z][a-z0-9]{1,9}$/.test(prefix)) {
    throw new RangeError(`lab prefix must be 2-10 lowercase letters/digits starting with a letter, got '${prefix}'`);
  }
  return prefix;
}

export function newRunName(prefix: string, keep: boolean): string {
  const owner = keep ? KEPT_OWNER : `p${process.pid.toString(36)}`;
  // 3 base-36 characters from random bytes: collisions only matter within one owner.
  const rnd = [...randomBytes(3)].map((b) => (b % 36).toString(36)).join('');
  return `${checkPrefix(prefix)}-${owner}-${rnd}`;
}

export function bridgeNs(run: string): string {
  return `${run}-br`;
}

export function hostNs(run: string, index: number): string {
  return `${run}-h${index}`;
}

/** Bridge-side veth of host i. It lives in the bridge namespace only, so it needs no run id. */
export function bridgePort(index: number): string {
  return `v${index}`;
}

export function parseName(prefix: string, ns: string): ParsedName | undefined {
  const re = new RegExp(`^(${checkPrefix(prefix)}-(p[0-9a-z]{1,8}|${KEPT_OWNER})-[0-9a-z]{3})-(br|h\\d{1,3})$`);
  const m = re.exec(ns);
  if (!m) return undefined;
  const owner = m[2]!;
  const ownerPid = owner === KEPT_OWNER ? undefined : parseInt(owner.slice(1), 36);
  return { run: m[1]!, owner, ownerPid, role: m[3]! };
}
