/**
 * Ordering of members on the ring: (IP as a number, port, id) — seed 000's
 * "order the ip addresses". IPv4 sorts before IPv6; each family compares
 * numerically through a fixed-width hex form.
 */
export interface Endpoint {
  readonly id: string;
  readonly host: string;
  readonly port: number;
}

export function parseIpv4(host: string): number | undefined {
  const parts = host.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

/** Fixed-width sortable form of an address: "4:" + 8 hex or "6:" + 32 hex; other text sorts last. */
export function addressSortKey(host: string): string {
  const v4 = parseIpv4(host);
  if (v4 !== undefined) return `4:${v4.toString(16).padStart(8, '0')}`;
  const v6 = expandIpv6(host);
  if (v6 !== undefined) return `6:${v6}`;
  return `9:${host}`;
}

function expandIpv6(host: string): string | undefined {
  if (!host.includes(':') || !/^[0-9a-fA-F:]+$/.test(host)) return undefined;
  const halves = host.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const groups = [...head, ...Array<string>(missing).fill('0'), ...tail];
  if (groups.some((g) => g.length === 0 || g.length > 4)) return undefined;
  return groups.map((g) => g.toLowerCase().padStart(4, '0')).join('');
}

export function compareEndpoints(a: Endpoint, b: Endpoint): number {
  const ka = addressSortKey(a.host);
  const kb = addressSortKey(b.host);
  if (ka !== kb) return ka < kb ? -1 : 1;
  if (a.port !== b.port) return a.port - b.port;
  if (a.id === b.id) return 0;
  return a.id < b.id ? -1 : 1;
}
