import type { ProxyRuntime } from '../proxy/connection-context.ts';
import { IdentityLimiter } from '../proxy/identity-limiter.ts';
import { LiveTunnels } from '../proxy/live-tunnels.ts';

/** The process-wide proxy services, plus the one switch that starts the drain. */
export interface DrainableRuntime extends ProxyRuntime {
  startDraining(): void;
}

/** `faultProbe` is test-only (startGateway's option; no config key, no CLI flag). */
export function createProxyRuntime(faultProbe?: ProxyRuntime['faultProbe']): DrainableRuntime {
  let draining = false;
  return {
    tunnels: new LiveTunnels(),
    limiter: new IdentityLimiter(),
    isDraining: () => draining,
    startDraining: () => {
      draining = true;
    },
    ...(faultProbe ? { faultProbe } : {}),
  };
}
