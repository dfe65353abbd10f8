import { type ErrorCode, GatewayError } from '../core/errors.ts';
import type { SpiffeId } from '../identity/spiffe-id.ts';
import { type Decision, decide } from '../policy/decide.ts';
import { prohibitedDestinations } from '../upstream/prohibited-ranges.ts';
import type { GatewayState, ListenerSettings } from './gateway-state.ts';

/** RFC 9209 Proxy-Status error types used by the gateway. */
export type ProxyStatusError =
  | 'http_request_denied'
  | 'destination_ip_prohibited'
  | 'dns_error'
  | 'connection_refused'
  | 'connection_timeout'
  | 'destination_unavailable'
  | 'http_request_error'
  | 'connection_limit_reached'
  | 'proxy_internal_error';

export type Authorization =
  | { readonly allow: true; readonly decision: Decision; readonly ip: string; readonly snat?: string }
  | {
      readonly allow: false;
      readonly decision?: Decision;
      readonly ip?: string;
      readonly status: number;
      readonly proxyStatus: ProxyStatusError;
      readonly code: ErrorCode;
      readonly reason: string;
    };

/**
 * Resolves the destination once and decides. DNS runs before the decision so `to.cidrs` rules can
 * see the IP, but its failure is only reported (502) to a client that policy would have allowed;
 * everyone else gets the same 403 as for any other denied host.
 */
export async function authorizeDestination(
  state: GatewayState,
  listener: ListenerSettings,
  identity: SpiffeId,
  host: string,
  port: number,
): Promise<Authorization> {
  let ip: string | undefined;
  let dnsError: GatewayError | undefined;
  try {
    ip = await state.resolver.resolve(host);
  } catch (error) {
    dnsError = error instanceof GatewayError ? error : new GatewayError('EGW_UPSTREAM_DNS', String(error));
  }
  const decision = decide(state.policy, {
    listener: listener.name,
    identity,
    destination: { host, port, ...(ip ? { ip } : {}) },
  });
  if (!decision.allow) {
    return {
      allow: false,
      decision,
      ...(ip ? { ip } : {}),
      status: 403,
      proxyStatus: 'http_request_denied',
      code: 'EGW_POLICY_DENIED',
      reason: decision.reason,
    };
  }
  if (dnsError || ip === undefined) {
    return {
      allow: false,
      decision,
      status: 502,
      proxyStatus: 'dns_error',
      code: 'EGW_UPSTREAM_DNS',
      reason: dnsError?.message ?? `cannot resolve ${host}`,
    };
  }
  if (prohibitedDestinations.has(ip) && !decision.rule?.to?.cidrs?.has(ip)) {
    return {
      allow: false,
      decision,
      ip,
      status: 403,
      proxyStatus: 'destination_ip_prohibited',
      code: 'EGW_POLICY_DESTINATION_PROHIBITED',
      reason: `destination ${ip} is in a prohibited range (loopback, private, link-local, ...); rule ${decision.rule?.name} must list it in to.cidrs`,
    };
  }
  const snat = decision.rule?.snat ?? listener.snat;
  return { allow: true, decision, ip, ...(snat ? { snat } : {}) };
}

export function refusalForUpstreamError(error: unknown): {
  status: number;
  proxyStatus: ProxyStatusError;
  code: ErrorCode;
  reason: string;
} {
  const code: ErrorCode = error instanceof GatewayError ? error.code : 'EGW_UPSTREAM_ERROR';
  const reason = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'EGW_UPSTREAM_TIMEOUT':
      return { status: 504, proxyStatus: 'connection_timeout', code, reason };
    case 'EGW_UPSTREAM_REFUSED':
      return { status: 502, proxyStatus: 'connection_refused', code, reason };
    default:
      return { status: 502, proxyStatus: 'destination_unavailable', code, reason };
  }
}

/** `Proxy-Status` header value (RFC 9209); details are a quoted sf-string without control characters. */
export function proxyStatusHeader(error: ProxyStatusError, details: string): string {
  const safe = details
    .replace(/[^\x20-\x7e]/g, ' ')
    .replace(/["\\]/g, '\\$&')
    .slice(0, 300);
  return `mesh-egress-gateway; error=${error}; details="${safe}"`;
}
