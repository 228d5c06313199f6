import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isValidNodeId } from '../core/ids.js';

/**
 * What a node keeps in its data directory to stay itself across restarts:
 * its id and the last incarnation it used. Each start takes
 * max(previous + 1, unix seconds), so incarnations grow even if the file is
 * lost (as long as the clock does not go back).
 */
export interface Identity {
  readonly id: string;
  readonly incarnation: number;
}

export class DataDirError extends Error {
  override name = 'DataDirError';
}

const IDENTITY_FILE = 'node.json';
const LOCK_FILE = 'LOCK';

export function loadIdentity(dataDir: string, requestedId: string | undefined, nowMs: number): Identity {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, IDENTITY_FILE);
  let previous: { id?: unknown; incarnation?: unknown } | undefined;
  try {
    previous = JSON.parse(readFileSync(path, 'utf8')) as typeof previous;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new DataDirError(`${path} is unreadable or corrupt: ${(err as Error).message}`);
  }
  const storedId = typeof previous?.id === 'string' ? previous.id : undefined;
  if (requestedId !== undefined && storedId !== undefined && storedId !== requestedId) {
    throw new DataDirError(`data dir ${dataDir} belongs to node '${storedId}', not '${requestedId}'`);
  }
  const id = requestedId ?? storedId ?? generateNodeId();
  if (!isValidNodeId(id)) throw new DataDirError(`invalid node id '${id}' in ${path}`);
  const previousIncarnation = typeof previous?.incarnation === 'number' ? previous.incarnation : 0;
  const incarnation = Math.max(previousIncarnation + 1, Math.floor(nowMs / 1000));
  writeFileAtomic(path, `${JSON.stringify({ id, incarnation })}\n`);
  return { id, incarnation };
}

/**
 * Takes the data directory for this process. A LOCK file holds the owner's
 * PID; a lock whose process is gone (kill -9) is taken over.
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processExists(owner)) {
        throw new DataDirError(`data dir ${dataDir} is in use by process ${owner}`);
      }
      unlinkSync(path);
    }
  }
  throw new DataDirError(`cannot lock data dir ${dataDir}`);
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function generateNodeId(): string {
  const bytes = randomBytes(8);
  let id = 'n';
  for (const b of bytes) id += BASE62[b % 62];
  return id;
}

export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
