import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { UsageError } from './exit.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs in strict mode, with its errors turned into one-line
 * UsageErrors ("unknown option --x", "option --port needs a value").
 */
export function parseCli<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const msg = e.message ?? String(err);
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const m = /'([^']+)'/.exec(msg);
      throw new UsageError(`unknown option ${m?.[1] ?? msg} (see --help)`);
    }
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const m = /'([^']+)'/.exec(msg);
      throw new UsageError(`option ${m?.[1]?.split(' ')[0] ?? msg} needs a value`);
    }
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      const m = /'([^']+)'/.exec(msg);
      throw new UsageError(`unexpected argument ${m?.[1] ?? ''} (see --help)`);
    }
    throw new UsageError(msg.split('\n')[0] ?? msg);
  }
}

/** Parses a TCP/UDP port option, naming the option on failure. */
export function parsePort(value: string, option: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${option} must be a port number (1-65535), got '${value}'`);
  const port = Number(value);
  if (port < 1 || port > 65_535) throw new UsageError(`${option} must be a port number (1-65535), got '${value}'`);
  return port;
}

/** Parses HOST:PORT (IPv6 as [addr]:port). */
export function parseHostPort(value: string, option: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:]+):(\d+)$/.exec(value);
  if (!m) throw new UsageError(`${option} must be HOST:PORT, got '${value}'`);
  return { host: m[1]!, port: parsePort(m[2]!, option) };
}

/** Parses a positive integer option. */
export function parsePositiveInt(value: string, option: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new UsageError(`${option} must be an integer from 1 to ${max}, got '${value}'`);
  }
  return Number(value);
}
