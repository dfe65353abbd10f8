import { readFileSync } from 'node:fs';

/**
 * Source ports for dials from a SNAT address, chosen here instead of by the kernel.
 * `bind(address, 0)` hands out a port only if no socket of that address holds it, TIME_WAIT
 * included, so once the ephemeral range of one address has been used within a minute (about 470
 * new upstream connections a second on Linux's default range) every dial fails with EADDRINUSE,
 * whatever its destination. nginx avoids that with IP_BIND_ADDRESS_NO_PORT, which Node cannot
 * set. Binding an explicit port (libuv sets SO_REUSEADDR) is refused only by a listener on it, and
 * the connect is refused (EADDRNOTAVAIL) only when the same four-tuple is taken: the limit becomes
 * the ports per destination, as with nginx. Ports cycle through the host's ephemeral range, skip
 * its reserved ports, and start at a random point so processes do not walk in step.
 */
export interface SnatPortRange {
  readonly low: number;
  readonly high: number;
  readonly reserved: ReadonlySet<number>;
}

const LINUX_DEFAULT: SnatPortRange = { low: 32768, high: 60999, reserved: new Set() };

function readProc(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** `ip_local_reserved_ports`: "8080,9000-9100" or empty. */
function parseReserved(text: string | undefined): Set<number> {
  const ports = new Set<number>();
  for (const part of (text ?? '').trim().split(',')) {
    const [from, to = from] = part.split('-').map(Number);
    if (!Number.isInteger(from) || !Number.isInteger(to) || (from as number) < 1) continue;
    for (let port = from as number; port <= Math.min(to as number, 65535); port += 1) ports.add(port);
  }
  return ports;
}

/** The host's (this network namespace's) ephemeral range, read once; Linux's default elsewhere. */
export function hostPortRange(): SnatPortRange {
  const [low, high] = (readProc('ip_local_port_range') ?? '').trim().split(/\s+/).map(Number);
  if (!Number.isInteger(low) || !Number.isInteger(high) || (low as number) < 1 || (high as number) < (low as number)) {
    return LINUX_DEFAULT;
  }
  return { low: low as number, high: high as number, reserved: parseReserved(readProc('ip_local_reserved_ports')) };
}

/** One cursor per source address over one range. */
export class SnatPortCursor {
  readonly #range: SnatPortRange;
  readonly #next = new Map<string, number>();

  constructor(range: SnatPortRange = hostPortRange()) {
    this.#range = range;
  }

  /** The next port to try from `address` (never a reserved one unless the whole range is). */
  next(address: string): number {
    const { low, high, reserved } = this.#range;
    const size = high - low + 1;
    let port = this.#next.get(address) ?? low + Math.floor(Math.random() * size);
    for (let step = 0; step < size && reserved.has(port); step += 1) port = port >= high ? low : port + 1;
    this.#next.set(address, port >= high ? low : port + 1);
    return port;
  }
}
