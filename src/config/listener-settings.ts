import { canonicalHost } from '../core/host-name.ts';
import { IpSet } from '../core/ip-set.ts';
import { snatPool } from '../core/snat-pool.ts';
import type { ListenerSettings } from '../proxy/gateway-state.ts';
import { checkSnatAddress } from '../upstream/check-snat-address.ts';
import type { GatewayConfig } from './config-schema.ts';

export function splitHostPort(value: string): { host: string; port: number } {
  const index = value.lastIndexOf(':');
  const host = value.slice(0, index);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(value.slice(index + 1)) };
}

function canonicalUpstream(value: string): { host: string; port: number } {
  const { host, port } = splitHostPort(value);
  return { host: canonicalHost(host) as string, port };
}

/** The key path of each SNAT address, `listeners[0].snat` or `rules[2].snat[1]` for a pool. */
function snatKeys(snat: string | readonly string[] | undefined, at: string): Array<[string, string]> {
  if (snat === undefined) return [];
  return typeof snat === 'string' ? [[snat, at]] : snat.map((address, i) => [address, `${at}[${i}]`]);
}

/** Proves every SNAT address (every member of a pool) is bindable here, so a typo fails the start or reload. */
export async function checkSnatAddresses(config: GatewayConfig, source: string): Promise<void> {
  const keys = [
    ...config.listeners.flatMap((l, i) => snatKeys(l.snat, `listeners[${i}].snat`)),
    ...config.rules.flatMap((r, i) => snatKeys(r.snat, `rules[${i}].snat`)),
  ];
  await Promise.all(keys.map(([address, at]) => checkSnatAddress(address, `${source}: ${at}`)));
}

/** Each listener's settings as compiled from the config (a reload may change its limits, not its shape). */
export function listenerSettings(config: GatewayConfig): Map<string, ListenerSettings> {
  return new Map(
    config.listeners.map((l) => {
      const { host, port } = splitHostPort(l.listen);
      const settings: ListenerSettings = {
        name: l.name,
        host,
        port,
        mode: l.mode,
        maxConnections: l.maxConnections,
        enforcement: l.enforcement,
        ...(l.snat ? { snat: snatPool(l.snat, l.snatSelection) } : {}),
        ...(l.proxyProtocol && l.proxyProtocolFrom ? { proxyProtocolFrom: new IpSet(l.proxyProtocolFrom) } : {}),
        ...(l.upstreamProxyProtocol ? { upstreamProxyProtocol: l.upstreamProxyProtocol } : {}),
        ...(l.upstream ? { upstream: Object.freeze(canonicalUpstream(l.upstream)) } : {}),
      };
      return [l.name, Object.freeze(settings)];
    }),
  );
}
