import type { ErrorCode } from './errors.ts';

/** RFC 9209 Proxy-Status error types used by the gateway. */
export type ProxyStatusError =
  | 'http_request_denied'
  | 'destination_ip_prohibited'
  | 'dns_error'
  | 'dns_timeout'
  | 'connection_refused'
  | 'connection_timeout'
  | 'destination_unavailable'
  | 'http_request_error'
  | 'connection_limit_reached'
  | 'proxy_internal_error';

/**
 * Which counter an `egress-rejected` record with this code feeds, besides egw_connections_total:
 * a limit (egw_limit_rejections_total{limit}), a dial failure after an allow
 * (egw_upstream_dial_errors_total{kind} and egw_policy_decisions_total{decision="allow"}), or a
 * policy deny (egw_policy_decisions_total{decision="deny"}), or a gateway fault
 * (egw_internal_errors_total, on the egress-rejected or egress-closed record that carries it).
 */
export type MetricKind =
  | { readonly counter: 'limit'; readonly limit: string }
  | { readonly counter: 'dial'; readonly kind: string }
  | { readonly counter: 'policy-deny' }
  | { readonly counter: 'internal' };

/** The HTTP answer a connect-mode client gets; tcp mode always resets. */
export interface HttpRefusal {
  readonly status: number;
  readonly proxyStatus: ProxyStatusError;
}

export interface Refusal {
  /** Absent when the client never gets an HTTP answer (reset at accept). */
  readonly http?: HttpRefusal;
  readonly metric?: MetricKind;
}

/**
 * How each refusal code is answered and counted: the one table connect mode, tcp mode,
 * `policy check` and the metrics read (docs/refusals.md is checked against it by a unit test).
 * Codes absent here are not answered to a proxy client (start-up, identity, admin, audit codes).
 */
export const REFUSALS: Readonly<Partial<Record<ErrorCode, Refusal>>> = Object.freeze({
  EGW_POLICY_DENIED: { http: { status: 403, proxyStatus: 'http_request_denied' }, metric: { counter: 'policy-deny' } },
  EGW_POLICY_DESTINATION_PROHIBITED: {
    http: { status: 403, proxyStatus: 'destination_ip_prohibited' },
    metric: { counter: 'policy-deny' },
  },
  EGW_PROXY_BAD_REQUEST: { http: { status: 400, proxyStatus: 'http_request_error' } },
  EGW_UPSTREAM_DNS: { http: { status: 502, proxyStatus: 'dns_error' }, metric: { counter: 'dial', kind: 'dns' } },
  // RFC 9209 §2.3.2 recommends 504 for dns_timeout, like the connect timeout below.
  EGW_UPSTREAM_DNS_TIMEOUT: {
    http: { status: 504, proxyStatus: 'dns_timeout' },
    metric: { counter: 'dial', kind: 'dns_timeout' },
  },
  // Refused at once, never queued: the caller's own lookups are what it waits for.
  EGW_UPSTREAM_DNS_BUSY: {
    http: { status: 503, proxyStatus: 'dns_error' },
    metric: { counter: 'limit', limit: 'dns_concurrency' },
  },
  EGW_UPSTREAM_TIMEOUT: {
    http: { status: 504, proxyStatus: 'connection_timeout' },
    metric: { counter: 'dial', kind: 'timeout' },
  },
  EGW_UPSTREAM_REFUSED: {
    http: { status: 502, proxyStatus: 'connection_refused' },
    metric: { counter: 'dial', kind: 'refused' },
  },
  EGW_UPSTREAM_UNREACHABLE: {
    http: { status: 502, proxyStatus: 'destination_unavailable' },
    metric: { counter: 'dial', kind: 'unreachable' },
  },
  EGW_UPSTREAM_ERROR: {
    http: { status: 502, proxyStatus: 'destination_unavailable' },
    metric: { counter: 'dial', kind: 'other' },
  },
  // The parent's own status goes into Proxy-Status as received-status (RFC 9209 §2.1.3).
  EGW_UPSTREAM_PARENT_REFUSED: {
    http: { status: 502, proxyStatus: 'destination_unavailable' },
    metric: { counter: 'dial', kind: 'parent_refused' },
  },
  EGW_UPSTREAM_PARENT_UNREACHABLE: {
    http: { status: 502, proxyStatus: 'destination_unavailable' },
    metric: { counter: 'dial', kind: 'parent_unreachable' },
  },
  EGW_LIMIT_LISTENER_CONNECTIONS: { metric: { counter: 'limit', limit: 'listener_connections' } },
  EGW_LIMIT_IDENTITY_CONNECTIONS: {
    http: { status: 429, proxyStatus: 'connection_limit_reached' },
    metric: { counter: 'limit', limit: 'identity_connections' },
  },
  EGW_LIMIT_IDENTITY_RATE: {
    http: { status: 429, proxyStatus: 'connection_limit_reached' },
    metric: { counter: 'limit', limit: 'identity_rate' },
  },
  EGW_DRAINING: {
    http: { status: 503, proxyStatus: 'connection_limit_reached' },
    metric: { counter: 'limit', limit: 'draining' },
  },
  // A bug, not a refusal: this connection is reset, the process keeps serving.
  EGW_INTERNAL: { metric: { counter: 'internal' } },
});

/** An unexpected failure (no refusal entry) is the gateway's fault, not the client's. */
const INTERNAL: HttpRefusal = { status: 500, proxyStatus: 'proxy_internal_error' };

export function httpRefusalFor(code: ErrorCode | undefined): HttpRefusal {
  return (code && REFUSALS[code]?.http) || INTERNAL;
}

export function metricKindFor(code: ErrorCode | undefined): MetricKind | undefined {
  return code ? REFUSALS[code]?.metric : undefined;
}

/** The counter a refusal feeds (besides egw_connections_total), as docs/refusals.md names it. */
export function metricName(metric: MetricKind | undefined): string | undefined {
  switch (metric?.counter) {
    case 'limit':
      return `egw_limit_rejections_total{limit="${metric.limit}"}`;
    case 'dial':
      return `egw_upstream_dial_errors_total{kind="${metric.kind}"}`;
    case 'policy-deny':
      return 'egw_policy_decisions_total{decision="deny"}';
    case 'internal':
      return 'egw_internal_errors_total';
    default:
      return undefined;
  }
}
