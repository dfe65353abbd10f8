import { createHash } from 'node:crypto';

/** How a SNAT pool picks the source address of one upstream connection. */
export type SnatSelection = 'per-identity' | 'round-robin';

/** The source addresses of a listener or rule (`snat:` one address or a list), compiled once per state. */
export interface SnatPool {
  readonly addresses: readonly string[];
  readonly selection: SnatSelection;
}

export function snatPool(addresses: string | readonly string[], selection: SnatSelection = 'per-identity'): SnatPool {
  return Object.freeze({
    addresses: Object.freeze(typeof addresses === 'string' ? [addresses] : [...addresses]),
    selection,
  });
}

/** Round-robin cursors, per pool object: a reload compiles new pools, so the cursor starts again. */
const cursors = new WeakMap<SnatPool, number>();

/** The index a SPIFFE ID always gets in a pool of `size`: the first 4 bytes of its SHA-256. */
export function identityIndex(spiffeId: string, size: number): number {
  return createHash('sha256').update(spiffeId).digest().readUInt32BE(0) % size;
}

/**
 * The addresses to try, in order: the chosen one first, then the rest of the pool (the failover
 * order on address or port exhaustion). per-identity keeps one address per workload, so a
 * firewall still sees one source per SPIFFE ID; round-robin spreads ephemeral ports.
 */
export function snatOrder(pool: SnatPool, spiffeId: string): readonly string[] {
  const size = pool.addresses.length;
  if (size === 1) return pool.addresses;
  let first: number;
  if (pool.selection === 'round-robin') {
    first = cursors.get(pool) ?? 0;
    cursors.set(pool, (first + 1) % size);
  } else {
    first = identityIndex(spiffeId, size);
  }
  return [...pool.addresses.slice(first), ...pool.addresses.slice(0, first)];
}
