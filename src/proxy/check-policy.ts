import { GatewayError } from '../core/errors.ts';
import { parseSpiffeId } from '../identity/spiffe-id.ts';
import { authorizeDestination } from './authorize-destination.ts';
import { parseAuthority } from './connect-mode.ts';
import type { GatewayState } from './gateway-state.ts';
import { decideTcpUpstream } from './tcp-mode.ts';

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
  readonly status?: number;
  readonly ip?: string;
  readonly snat?: string;
  /** One line for humans, as the CLI prints it. */
  readonly summary: string;
}

function splitDest(dest: string): { host: string; port: number } {
  const target = parseAuthority(dest);
  if (!target)
    throw new GatewayError(
      'EGW_PROXY_BAD_REQUEST',
      `the destination must be host:port with a valid host name or IP, got ${JSON.stringify(dest)}`,
    );
  return target;
}

/**
 * The decision a connection would get, with the same code path as live traffic (DNS, policy,
 * SSRF guard). Shared by `egress-gateway policy check` and admin `POST /policy/check`.
 */
export async function checkPolicy(state: GatewayState, input: PolicyCheckInput): Promise<PolicyCheckResult> {
  const listenerName = input.listener ?? [...state.listeners.keys()][0] ?? '';
  const listener = state.listeners.get(listenerName);
  if (!listener) throw new GatewayError('EGW_CONFIG_INVALID', `no listener is named ${JSON.stringify(listenerName)}`);
  const id = parseSpiffeId(input.spiffeId);
  if (listener.mode === 'connect') {
    if (!input.dest)
      throw new GatewayError(
        'EGW_PROXY_BAD_REQUEST',
        `a destination (host:port) is required for connect-mode listener ${listener.name}`,
      );
    const { host, port } = splitDest(input.dest);
    const result = await authorizeDestination(state, listener, id, host, port);
    const rule = result.decision?.rule?.name ?? null;
    if (result.allow) {
      return {
        allow: true,
        listener: listener.name,
        rule,
        reason: result.decision.reason,
        ip: result.ip,
        ...(result.snat ? { snat: result.snat } : {}),
        summary: `ALLOW listener=${listener.name} rule=${rule ?? '(default deny)'} ip=${result.ip}${result.snat ? ` snat=${result.snat}` : ''}: ${result.decision.reason}`,
      };
    }
    return {
      allow: false,
      listener: listener.name,
      rule,
      reason: result.reason,
      code: result.code,
      status: result.status,
      ...(result.ip ? { ip: result.ip } : {}),
      summary: `DENY listener=${listener.name} rule=${rule ?? '(default deny)'} status=${result.status} code=${result.code}: ${result.reason}`,
    };
  }
  const { decision } = await decideTcpUpstream(state, listener, id);
  const rule = decision.rule?.name ?? null;
  return {
    allow: decision.allow,
    listener: listener.name,
    rule,
    reason: decision.reason,
    ...(decision.allow ? {} : { code: 'EGW_POLICY_DENIED' }),
    summary: `${decision.allow ? 'ALLOW' : 'DENY'} listener=${listener.name} rule=${rule ?? '(default deny)'}: ${decision.reason}`,
  };
}
