import { publishAudit } from '../core/audit-event.ts';
import { GatewayError } from '../core/errors.ts';
import type { SpiffeId } from '../identity/spiffe-id.ts';
import { type Decision, decide } from '../policy/decide.ts';
import { dialUpstream } from '../upstream/dial-upstream.ts';
import type { ConnectionContext } from './connection-context.ts';
import type { GatewayState, ListenerSettings } from './gateway-state.ts';
import { type ModeHandler, resetConnection } from './handle-connection.ts';
import { runTunnel } from './tunnel-lifecycle.ts';

/**
 * tcp mode: the decrypted stream goes to one fixed upstream (a BIG-IP virtual server in front of
 * tinyproxy). A denied identity gets a TCP reset, like the iRule `reject`.
 */
export function createTcpModeHandler(): ModeHandler {
  return (ctx) => handleTcp(ctx);
}

/**
 * The decision for a tcp listener: its fixed upstream is the destination (resolved once, so
 * `to.cidrs` can match). Shared by live traffic and `policy check`.
 */
export async function decideTcpUpstream(
  state: GatewayState,
  listener: ListenerSettings,
  identity: SpiffeId,
): Promise<{ ip?: string; decision: Decision }> {
  const upstream = listener.upstream;
  const ip = upstream ? await state.resolver.resolve(upstream.host).catch(() => undefined) : undefined;
  const destination = upstream ? { host: upstream.host, port: upstream.port, ...(ip ? { ip } : {}) } : {};
  return { ...(ip ? { ip } : {}), decision: decide(state.policy, { listener: listener.name, identity, destination }) };
}

async function handleTcp(ctx: ConnectionContext): Promise<void> {
  const upstream = ctx.listener.upstream;
  if (!upstream) return resetConnection(ctx.raw);
  if (!ctx.limit.ok) {
    publishAudit({
      ...ctx.auditBase,
      action: 'egress-rejected',
      reason: ctx.limit.reason,
      code: ctx.limit.code,
      destination: { domain: upstream.host, port: upstream.port },
    });
    return resetConnection(ctx.raw);
  }
  const { ip, decision } = await decideTcpUpstream(ctx.state, ctx.listener, ctx.peer.spiffeId);
  const destination = { domain: upstream.host, ...(ip ? { ip } : {}), port: upstream.port };
  const rule = decision.rule ? { rule: { name: decision.rule.name } } : {};
  if (!decision.allow) {
    publishAudit({
      ...ctx.auditBase,
      action: 'egress-rejected',
      reason: decision.reason,
      code: 'EGW_POLICY_DENIED',
      destination,
      ...rule,
    });
    return resetConnection(ctx.raw);
  }
  const snat = decision.rule?.snat ?? ctx.listener.snat;
  let socket: Awaited<ReturnType<typeof dialUpstream>>;
  try {
    if (!ip) throw new GatewayError('EGW_UPSTREAM_DNS', `cannot resolve upstream ${upstream.host}`);
    socket = await dialUpstream({
      ip,
      port: upstream.port,
      timeoutMs: ctx.state.timeouts.connectMs,
      ...(snat ? { localAddress: snat } : {}),
    });
  } catch (error) {
    const gatewayError = error as GatewayError;
    publishAudit({
      ...ctx.auditBase,
      action: 'egress-rejected',
      reason: gatewayError.message,
      code: gatewayError.code,
      destination,
      ...rule,
      ...(snat ? { snat: { ip: snat } } : {}),
    });
    return resetConnection(ctx.raw);
  }
  await runTunnel(ctx, ctx.tls, socket, {
    reason: decision.reason,
    destination,
    ...rule,
    ...(snat ? { snat } : {}),
    target: `${upstream.host}:${upstream.port}`,
    since: { at: ctx.startedAt, ns: ctx.startedNs },
  });
}
