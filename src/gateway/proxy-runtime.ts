import type { ProxyRuntime } from '../proxy/connection-context.ts';
import { IdentityLimiter } from '../proxy/identity-limiter.ts';
import { LiveTunnels } from '../proxy/live-tunnels.ts';

/** The process-wide proxy services, plus the one switch that starts the drain. */
export interface DrainableRuntime extends ProxyRuntime {
  startDraining(): void;
}

export function createProxyRuntime(): DrainableRuntime {
  let draining = false;
  return {
    tunnels: new LiveTunnels(),
    limiter: new IdentityLimiter(),
    isDraining: () => draining,
    startDraining: () => {
      draining = true;
    },
  };
}
