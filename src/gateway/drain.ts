import { subscribeAudit } from '../core/audit-event.ts';
import type { LiveTunnels } from '../proxy/live-tunnels.ts';

/** How long force-closed tunnels get to publish their close records before the audit flush. */
export const CLOSE_RECORDS_DEADLINE_MS = 2_000;

/**
 * Resolves once every tunnel open now has published its `egress-closed` record, or at the
 * deadline; returns how many had not. A tunnel leaves the registry right before it publishes,
 * so the list taken here and the subscription made in the same tick cannot miss a record.
 */
export function waitForCloseRecords(tunnels: LiveTunnels, deadlineMs = CLOSE_RECORDS_DEADLINE_MS): Promise<number> {
  const open = new Set(tunnels.list().map((t) => t.connectionId));
  if (open.size === 0) return Promise.resolve(0);
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      unsubscribe();
      resolve(open.size);
    };
    const unsubscribe = subscribeAudit((record) => {
      if (record.action !== 'egress-closed') return;
      open.delete(record.connectionId);
      if (open.size === 0) finish();
    });
    const timer = setTimeout(finish, deadlineMs);
    timer.unref();
  });
}
