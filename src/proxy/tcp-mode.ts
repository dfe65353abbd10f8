import { publishAudit } from '../core/audit-event.ts';
import { GatewayError } from '../core/errors.ts';
import { decide } from '../policy/decide.ts';
import { dialUpstream } from '../upstream/dial-upstream.ts';
import { pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import type { ConnectionContext } from './connection-context.ts';
import { type ModeHandler, elapsedNs, resetConnection } from './handle-connection.ts';

/**
 * tcp mode: the decrypted stream goes to one fixed upstream (a BIG-IP virtual server in front of
 * tinyproxy). A denied identity gets a TCP reset, like the iRule `reject`.
 */
export function createTcpModeHandler(): ModeHandler {
  return (ctx) => {
    void handleTcp(ctx);
  };
}

async function handleTcp(ctx: ConnectionContext): Promise<void> {
  const upstream = ctx.listener.upstream;
  if (!upstream) return resetConnection(ctx.raw);
  if (!ctx.limit.ok) {
    publishAudit({ ...ctx.auditBase, action: 'egress-rejected', reason: ctx.limit.reason, code: ctx.limit.code, destination: { domain: upstream.host, port: upstream.port } });
    return resetConnection(ctx.raw);
  }
  let ip: string | undefined;
  try {
    ip = await ctx.state.resolver.resolve(upstream.host);
  } catch {
    ip = undefined;
  }
  const destination = { domain: upstream.host, ...(ip ? { ip } : {}), port: upstream.port };
  const decision = decide(ctx.state.policy, { listener: ctx.listener.name, identity: ctx.peer.spiffeId, destination: { host: upstream.host, port: upstream.port, ...(ip ? { ip } : {}) } });
  const rule = decision.rule ? { rule: { name: decision.rule.name } } : {};
  if (!decision.allow) {
    publishAudit({ ...ctx.auditBase, action: 'egress-rejected', reason: decision.reason, code: 'EGW_POLICY_DENIED', destination, ...rule });
    return resetConnection(ctx.raw);
  }
  const snat = decision.rule?.snat ?? ctx.listener.snat;
  let socket: Awaited<ReturnType<typeof dialUpstream>>;
  try {
    if (!ip) throw new GatewayError('EGW_UPSTREAM_DNS', `cannot resolve upstream ${upstream.host}`);
    socket = await dialUpstream({ ip, port: upstream.port, timeoutMs: ctx.state.timeouts.connectMs, ...(snat ? { localAddress: snat } : {}) });
  } catch (error) {
    const gatewayError = error as GatewayError;
    publishAudit({ ...ctx.auditBase, action: 'egress-rejected', reason: gatewayError.message, code: gatewayError.code, destination, ...rule, ...(snat ? { snat: { ip: snat } } : {}) });
    return resetConnection(ctx.raw);
  }
  const snatRecord = { snat: { ip: socket.localAddress ?? snat ?? '', ...(socket.localPort ? { port: socket.localPort } : {}) } };
  publishAudit({ ...ctx.auditBase, action: 'egress-permitted', reason: decision.reason, destination, ...rule, ...snatRecord });
  const untrack = ctx.runtime.tunnels.add({
    connectionId: ctx.id,
    listener: ctx.listener.name,
    spiffeId: ctx.peer.spiffeId.uri,
    destination: `${upstream.host}:${upstream.port}`,
    ...(snatRecord.snat.ip ? { snat: snatRecord.snat.ip } : {}),
    startedAt: ctx.startedAt,
    bytes: upstreamCounters(socket),
  });
  const result = await pipeSockets(ctx.tls, socket, { idleTimeoutMs: ctx.state.timeouts.idleMs });
  untrack();
  publishAudit({
    ...ctx.auditBase,
    action: 'egress-closed',
    reason: result.error ?? 'closed',
    destination,
    ...rule,
    ...snatRecord,
    start: ctx.startedAt.toISOString(),
    end: new Date().toISOString(),
    durationNs: elapsedNs(ctx.startedNs),
    bytesFromClient: result.bytesFromClient,
    bytesToClient: result.bytesToClient,
  });
}
