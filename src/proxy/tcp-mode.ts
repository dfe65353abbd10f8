import { auditEgressRejected, snatOf } from '../core/audit-records.ts';
import { GatewayError } from '../core/errors.ts';
import { dialFromSnatPool } from '../upstream/dial-snat-pool.ts';
import type { ConnectionContext } from './connection-context.ts';
import { decideDestination, factsOf } from './decide-destination.ts';
import type { ModeHandler } from './handle-connection.ts';
import { closeAtExpiry } from './redecide-tunnels.ts';
import { resetConnection } from './reset-connection.ts';
import { runTunnel } from './tunnel-lifecycle.ts';
import { upstreamProxyHeader } from './upstream-proxy-header.ts';

/**
 * tcp mode: the decrypted stream goes to one fixed upstream (a BIG-IP virtual server in front of
 * tinyproxy). Every refusal is a TCP reset, like the iRule `reject`; the decision is the same
 * decideDestination that `policy check` runs. The returned promise is the error boundary's.
 */
export function createTcpModeHandler(): ModeHandler {
  return (ctx) => handleTcp(ctx);
}

async function handleTcp(ctx: ConnectionContext): Promise<void> {
  const upstream = ctx.listener.upstream;
  if (!upstream) return resetConnection(ctx.raw);
  if (!ctx.limit.ok) {
    auditEgressRejected(ctx.auditBase, ctx.limit, { destination: { domain: upstream.host, port: upstream.port } });
    return resetConnection(ctx.raw);
  }
  const verdict = await decideDestination(ctx.state, ctx.listener, ctx.peer.spiffeId);
  if (!verdict.allow) {
    auditEgressRejected(ctx.auditBase, verdict, factsOf(verdict));
    return resetConnection(ctx.raw);
  }
  let socket: Awaited<ReturnType<typeof dialFromSnatPool>>;
  try {
    socket = await dialFromSnatPool({
      ip: verdict.ip,
      port: verdict.port,
      timeoutMs: ctx.state.timeouts.connectMs,
      listener: ctx.listener.name,
      ...(verdict.snat ? { localAddress: verdict.snat } : {}),
      ...(verdict.snatFallbacks ? { fallbacks: verdict.snatFallbacks } : {}),
    });
  } catch (error) {
    const gatewayError = error instanceof GatewayError ? error : new GatewayError('EGW_UPSTREAM_ERROR', String(error));
    auditEgressRejected(ctx.auditBase, { code: gatewayError.code, reason: gatewayError.message }, factsOf(verdict));
    return resetConnection(ctx.raw);
  }
  // runTunnel owns the upstream from here: one egress-closed per admitted record on every path,
  // including a client that reset while the dial was in flight.
  await runTunnel(ctx, ctx.tls, socket, {
    verdict,
    facts: { ...factsOf(verdict), snat: snatOf(verdict.snat, socket) },
    target: `${upstream.host}:${upstream.port}`,
    since: { at: ctx.startedAt, ns: ctx.startedNs },
    start: () => {
      closeAtExpiry(ctx);
      // Written before any client byte is piped, so the upstream reads it first.
      if (ctx.listener.upstreamProxyProtocol === 'v2') socket.write(upstreamProxyHeader(ctx));
    },
  });
}
