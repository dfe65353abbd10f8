import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { type AuditRecord, subscribeAudit } from '../core/audit-event.ts';
import { metricKindFor } from '../core/refusal-table.ts';
import { type RuntimeEvent, subscribeDnsInflight, subscribeRuntimeEvents } from '../core/runtime-event.ts';
import { registerScrapeGauges } from './scrape-gauges.ts';

/** What the metrics read at scrape time rather than count as events. */
export interface MetricsSources {
  activeTunnels(): ReadonlyMap<string, number>;
  auditSinks(): Record<
    string,
    {
      received: number;
      delivered: number;
      retried: number;
      dropped: number;
      queued: number;
      up: boolean;
      droppedBy: Partial<Record<string, number>>;
    }
  >;
  /** Seconds until expiry, by certificate role and subject. */
  certificateExpiry(): ReadonlyArray<{ role: 'gateway' | 'anchor'; subject: string; secondsLeft: number }>;
  /** Open connections counted against per-identity limits, all identities together. */
  identityConnections?(): number;
  /** identity.crls: each CRL's standing ('valid' or why not) and its nextUpdate. */
  crls?(): ReadonlyArray<{ source: string; issuer: string; status: string; nextUpdate: Date | undefined }>;
}

/**
 * Prometheus metrics (prom-client), fed by the data path's audit and runtime channels so no
 * data-path module imports this one. Names are listed in README "Operations".
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #unsubscribe: Array<() => void> = [];
  readonly #connections = new Counter({
    name: 'egw_connections_total',
    help: 'Client connections and requests by listener and decision',
    labelNames: ['listener', 'decision'],
    registers: [this.registry],
  });
  readonly #handshakeFailures = new Counter({
    name: 'egw_handshake_failures_total',
    help: 'Refused TLS handshakes and client identities by reason code',
    labelNames: ['listener', 'code'],
    registers: [this.registry],
  });
  readonly #bytes = new Counter({
    name: 'egw_bytes_total',
    help: 'Bytes relayed by listener; direction in = client to destination, out = destination to client',
    labelNames: ['listener', 'direction'],
    registers: [this.registry],
  });
  readonly #dialErrors = new Counter({
    name: 'egw_upstream_dial_errors_total',
    help: 'Upstream dial failures by kind',
    labelNames: ['listener', 'kind'],
    registers: [this.registry],
  });
  readonly #dns = new Counter({
    name: 'egw_dns_lookups_total',
    help: 'Destination lookups by outcome',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly #dnsInflight = new Gauge({
    name: 'egw_dns_inflight',
    help: 'DNS queries sent and not yet answered, failed or cancelled',
    registers: [this.registry],
  });
  readonly #decisions = new Counter({
    name: 'egw_policy_decisions_total',
    help: 'Policy decisions by rule (rule="" for the default deny)',
    labelNames: ['rule', 'decision'],
    registers: [this.registry],
  });
  readonly #limits = new Counter({
    name: 'egw_limit_rejections_total',
    help: 'Connections and requests refused by a limit',
    labelNames: ['listener', 'limit'],
    registers: [this.registry],
  });
  readonly #reloads = new Counter({
    name: 'egw_reloads_total',
    help: 'Configuration reloads by result',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly #preHandshakeSockets = new Gauge({
    name: 'egw_prehandshake_sockets',
    help: 'Open sockets that have not finished their TLS handshake, by listener',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  readonly #preHandshakeRejections = new Counter({
    name: 'egw_prehandshake_rejections_total',
    help: 'Sockets refused or closed before their TLS handshake, by listener and reason',
    labelNames: ['listener', 'reason'],
    registers: [this.registry],
  });
  readonly #internalErrors = new Counter({
    name: 'egw_internal_errors_total',
    help: 'Connections closed by an unexpected error in the gateway (EGW_INTERNAL); the process kept serving',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  readonly #snatFailovers = new Counter({
    name: 'egw_snat_failovers_total',
    help: 'Dials from a SNAT address that failed with address or port exhaustion, so the next address of the pool was tried',
    labelNames: ['listener', 'address'],
    registers: [this.registry],
  });
  readonly #drainForced = new Counter({
    name: 'egw_drain_forced_closes_total',
    help: 'Connections closed at the drain deadline',
    registers: [this.registry],
  });

  constructor(sources: MetricsSources, options: { defaultMetrics?: boolean } = {}) {
    // Series that alerting rules expect to exist before the first event.
    this.#reloads.inc({ result: 'ok' }, 0);
    this.#reloads.inc({ result: 'failed' }, 0);
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'egw_process_' });
    registerScrapeGauges(this.registry, sources);
    this.#unsubscribe.push(subscribeAudit((record) => this.#onAudit(record)));
    this.#unsubscribe.push(subscribeRuntimeEvents((event) => this.#onRuntime(event)));
    this.#dnsInflight.set(0);
    this.#unsubscribe.push(
      subscribeDnsInflight((delta) => (delta > 0 ? this.#dnsInflight.inc() : this.#dnsInflight.dec())),
    );
  }

  #onRuntime(event: RuntimeEvent): void {
    switch (event.type) {
      case 'dns-lookup':
        this.#dns.inc({ outcome: event.outcome });
        return;
      case 'prehandshake-sockets':
        this.#preHandshakeSockets.inc({ listener: event.listener }, event.delta);
        return;
      case 'prehandshake-refused':
        this.#preHandshakeRejections.inc({ listener: event.listener, reason: event.reason });
        return;
      case 'snat-failover':
        this.#snatFailovers.inc({ listener: event.listener, address: event.address });
        return;
    }
  }

  #onAudit(record: AuditRecord): void {
    const listener = record.listener;
    if (metricKindFor(record.code)?.counter === 'internal') this.#internalErrors.inc({ listener });
    switch (record.action) {
      case 'identity-rejected':
        this.#connections.inc({ listener, decision: 'identity_rejected' });
        this.#handshakeFailures.inc({ listener, code: record.code ?? 'unknown' });
        return;
      case 'egress-permitted':
        this.#connections.inc({ listener, decision: 'permitted' });
        this.#decisions.inc({ rule: record.rule?.name ?? '', decision: 'allow' });
        return;
      case 'egress-would-deny':
        // Report mode: the traffic flowed (permitted) and the policy would have refused it.
        this.#connections.inc({ listener, decision: 'permitted' });
        this.#decisions.inc({ rule: record.rule?.name ?? '', decision: 'would_deny' });
        return;
      case 'egress-rejected':
        this.#connections.inc({ listener, decision: 'rejected' });
        this.#onRefusal(listener, record);
        return;
      case 'egress-closed':
        this.#bytes.inc({ listener, direction: 'in' }, record.bytesFromClient ?? 0);
        this.#bytes.inc({ listener, direction: 'out' }, record.bytesToClient ?? 0);
        return;
    }
  }

  /** The counter a refusal feeds comes from the refusal table (src/core/refusal-table.ts). */
  #onRefusal(listener: string, record: AuditRecord): void {
    const metric = metricKindFor(record.code);
    const rule = record.rule?.name ?? '';
    switch (metric?.counter) {
      case 'limit':
        return void this.#limits.inc({ listener, limit: metric.limit });
      case 'dial':
        // The policy allowed it; the dial (or the allowed host's DNS) failed.
        this.#dialErrors.inc({ listener, kind: metric.kind });
        return void this.#decisions.inc({ rule, decision: 'allow' });
      case 'policy-deny':
        return void this.#decisions.inc({ rule, decision: 'deny' });
    }
  }

  reloaded(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'ok' : 'failed' });
  }

  drainForcedCloses(count: number): void {
    this.#drainForced.inc(count);
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }
}
