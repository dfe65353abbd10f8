import type { AuditHub } from '../audit/audit-hub.ts';
import type { MetricsSources } from '../metrics/gateway-metrics.ts';
import type { ProxyRuntime } from '../proxy/connection-context.ts';
import { secondsUntilExpiry, watchedCertificates } from './certificate-list.ts';
import type { SnapshotStore } from './snapshot-store.ts';

/** What the metrics read at scrape time, always from the current snapshot. */
export function metricsSources(store: SnapshotStore, runtime: ProxyRuntime, audit: AuditHub): MetricsSources {
  const { tunnels, limiter } = runtime;
  return {
    activeTunnels: () => {
      const counts = new Map<string, number>([...store.current.state.listeners.keys()].map((name) => [name, 0]));
      for (const tunnel of tunnels.list()) counts.set(tunnel.listener, (counts.get(tunnel.listener) ?? 0) + 1);
      return counts;
    },
    auditSinks: () => audit.stats(),
    identityConnections: () => limiter.totalOpen(),
    certificateExpiry: () => secondsUntilExpiry(watchedCertificates(store.current.state), Date.now()),
  };
}
