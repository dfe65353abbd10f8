import type { AuditHub } from '../audit/audit-hub.ts';
import { crlStatuses } from '../identity/revocation.ts';
import type { MetricsSources } from '../metrics/gateway-metrics.ts';
import type { ProxyRuntime } from '../proxy/connection-context.ts';
import { secondsUntilExpiry, watchedCertificates } from './certificate-list.ts';
import type { SnapshotStore } from './snapshot-store.ts';

/** What the metrics read at scrape time, always from the current snapshot (no certificates before the first). */
export function metricsSources(store: SnapshotStore, runtime: ProxyRuntime, audit: AuditHub): MetricsSources {
  const { tunnels, limiter } = runtime;
  return {
    activeTunnels: () => {
      const counts = new Map<string, number>(store.config.listeners.map((l) => [l.name, 0]));
      for (const tunnel of tunnels.list()) counts.set(tunnel.listener, (counts.get(tunnel.listener) ?? 0) + 1);
      return counts;
    },
    auditSinks: () => audit.stats(),
    identityConnections: () => limiter.totalOpen(),
    certificateExpiry: () => {
      const snapshot = store.latest;
      return snapshot ? secondsUntilExpiry(watchedCertificates(snapshot.state), Date.now()) : [];
    },
    crls: () => crlStatuses(store.latest?.state.trustBundle.revocation),
  };
}
