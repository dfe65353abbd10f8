import { GatewayError } from '../core/errors.ts';
import { httpRefusalFor } from '../core/refusal-table.ts';
import { parseSpiffeId } from '../identity/spiffe-id.ts';
import { type DestinationVerdict, decideDestination } from './decide-destination.ts';
import type { GatewayState, ListenerSettings } from './gateway-state.ts';
import { parseAuthority } from './request-target.ts';

export interface PolicyCheckInput {
  readonly spiffeId: string;
  /** Defaults to the first listener. */
  readonly listener?: string;
  /** `host:port`; required for connect-mode listeners. */
  readonly dest?: string;
}

export interface PolicyCheckResult {
  readonly allow: boolean;
  readonly listener: string;
  readonly rule: string | null;
  readonly reason: string;
  readonly code?: string;
  /** The HTTP status a connect-mode client would get; absent for tcp mode (a TCP reset). */
  readonly status?: number;
  readonly ip?: string;
  readonly snat?: string;
  /** Report mode: let through, although the policy would refuse it (`rule`, `reason`). */
  readonly wouldDeny?: true;
  /** The allowing rule's parent proxy (connect mode), as configured. */
  readonly via?: string;
  /** One line for humans, as the CLI prints it. */
  readonly summary: string;
}

function requestedDestination(listener: ListenerSettings, dest: string | undefined) {
  if (listener.mode === 'tcp') return undefined;
  if (!dest)
    throw new GatewayError(
      'EGW_PROXY_BAD_REQUEST',
      `a destination (host:port) is required for connect-mode listener ${listener.name}`,
    );
  const target = parseAuthority(dest);
  if (!target)
    throw new GatewayError(
      'EGW_PROXY_BAD_REQUEST',
      `the destination must be host:port with a valid host name or IP, got ${JSON.stringify(dest)}`,
    );
  return target;
}

function resultOf(listener: ListenerSettings, verdict: DestinationVerdict): PolicyCheckResult {
  const rule = verdict.rule?.name ?? null;
  const head = `listener=${listener.name} rule=${rule ?? '(default deny)'}`;
  if (verdict.allow) {
    const snat = verdict.snat ? ` snat=${verdict.snat}` : '';
    const word = verdict.wouldDeny ? 'WOULD-DENY (report mode, let through)' : 'ALLOW';
    const via = listener.mode === 'connect' ? verdict.rule?.via?.url : undefined;
    return {
      allow: true,
      listener: listener.name,
      rule,
      reason: verdict.reason,
      ip: verdict.ip,
      ...(verdict.snat ? { snat: verdict.snat } : {}),
      ...(verdict.wouldDeny ? { wouldDeny: true } : {}),
      ...(via ? { via } : {}),
      summary: `${word} ${head} ip=${verdict.ip}${snat}${via ? ` via=${via}` : ''}: ${verdict.reason}`,
    };
  }
  const status = listener.mode === 'connect' ? httpRefusalFor(verdict.code).status : undefined;
  const answer = status === undefined ? 'reset' : `status=${status}`;
  return {
    allow: false,
    listener: listener.name,
    rule,
    reason: verdict.reason,
    code: verdict.code,
    ...(status === undefined ? {} : { status }),
    ...(verdict.ip ? { ip: verdict.ip } : {}),
    summary: `DENY ${head} ${answer} code=${verdict.code}: ${verdict.reason}`,
  };
}

/**
 * The decision a connection would get, from the same decideDestination as live traffic (DNS,
 * policy, SSRF guard, SNAT). Shared by `egress-gateway policy check` and admin `POST /policy/check`.
 */
export async function checkPolicy(state: GatewayState, input: PolicyCheckInput): Promise<PolicyCheckResult> {
  const listenerName = input.listener ?? [...state.listeners.keys()][0] ?? '';
  const listener = state.listeners.get(listenerName);
  if (!listener) throw new GatewayError('EGW_CONFIG_INVALID', `no listener is named ${JSON.stringify(listenerName)}`);
  const id = parseSpiffeId(input.spiffeId);
  const verdict = await decideDestination(state, listener, id, requestedDestination(listener, input.dest));
  return resultOf(listener, verdict);
}
