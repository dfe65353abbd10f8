import { Resolver } from 'node:dns/promises';
import { GatewayError } from '../core/errors.ts';

export interface QueryOptions {
  /** `ip`, `ip:port` or `[ipv6]:port`; empty = the system's /etc/resolv.conf servers (c-ares reads them). */
  readonly servers: readonly string[];
  /** Overall deadline for the whole lookup, every try and the AAAA fallback included. */
  readonly timeoutMs: number;
  readonly tries: number;
  /** Only this family (the dialling source address's); undefined = A, then AAAA if the name has no A. */
  readonly family?: 4 | 6;
}

export interface Answer {
  readonly address: string;
  readonly ttlSeconds: number;
}

/**
 * c-ares waits `timeout` for the first try and doubles it for each next one: per-try timeout such
 * that all tries fit in the overall deadline (the deadline timer below is the backstop).
 */
export function perTryTimeoutMs(timeoutMs: number, tries: number): number {
  return Math.max(1, Math.floor(timeoutMs / (2 ** tries - 1)));
}

async function firstAddress(resolver: Resolver, host: string, family: 4 | 6): Promise<Answer | undefined> {
  const records =
    family === 4 ? await resolver.resolve4(host, { ttl: true }) : await resolver.resolve6(host, { ttl: true });
  const first = records[0];
  return first ? { address: first.address, ttlSeconds: first.ttl } : undefined;
}

async function ask(resolver: Resolver, host: string, family: 4 | 6 | undefined): Promise<Answer | undefined> {
  if (family !== undefined) return firstAddress(resolver, host, family);
  try {
    const v4 = await firstAddress(resolver, host, 4);
    if (v4) return v4;
  } catch (error) {
    // Only "the name exists but has no A record" makes an AAAA query worth sending.
    if ((error as NodeJS.ErrnoException).code !== 'ENODATA') throw error;
  }
  return firstAddress(resolver, host, 6);
}

/**
 * One lookup on its own c-ares channel (not getaddrinfo on libuv's 4-thread pool, which a slow
 * zone fills for everyone). A channel of its own makes `cancel()` end exactly this lookup at the
 * deadline: the query is freed and its socket closed, not left running behind an abandoned
 * promise. The returned promise settles only once c-ares has let go of the query.
 */
export async function queryAddress(host: string, options: QueryOptions): Promise<Answer> {
  const resolver = new Resolver({ timeout: perTryTimeoutMs(options.timeoutMs, options.tries), tries: options.tries });
  if (options.servers.length > 0) resolver.setServers([...options.servers]);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    resolver.cancel();
  }, options.timeoutMs);
  try {
    const answer = await ask(resolver, host, options.family);
    if (!answer) throw Object.assign(new Error('no address'), { code: 'ENODATA' });
    return answer;
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    if (timedOut || code === 'ETIMEOUT')
      throw new GatewayError(
        'EGW_UPSTREAM_DNS_TIMEOUT',
        `cannot resolve ${host}: no answer within ${options.timeoutMs} ms`,
        { cause },
      );
    throw new GatewayError('EGW_UPSTREAM_DNS', `cannot resolve ${host}: ${code}`, { cause });
  } finally {
    clearTimeout(timer);
  }
}
