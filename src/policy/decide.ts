import { canonicalHost } from '../core/host-name.ts';
import type { SpiffeId } from '../identity/spiffe-id.ts';
import type { CompiledPolicy, CompiledRule } from './compile-policy.ts';
import { canonicalHostMatches, spiffeIdMatches } from './glob.ts';

/** What a decision is about: the listener, the caller and (for connect and tcp mode alike) the destination. */
export interface DecisionInput {
  readonly listener: string;
  readonly identity: SpiffeId;
  readonly destination?: {
    readonly host?: string;
    /** The resolved (or literal) IP that will be dialled; unknown before or without DNS. */
    readonly ip?: string;
    readonly port?: number;
  };
}

/** A policy verdict. A deny is a value, never an exception. */
export interface Decision {
  readonly allow: boolean;
  readonly reason: string;
  /** The rule that decided; undefined for the default deny. */
  readonly rule?: CompiledRule;
}

export const DEFAULT_DENY_REASON = 'no rule matched (default deny)';

/**
 * Namespaces and service accounts are the gateway's own trust domain's: `ns/default` of a partner
 * is another organisation's namespace. Other trust domains are selected by `trustDomains` or a
 * SPIFFE ID glob, which always name their trust domain.
 */
function fromMatches(rule: CompiledRule, id: SpiffeId, ownDomain: string): boolean {
  const from = rule.from;
  if (!from) return true;
  const own = id.trustDomain === ownDomain && id.namespace !== undefined;
  if (own && from.namespaces?.has(id.namespace as string)) return true;
  if (own && from.serviceAccounts?.has(`${id.namespace}/${id.serviceAccount}`)) return true;
  if (from.trustDomains?.has(id.trustDomain)) return true;
  if (from.spiffeIds?.some((glob) => spiffeIdMatches(glob, id.uri))) return true;
  return false;
}

function toMatches(rule: CompiledRule, destination: DecisionInput['destination'], host: string | undefined): boolean {
  const to = rule.to;
  if (!to) return true;
  if (to.ports && (destination?.port === undefined || !to.ports.has(destination.port))) return false;
  if (!to.hosts && !to.cidrs) return true;
  if (to.hosts && host !== undefined && to.hosts.some((glob) => canonicalHostMatches(glob, host))) return true;
  if (to.cidrs && destination?.ip !== undefined && to.cidrs.has(destination.ip)) return true;
  return false;
}

/**
 * The destination host in canonical form. The same canonicaliser compiled the host globs; a host
 * without a canonical spelling would slip past every deny glob, so it is refused here even though
 * callers already refuse it.
 */
function destinationHost(input: DecisionInput): string | undefined | Decision {
  const raw = input.destination?.host;
  if (raw === undefined) return undefined;
  return (
    canonicalHost(raw) ?? {
      allow: false,
      reason: `destination host ${JSON.stringify(raw.slice(0, 300))} has no canonical spelling`,
    }
  );
}

/**
 * Pure, first-match-wins evaluation (the F5 iRule model: allow what matches, reset all else).
 * Matching rules: `listeners` (if given) contains the listener; `from` (if given) matches by
 * namespace or service account (own trust domain), trust domain or SPIFFE ID glob (any of them); `to` (if given) matches port and
 * then host glob (names only, canonical form) or resolved IP in `cidrs`.
 */
export function decide(policy: CompiledPolicy, input: DecisionInput): Decision {
  const host = destinationHost(input);
  if (typeof host === 'object') return host;
  for (const rule of policy.rules) {
    if (rule.listeners && !rule.listeners.has(input.listener)) continue;
    if (!fromMatches(rule, input.identity, policy.trustDomain)) continue;
    if (!toMatches(rule, input.destination, host)) continue;
    return rule.action === 'allow'
      ? { allow: true, reason: `allowed by rule ${rule.name}`, rule }
      : { allow: false, reason: `denied by rule ${rule.name}`, rule };
  }
  return { allow: false, reason: DEFAULT_DENY_REASON };
}

export const UNRESOLVED_DENY_REASON = 'no rule can allow this identity to reach this destination (not resolved)';

/** True when `rule` could match `port` only through the destination IP (`to.cidrs`). */
function needsIp(rule: CompiledRule, port: number | undefined): boolean {
  const to = rule.to;
  return to?.cidrs !== undefined && (!to.ports || (port !== undefined && to.ports.has(port)));
}

function couldAllow(
  policy: CompiledPolicy,
  rule: CompiledRule,
  input: DecisionInput,
  host: string | undefined,
): boolean {
  if (rule.action !== 'allow' || (rule.listeners && !rule.listeners.has(input.listener))) return false;
  if (!fromMatches(rule, input.identity, policy.trustDomain)) return false;
  return toMatches(rule, input.destination, host) || needsIp(rule, input.destination?.port);
}

/**
 * The decision on the name alone, or undefined when it depends on the destination IP: the same
 * first match as `decide`, stopping at the first `to.cidrs` rule the name does not settle. When no
 * rule from there on could allow, the answer is a deny without DNS, so a denied identity never
 * makes the gateway resolve a name (issue 9: DNS exfiltration and stalls).
 */
export function decideByName(policy: CompiledPolicy, input: DecisionInput): Decision | undefined {
  const byName: DecisionInput = { ...input, destination: { ...input.destination, ip: undefined } };
  const host = destinationHost(input);
  if (typeof host === 'object') return host;
  for (const [index, rule] of policy.rules.entries()) {
    if (rule.listeners && !rule.listeners.has(input.listener)) continue;
    if (!fromMatches(rule, input.identity, policy.trustDomain)) continue;
    if (toMatches(rule, byName.destination, host)) {
      return rule.action === 'allow'
        ? { allow: true, reason: `allowed by rule ${rule.name}`, rule }
        : { allow: false, reason: `denied by rule ${rule.name}`, rule };
    }
    if (needsIp(rule, input.destination?.port)) {
      const rest = policy.rules.slice(index);
      return rest.some((later) => couldAllow(policy, later, byName, host))
        ? undefined
        : { allow: false, reason: UNRESOLVED_DENY_REASON };
    }
  }
  return { allow: false, reason: DEFAULT_DENY_REASON };
}
