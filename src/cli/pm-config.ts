import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { UsageError } from './exit.js';

/**
 * The config files of seed 004, exactly (DESIGN.md section 1). Problems are
 * UsageErrors naming the file and the line: "p1.conf: line 3: ...".
 */
export interface CoordinatorConfig {
  readonly port: number;
  readonly tdMs: number;
}

export interface ParticipantConfig {
  readonly id: string;
  readonly logPath: string;
  readonly coordinatorHost: string;
  readonly coordinatorPort: number;
}

function readLines(path: string, count: number, what: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${path}: cannot read ${what} config (${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)})`);
  }
  const lines = text.split(/\r?\n/);
  while (lines.length > count && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length > count) throw new UsageError(`${path}: line ${count + 1}: unexpected content (a ${what} config has ${count} lines)`);
  return lines;
}

const port = (path: string, line: number, value: string | undefined, what: string): number => {
  const v = (value ?? '').trim();
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65_535) {
    throw new UsageError(`${path}: line ${line}: ${what} must be a port number from 1 to 65535, got '${v}'${v === '' ? ' (missing)' : ''}`);
  }
  return Number(v);
};

export function readCoordinatorConfig(path: string): CoordinatorConfig {
  const lines = readLines(path, 2, 'coordinator');
  const p = port(path, 1, lines[0], 'the coordinator port');
  const td = (lines[1] ?? '').trim();
  if (!/^\d+(\.\d+)?$/.test(td)) throw new UsageError(`${path}: line 2: the persistence threshold td must be a number of seconds such as 30 or 2.5, got '${td}'${td === '' ? ' (missing)' : ''}`);
  const tdMs = Math.round(Number(td) * 1000);
  if (tdMs > 365 * 86_400_000) throw new UsageError(`${path}: line 2: td of ${td} s is more than a year`);
  return Object.freeze({ port: p, tdMs });
}

export function readParticipantConfig(path: string): ParticipantConfig {
  const lines = readLines(path, 3, 'participant');
  const id = (lines[0] ?? '').trim();
  if (!/^[\p{L}\p{N}\p{P}\p{S}]{1,64}$/u.test(id)) throw new UsageError(`${path}: line 1: the participant id must be 1-64 characters without spaces, got '${id}'${id === '' ? ' (missing)' : ''}`);
  const log = (lines[1] ?? '').trim();
  if (log === '') throw new UsageError(`${path}: line 2: the message log file name is missing`);
  const logPath = isAbsolute(log) ? log : join(dirname(resolve(path)), log);
  const parts = (lines[2] ?? '').trim().split(/\s+/);
  if (parts.length !== 2 || isIP(parts[0]!) === 0) {
    throw new UsageError(`${path}: line 3: expected the coordinator's 'IP PORT' (e.g. 127.0.0.1 5000), got '${(lines[2] ?? '').trim()}'`);
  }
  return Object.freeze({ id, logPath, coordinatorHost: parts[0]!, coordinatorPort: port(path, 3, parts[1], 'the coordinator port') });
}
