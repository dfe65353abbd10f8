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
 * curl's --resolve. IP literals are returned in canonical form.
 */
export function createHostResolver(overrides: Readonly<Record<string, string>> = {}, timeoutMs = 5000): HostResolver {
  // Keys and looked-up hosts go through the one canonicaliser (core/host-name.ts), so a static
  // answer applies to exactly the spellings policy matched. Names without a canonical spelling are
  // refused when the configuration is built; here they simply never match.
  const table = new Map<string, string>();
  for (const [name, ip] of Object.entries(overrides)) {
    const key = canonicalHost(name);
    if (key !== undefined) table.set(key, ip);
  }
  return {
    async resolve(host: string): Promise<string> {
      const name = canonicalHost(host);
      // Never hand getaddrinfo a spelling it could read differently from the policy.
      if (name === undefined)
        throw new GatewayError('EGW_UPSTREAM_DNS', `cannot resolve ${JSON.stringify(host)}: not a canonical host name`);
      if (isIP(name) !== 0) return name;
      const fixed = table.get(name);
      if (fixed) {
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'static' });
        return fixed;
      }
      let timer: NodeJS.Timeout | undefined;
      try {
        const answer = await Promise.race([
          lookup(name, { all: false }),
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
          `cannot resolve ${name}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`,
          { cause },
        );
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
