/**
 * Reference systems from Debian's packages, installed when missing.
 *
 * Packages like mosquitto and nats-server ship an init script or a systemd
 * unit: a broker started by the install would listen on the host's addresses.
 * policy-rc.d answering 101 forbids any service start during the install (the
 * Debian way to install without starting, as in serf.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';

/** Installs `packages` with apt-get unless `probe` (a binary) already runs. */
export function ensureDebianPackages(probe: string, packages: readonly string[], log: (s: string) => void): void {
  if (!spawnSync('sh', ['-c', `command -v ${probe}`]).status) return;
  log(`${probe} is missing: apt-get install -y ${packages.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  let r;
  try {
    const install = (): ReturnType<typeof spawnSync> =>
      spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { stdio: ['ignore', 'inherit', 'inherit'], env });
    r = install();
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], env });
      r = install();
    }
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
  if (r.status !== 0 || spawnSync('sh', ['-c', `command -v ${probe}`]).status) {
    throw new Error(`could not install ${packages.join(' ')} (apt-get install failed)`);
  }
}

/** The installed Debian version of a package, or 'unknown'. */
export function debVersion(pkg: string): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' }).trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}
