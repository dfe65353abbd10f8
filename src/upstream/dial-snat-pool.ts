import type { Socket } from 'node:net';
import { GatewayError } from '../core/errors.ts';
import { publishRuntimeEvent } from '../core/runtime-event.ts';
import { type DialOptions, dialUpstream } from './dial-upstream.ts';

export interface PoolDialOptions extends DialOptions {
  /** The rest of the SNAT pool, tried in order when `localAddress` is exhausted. */
  readonly fallbacks?: readonly string[];
  /** For the failover counter (egw_snat_failovers_total{listener,address}). */
  readonly listener: string;
}

/** Address or port exhaustion of the source address: another address of the pool may still work. */
const EXHAUSTED = new Set(['EADDRNOTAVAIL', 'EADDRINUSE']);

function exhausted(error: unknown): boolean {
  const cause = error instanceof GatewayError ? (error.cause as NodeJS.ErrnoException | undefined) : undefined;
  return EXHAUSTED.has(cause?.code ?? '');
}

/**
 * Dials from the chosen SNAT address; when that address is gone from the host (EADDRNOTAVAIL) or
 * out of ephemeral ports (EADDRINUSE), counts the failure and tries the next address of the pool.
 * Any other failure (refused, timeout) is the destination's, so it is not retried elsewhere.
 */
export async function dialFromSnatPool(options: PoolDialOptions): Promise<Socket> {
  const { fallbacks = [], listener, ...dial } = options;
  const addresses = dial.localAddress ? [dial.localAddress, ...fallbacks] : [undefined];
  for (const [index, localAddress] of addresses.entries()) {
    try {
      return await dialUpstream({ ...dial, ...(localAddress ? { localAddress } : {}) });
    } catch (error) {
      if (!localAddress || index === addresses.length - 1 || !exhausted(error)) throw error;
      publishRuntimeEvent({ type: 'snat-failover', listener, address: localAddress });
    }
  }
  throw new GatewayError('EGW_UPSTREAM_ERROR', 'no SNAT address to dial from');
}
