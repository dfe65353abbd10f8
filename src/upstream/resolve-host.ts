import { isIP } from 'node:net';
import { GatewayError, isGatewayError } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import { publishDnsInflight, publishRuntimeEvent } from '../core/runtime-event.ts';
import { type Answer, queryAddress } from './dns-query.ts';
import { createHostsTable, type HostsTable } from './hosts-file.ts';
import { createLookupSlots, type LookupSlots } from './lookup-slots.ts';

/** Who a lookup is for and what it may return. */
export interface LookupContext {
  /** The concurrency key (the caller's SPIFFE ID); one shared key when absent. */
  readonly key?: string;
  /** Only this address family (the dialling source address's family). */
  readonly family?: 4 | 6;
}

export interface HostResolver {
  /** Resolves once; the caller dials exactly the address it checked (no second lookup). */
  resolve(host: string, context?: LookupContext): Promise<string>;
}

export interface ResolverOptions {
  readonly timeoutMs?: number;
  readonly tries?: number;
  readonly servers?: readonly string[];
  readonly maxConcurrentPerIdentity?: number;
  readonly maxConcurrent?: number;
  /** Positive answers kept for their TTL (at most 5 min); 0 = no cache. */
  readonly cacheEntries?: number;
  /** hosts(5) file consulted before DNS; false = none. */
  readonly hostsFile?: string | false;
}

const MAX_CACHE_TTL_MS = 300_000;

/** A small positive cache: bounded entries, the record's own TTL, oldest entry evicted first. */
function createCache(maxEntries: number) {
  const entries = new Map<string, { address: string; until: number }>();
  return {
    get(key: string): string | undefined {
      const hit = entries.get(key);
      if (hit && hit.until > Date.now()) return hit.address;
      if (hit) entries.delete(key);
      return undefined;
    },
    set(key: string, answer: Answer): void {
      if (maxEntries <= 0 || answer.ttlSeconds <= 0) return;
      entries.delete(key);
      if (entries.size >= maxEntries) entries.delete(entries.keys().next().value as string);
      entries.set(key, {
        address: answer.address,
        until: Date.now() + Math.min(answer.ttlSeconds * 1000, MAX_CACHE_TTL_MS),
      });
    },
  };
}

function busy(host: string, refusal: 'per-key' | 'global', limit: number): GatewayError {
  const whose = refusal === 'per-key' ? 'this identity has' : 'the gateway has';
  return new GatewayError(
    'EGW_UPSTREAM_DNS_BUSY',
    `cannot resolve ${host}: ${whose} ${limit} lookups in flight (resolver.${refusal === 'per-key' ? 'maxConcurrentPerIdentity' : 'maxConcurrent'})`,
  );
}

/** Sends the query holding a slot until c-ares is done with it, and reports the outcome. */
async function queried(host: string, context: LookupContext, slots: LookupSlots, options: Required<ResolverOptions>) {
  const key = context.key ?? '';
  const release = slots.acquire(key);
  if (typeof release === 'string') {
    publishRuntimeEvent({ type: 'dns-lookup', outcome: 'busy' });
    throw busy(host, release, release === 'per-key' ? options.maxConcurrentPerIdentity : options.maxConcurrent);
  }
  publishDnsInflight(1);
  try {
    const answer = await queryAddress(host, { ...options, ...(context.family ? { family: context.family } : {}) });
    publishRuntimeEvent({ type: 'dns-lookup', outcome: 'resolved' });
    return answer;
  } catch (error) {
    const timeout = isGatewayError(error, 'EGW_UPSTREAM_DNS_TIMEOUT');
    publishRuntimeEvent({ type: 'dns-lookup', outcome: timeout ? 'timeout' : 'failed' });
    throw error;
  } finally {
    release();
    publishDnsInflight(-1);
  }
}

/**
 * The destination resolver: IP literals as they are, static overrides from `resolver.hosts` (like
 * curl's --resolve), then /etc/hosts (c-ares does not read it), then a positive cache, then one
 * c-ares query with a real deadline, within per-identity and global concurrency caps.
 */
export function createHostResolver(
  overrides: Readonly<Record<string, string>> = {},
  settings: number | ResolverOptions = {},
): HostResolver {
  const given = typeof settings === 'number' ? { timeoutMs: settings } : settings;
  const options: Required<ResolverOptions> = {
    timeoutMs: 5_000,
    tries: 2,
    servers: [],
    maxConcurrentPerIdentity: 4,
    maxConcurrent: 64,
    cacheEntries: 1_024,
    hostsFile: '/etc/hosts',
    ...given,
  };
  // Keys and looked-up hosts go through the one canonicaliser (core/host-name.ts), so a static
  // answer applies to exactly the spellings policy matched. Names without a canonical spelling are
  // refused when the configuration is built; here they simply never match.
  const table = new Map<string, string>();
  for (const [name, ip] of Object.entries(overrides)) {
    const key = canonicalHost(name);
    if (key !== undefined) table.set(key, ip);
  }
  const hostsFile: HostsTable | undefined = options.hostsFile ? createHostsTable(options.hostsFile) : undefined;
  const slots = createLookupSlots(options.maxConcurrentPerIdentity, options.maxConcurrent);
  const cache = createCache(options.cacheEntries);
  return {
    async resolve(host: string, context: LookupContext = {}): Promise<string> {
      const name = canonicalHost(host);
      // Never hand a resolver a spelling it could read differently from the policy.
      if (name === undefined)
        throw new GatewayError('EGW_UPSTREAM_DNS', `cannot resolve ${JSON.stringify(host)}: not a canonical host name`);
      if (isIP(name) !== 0) return name;
      const fixed = table.get(name);
      if (fixed) {
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'static' });
        return fixed;
      }
      const pinned = await hostsFile?.lookup(name, context.family);
      if (pinned) {
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'hosts' });
        return pinned;
      }
      const cacheKey = `${context.family ?? 0}/${name}`;
      const cached = cache.get(cacheKey);
      if (cached) {
        publishRuntimeEvent({ type: 'dns-lookup', outcome: 'cached' });
        return cached;
      }
      const answer = await queried(name, context, slots, options);
      cache.set(cacheKey, answer);
      return answer.address;
    },
  };
}
