import { isIP } from 'node:net';
import { type EgressFacts, snatOf } from '../core/audit-records.ts';
import { type ErrorCode, GatewayError } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import type { SpiffeId } from '../identity/spiffe-id.ts';
import type { CompiledRule } from '../policy/compile-policy.ts';
import { type Decision, decide, decideByName } from '../policy/decide.ts';
import { prohibitedDestinations } from '../upstream/prohibited-ranges.ts';
import type { LookupContext } from '../upstream/resolve-host.ts';
import type { GatewayState, ListenerSettings } from './gateway-state.ts';

export type DestinationVerdict =
  | {
      readonly allow: true;
      readonly host: string;
      readonly port: number;
      /** The address to dial: the one that was checked (no second lookup). */
      readonly ip: string;
      readonly rule?: CompiledRule;
      readonly reason: string;
      /** The source address to dial from: the rule's, else the listener's; undefined lets the OS choose. */
      readonly snat?: string;
    }
  | {
      readonly allow: false;
      readonly code: ErrorCode;
      readonly reason: string;
      readonly host?: string;
      readonly port?: number;
      readonly ip?: string;
      readonly rule?: CompiledRule;
    };

type Denial = Extract<DestinationVerdict, { allow: false }>;

function deny(code: ErrorCode, reason: string, facts: Omit<Denial, 'allow' | 'code' | 'reason'> = {}): Denial {
  return { allow: false, code, reason, ...facts };
}

function policyDeny(decision: Decision, host: string, port: number, ip?: string): Denial {
  return deny('EGW_POLICY_DENIED', decision.reason, {
    host,
    port,
    ...(ip ? { ip } : {}),
    ...(decision.rule ? { rule: decision.rule } : {}),
  });
}

async function resolveOnce(
  state: GatewayState,
  host: string,
  context: LookupContext,
): Promise<{ ip?: string; error?: GatewayError }> {
  try {
    return { ip: await state.resolver.resolve(host, context) };
  } catch (error) {
    // Keep the resolver's own error (it names the host and the resolver's reason).
    return { error: error instanceof GatewayError ? error : new GatewayError('EGW_UPSTREAM_DNS', String(error)) };
  }
}

/**
 * Lookups are capped per SPIFFE ID (one identity's slow zone holds only its own slots). When the
 * name already decided the rule, the source address is known: ask only for its address family.
 */
function lookupContext(listener: ListenerSettings, identity: SpiffeId, byName: Decision | undefined): LookupContext {
  const snat = byName ? (byName.rule?.snat ?? listener.snat) : undefined;
  const family = snat ? isIP(snat) : 0;
  return { key: identity.uri, ...(family === 4 || family === 6 ? { family } : {}) };
}

/**
 * The one destination decision, for connect mode, tcp mode, `policy check` and `POST
 * /policy/check`: canonical host, the rules on the name, DNS only when an allow is still possible,
 * the rules on the IP, the SSRF guard, SNAT. A deny is a value. A tcp listener's destination is its
 * fixed upstream, chosen by the operator, so the SSRF guard (for client-chosen destinations) does
 * not apply to it; `requested` is ignored there.
 */
export async function decideDestination(
  state: GatewayState,
  listener: ListenerSettings,
  identity: SpiffeId,
  requested?: { readonly host: string; readonly port: number },
): Promise<DestinationVerdict> {
  const target = listener.mode === 'tcp' ? listener.upstream : requested;
  if (!target) return deny('EGW_PROXY_BAD_REQUEST', `listener ${listener.name} has no destination to decide on`);
  const host = canonicalHost(target.host);
  const port = target.port;
  if (!host) return deny('EGW_PROXY_BAD_REQUEST', `host ${JSON.stringify(target.host)} is not a valid host name or IP`);
  const input = { listener: listener.name, identity, destination: { host, port } };
  // An IP literal is its own address: every rule can decide on it before any resolver work.
  const literal = isIP(host) === 0 ? undefined : host;
  const byName = literal
    ? decide(state.policy, { ...input, destination: { host, port, ip: literal } })
    : decideByName(state.policy, input);
  if (byName && !byName.allow) return policyDeny(byName, host, port, literal);
  const { ip, error } = await resolveOnce(state, host, lookupContext(listener, identity, byName));
  const decision = byName ?? decide(state.policy, { ...input, destination: { host, port, ...(ip ? { ip } : {}) } });
  if (!decision.allow) return policyDeny(decision, host, port, ip);
  const rule = decision.rule ? { rule: decision.rule } : {};
  // Reported only to a client the rules allow: everyone else got the policy deny above.
  if (error || ip === undefined)
    return deny(error?.code ?? 'EGW_UPSTREAM_DNS', error?.message ?? `cannot resolve ${host}`, { host, port, ...rule });
  return guardAllowed(listener, decision, { host, port, ip });
}

/** After an allow: the SSRF guard for client-chosen destinations, then the SNAT address. */
function guardAllowed(
  listener: ListenerSettings,
  decision: Decision,
  { host, port, ip }: { readonly host: string; readonly port: number; readonly ip: string },
): DestinationVerdict {
  const rule = decision.rule ? { rule: decision.rule } : {};
  if (listener.mode === 'connect' && prohibitedDestinations.has(ip) && !decision.rule?.to?.cidrs?.has(ip)) {
    return deny(
      'EGW_POLICY_DESTINATION_PROHIBITED',
      `destination ${ip} is in a prohibited range (loopback, private, link-local, ...); rule ${decision.rule?.name} must list it in to.cidrs`,
      { host, port, ip, ...rule },
    );
  }
  const snat = decision.rule?.snat ?? listener.snat;
  return { allow: true, host, port, ip, reason: decision.reason, ...rule, ...(snat ? { snat } : {}) };
}

/**
 * The same decision for a destination already resolved and dialled (an open tunnel re-decided on
 * reload): the rules on its host, port and the IP it is connected to, then the SSRF guard. No
 * DNS: a tunnel is judged on where it goes, not on where the name points now.
 */
export function decideDialled(
  state: GatewayState,
  listener: ListenerSettings,
  identity: SpiffeId,
  dialled: { readonly host: string; readonly port: number; readonly ip: string },
): DestinationVerdict {
  const decision = decide(state.policy, { listener: listener.name, identity, destination: dialled });
  if (!decision.allow) return policyDeny(decision, dialled.host, dialled.port, dialled.ip);
  return guardAllowed(listener, decision, dialled);
}

/** The audit fields of a verdict: destination as decided, rule, chosen SNAT address, parent proxy. */
export function factsOf(verdict: DestinationVerdict, parentIp?: string): EgressFacts {
  const via = verdict.rule?.via;
  const destination = {
    ...(verdict.host ? { domain: verdict.host } : {}),
    ...(verdict.ip ? { ip: verdict.ip } : {}),
    ...(verdict.port ? { port: verdict.port } : {}),
  };
  return {
    ...(Object.keys(destination).length > 0 ? { destination } : {}),
    ...(verdict.rule ? { rule: verdict.rule.name } : {}),
    // The chosen source address, until a dial reports the one (and the port) actually used.
    ...(verdict.allow && verdict.snat ? { snat: snatOf(verdict.snat, {}) } : {}),
    ...(via ? { parent: { address: via.host, port: via.port, ...(parentIp ? { ip: parentIp } : {}) } } : {}),
  };
}
