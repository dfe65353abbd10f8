import { Counter, Gauge, type Registry } from 'prom-client';
import { auditSubscriberErrors } from '../core/audit-event.ts';
import type { MetricsSources } from './gateway-metrics.ts';

/** The metrics read from their sources at scrape time, rather than counted from events. */
export function registerScrapeGauges(registry: Registry, sources: MetricsSources): void {
  new Gauge({
    name: 'egw_active_tunnels',
    help: 'Open tunnels by listener',
    labelNames: ['listener'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [listener, count] of sources.activeTunnels()) this.set({ listener }, count);
    },
  });
  registerAuditSinkGauges(registry, sources);
  new Gauge({
    name: 'egw_certificate_expiry_seconds',
    // Workers hold the same certificates: aggregate across a cluster with min, not sum.
    aggregator: 'min',
    help: "Seconds until the gateway's certificate or a trust anchor expires",
    labelNames: ['role', 'subject'],
    registers: [registry],
    collect() {
      this.reset();
      for (const cert of sources.certificateExpiry())
        this.set({ role: cert.role, subject: cert.subject }, cert.secondsLeft);
    },
  });
  registerCrlGauges(registry, sources);
  // The process-wide count, read at scrape time, from this registry's start.
  const subscriberErrorsAtStart = auditSubscriberErrors();
  new Counter({
    name: 'egw_audit_subscriber_errors_total',
    help: 'Times an audit subscriber threw; it missed that record and the process kept serving',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(auditSubscriberErrors() - subscriberErrorsAtStart);
    },
  });
  new Gauge({
    name: 'egw_identity_connections',
    help: 'Open connections counted against per-identity limits (all identities)',
    registers: [registry],
    collect() {
      this.set(sources.identityConnections?.() ?? 0);
    },
  });
}

/** Audit delivery accounting, per sink, as the hub reports it. */
function registerAuditSinkGauges(registry: Registry, sources: MetricsSources): void {
  const sinkGauge = (name: string, help: string, key: 'received' | 'delivered' | 'retried' | 'queued') =>
    new Gauge({
      name,
      help,
      labelNames: ['sink'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [sink, stats] of Object.entries(sources.auditSinks())) this.set({ sink }, stats[key]);
      },
    });
  sinkGauge(
    'egw_audit_records_received',
    'Audit records handed to a sink (monotonic; = delivered + dropped + queued)',
    'received',
  );
  sinkGauge('egw_audit_records_delivered', 'Audit records delivered, per sink (monotonic)', 'delivered');
  sinkGauge('egw_audit_records_retried', 'Audit record delivery retries, per sink (monotonic)', 'retried');
  sinkGauge('egw_audit_queue_depth', 'Audit records waiting in a sink queue or in flight', 'queued');
  new Gauge({
    name: 'egw_audit_records_dropped',
    help: 'Audit records dropped, per sink and reason (monotonic)',
    labelNames: ['sink', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [sink, stats] of Object.entries(sources.auditSinks())) {
        for (const [reason, count] of Object.entries(stats.droppedBy)) this.set({ sink, reason }, count ?? 0);
      }
    },
  });
  new Gauge({
    name: 'egw_audit_sink_up',
    help: 'Whether the last attempt to reach the audit receiver worked (1) or not (0)',
    labelNames: ['sink'],
    registers: [registry],
    // Across cluster workers the group is up only if every worker's sink is.
    aggregator: 'min',
    collect() {
      this.reset();
      for (const [sink, stats] of Object.entries(sources.auditSinks())) this.set({ sink }, stats.up ? 1 : 0);
    },
  });
}

/** identity.crls: whether each CRL is valid and current, and how long until its nextUpdate. */
function registerCrlGauges(registry: Registry, sources: MetricsSources): void {
  new Gauge({
    name: 'egw_crl_status',
    help: 'Whether a CRL of identity.crls is valid and current (1) or not (0: defective, stale or not yet valid)',
    labelNames: ['issuer', 'source', 'status'],
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.reset();
      for (const crl of sources.crls?.() ?? [])
        this.set({ issuer: crl.issuer, source: crl.source, status: crl.status }, crl.status === 'valid' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'egw_crl_next_update_seconds',
    help: "Seconds until a CRL's nextUpdate (negative: stale)",
    labelNames: ['issuer', 'source'],
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.reset();
      const now = Date.now();
      for (const crl of sources.crls?.() ?? []) {
        if (crl.nextUpdate)
          this.set({ issuer: crl.issuer, source: crl.source }, (crl.nextUpdate.getTime() - now) / 1000);
      }
    },
  });
}
