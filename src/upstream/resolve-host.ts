import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { GatewayError } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import { publishRuntimeEvent } from '../core/runtime-event.ts';

export interface HostResolver {
  /** Resolves once; the caller dials exactly the address it checked (no second lookup). */
  resolve(host: string): Promise<string>;
}

/**
 * getaddrinfo (so /etc/hosts works) with optional static overrides from `resolver.hosts`, like
 * curl's --resolve. IP literals are returned as they are.
 */
export function createHostResolver(overrides: Readonly<Record<string, string>> = {}, timeoutMs = 5000): HostResolver {
  // Callers pass canonical hosts (core/host-name.ts); the table is keyed the same way.
  const table = new Map(Object.entries(overrides).map(([name, ip]) => [canonicalHost(name) ?? name.toLowerCase(), ip]));
  return {
    async resolve(host: string): Promise<string> {
      if (isIP(host) !== 0) return host;
      const fixed = table.get(host.toLowerCase());
      if (fixed) {
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'static' });
        return fixed;
      }
      let timer: NodeJS.Timeout | undefined;
      try {
        const answer = await Promise.race([
          lookup(host, { all: false }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`lookup timed out after ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'resolved' });
        return answer.address;
      } catch (cause) {
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'failed' });
        throw new GatewayError(
          'EGW_UPSTREAM_DNS',
          `cannot resolve ${host}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`,
          { cause },
        );
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
