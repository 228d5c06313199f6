/**
 * How lab tests behave on a machine that cannot build a lab (not root, no
 * iptables, no `ip netns`): they FAIL with "lab tests cannot run: <reason>".
 * A silent skip would let `npm test` pass without ever exercising real
 * processes, multicast or kill -9, so skipping must be asked for explicitly
 * with GRAPEVINE_LAB=off; then every lab test prints a loud notice and skips.
 *
 * Usage in a lab test file:
 *   test('...', labTestOptions({ timeout: 60_000 }), async () => {
 *     requireLab();            // throws with the reason when the lab cannot run
 *     const lab = await Lab.create({ hosts: 3 });
 *     ...
 *   });
 */
import { Lab } from './lab.js';

export function labDisabled(): boolean {
  return process.env.GRAPEVINE_LAB === 'off';
}

let warned = false;

/** node:test options for a lab test: adds `skip` (and prints a loud notice) only when GRAPEVINE_LAB=off. */
export function labTestOptions<T extends object>(opts: T): T & { skip?: string } {
  if (!labDisabled()) return opts;
  const can = Lab.canRun();
  const reason = `GRAPEVINE_LAB=off: lab tests SKIPPED on request${can.ok ? '' : ` (and they could not run here: ${can.reason})`}`;
  if (!warned) {
    warned = true;
    process.stderr.write(`\n!!!!!! ${reason} !!!!!!\n\n`);
  }
  return { ...opts, skip: reason };
}

/** Throws "lab tests cannot run: <reason>" unless the lab can be built here. */
export function requireLab(): void {
  const can = Lab.canRun();
  if (!can.ok) {
    throw new Error(`lab tests cannot run: ${can.reason}. Run them as root on Linux with iproute2 and iptables, or set GRAPEVINE_LAB=off to skip them explicitly.`);
  }
}
