import { canonicalHost } from '../core/host-name.ts';
import type { SpiffeId } from '../identity/spiffe-id.ts';
import type { CompiledPolicy, CompiledRule } from './compile-policy.ts';
import { canonicalHostMatches, spiffeIdMatches } from './glob.ts';

/** What a decision is about. `destination` is absent for a tcp listener's fixed upstream check-less case. */
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

function fromMatches(rule: CompiledRule, id: SpiffeId): boolean {
  const from = rule.from;
  if (!from) return true;
  if (from.namespaces && id.namespace !== undefined && from.namespaces.has(id.namespace)) return true;
  if (
    from.serviceAccounts &&
    id.namespace !== undefined &&
    from.serviceAccounts.has(`${id.namespace}/${id.serviceAccount}`)
  )
    return true;
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
 * Pure, first-match-wins evaluation (the F5 iRule model: allow what matches, reset all else).
 * Matching rules: `listeners` (if given) contains the listener; `from` (if given) matches by
 * namespace, service account or SPIFFE ID glob (any of them); `to` (if given) matches port and
 * then host glob (names only, canonical form) or resolved IP in `cidrs`.
 */
export function decide(policy: CompiledPolicy, input: DecisionInput): Decision {
  const raw = input.destination?.host;
  // The same canonicaliser compiled the host globs. A host without a canonical spelling would
  // slip past every deny glob, so it is refused here even though callers already refuse it.
  const host = raw === undefined ? undefined : canonicalHost(raw);
  if (raw !== undefined && host === undefined)
    return { allow: false, reason: `destination host ${JSON.stringify(raw.slice(0, 300))} has no canonical spelling` };
  for (const rule of policy.rules) {
    if (rule.listeners && !rule.listeners.has(input.listener)) continue;
    if (!fromMatches(rule, input.identity)) continue;
    if (!toMatches(rule, input.destination, host)) continue;
    return rule.action === 'allow'
      ? { allow: true, reason: `allowed by rule ${rule.name}`, rule }
      : { allow: false, reason: `denied by rule ${rule.name}`, rule };
  }
  return { allow: false, reason: DEFAULT_DENY_REASON };
}
