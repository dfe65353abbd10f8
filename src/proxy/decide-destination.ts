import { isIP } from 'node:net';
import {
  type AuditBase,
  auditEgressPermitted,
  auditEgressWouldDeny,
  type EgressFacts,
  snatOf,
} from '../core/audit-records.ts';
import { type ErrorCode, GatewayError } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import { type SnatPool, snatOrder } from '../core/snat-pool.ts';
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
      /** The rest of the SNAT pool, in the order a dial tries them when `snat` is exhausted. */
      readonly snatFallbacks?: readonly string[];
      /**
       * Report mode: the policy would refuse this (`rule` and `reason` say why) and the listener
       * lets it through; audited as egress-would-deny instead of egress-permitted.
       */
      readonly wouldDeny?: true;
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
  // A pool is of one family (checked at load), so its first address speaks for all.
  const family = snat ? isIP(snat.addresses[0] ?? '') : 0;
  return { key: identity.uri, ...(family === 4 || family === 6 ? { family } : {}) };
}

/**
 * On a report listener a policy deny is let through (and audited as a would-deny), unless the
 * deciding rule says `enforce: always`. The default deny has no rule, so it is reported through too.
 */
function reportsThrough(listener: ListenerSettings, decision: Decision): boolean {
  return listener.enforcement === 'report' && !decision.allow && decision.rule?.enforce !== 'always';
}

/**
 * The SNAT helper, the one place the source address is chosen: the rule's pool, else the
 * listener's; the pool's selection picks the first address, the rest are the failover order.
 */
function snatChoice(pool: SnatPool | undefined, identity: SpiffeId): { snat?: string; snatFallbacks?: string[] } {
  if (!pool) return {};
  const [snat, ...rest] = snatOrder(pool, identity.uri);
  return { ...(snat ? { snat } : {}), ...(rest.length > 0 ? { snatFallbacks: rest } : {}) };
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
  let byName = literal
    ? decide(state.policy, { ...input, destination: { host, port, ip: literal } })
    : decideByName(state.policy, input);
  if (byName && !byName.allow) {
    if (!reportsThrough(listener, byName)) return policyDeny(byName, host, port, literal);
    // Report mode dials what enforce mode would refuse, so the name is resolved even for an
    // identity no rule could allow; a deny without a rule is then decided again on the IP, so
    // the would-deny names the rule (a `to.cidrs` deny, maybe `enforce: always`) that refuses it.
    if (!byName.rule) byName = undefined;
  }
  const { ip, error } = await resolveOnce(state, host, lookupContext(listener, identity, byName));
  const decision = byName ?? decide(state.policy, { ...input, destination: { host, port, ...(ip ? { ip } : {}) } });
  if (!decision.allow && !reportsThrough(listener, decision)) return policyDeny(decision, host, port, ip);
  const rule = decision.rule ? { rule: decision.rule } : {};
  // Reported only to a client the rules allow (or a report listener lets through): everyone
  // else got the policy deny above.
  if (error || ip === undefined)
    return deny(error?.code ?? 'EGW_UPSTREAM_DNS', error?.message ?? `cannot resolve ${host}`, { host, port, ...rule });
  return guardAllowed(listener, identity, decision, { host, port, ip });
}

/** After an allow: the SSRF guard for client-chosen destinations, then the SNAT address. */
function guardAllowed(
  listener: ListenerSettings,
  identity: SpiffeId,
  decision: Decision,
  { host, port, ip }: { readonly host: string; readonly port: number; readonly ip: string },
): DestinationVerdict {
  const rule = decision.rule ? { rule: decision.rule } : {};
  if (listener.mode === 'connect' && prohibitedDestinations.has(ip) && !decision.rule?.to?.cidrs?.has(ip)) {
    return deny(
      'EGW_POLICY_DESTINATION_PROHIBITED',
      `destination ${ip} is in a prohibited range (loopback, private, link-local, ...); ${decision.rule ? `rule ${decision.rule.name}` : 'a rule'} must list it in to.cidrs`,
      { host, port, ip, ...rule },
    );
  }
  const snat = snatChoice(decision.rule?.snat ?? listener.snat, identity);
  const report = decision.allow ? {} : { wouldDeny: true as const };
  return { allow: true, host, port, ip, reason: decision.reason, ...rule, ...snat, ...report };
}

/** The audit record of a verdict let through: egress-permitted, or egress-would-deny on a report listener. */
export function auditAdmitted(
  base: AuditBase,
  verdict: Extract<DestinationVerdict, { allow: true }>,
  facts: EgressFacts,
  statusCode?: number,
): void {
  (verdict.wouldDeny ? auditEgressWouldDeny : auditEgressPermitted)(base, verdict.reason, facts, statusCode);
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
  // A report listener keeps letting through what it reported when the tunnel opened.
  if (!decision.allow && !reportsThrough(listener, decision))
    return policyDeny(decision, dialled.host, dialled.port, dialled.ip);
  return guardAllowed(listener, identity, decision, dialled);
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
