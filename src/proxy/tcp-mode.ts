import {
  auditEgressClosed,
  auditEgressPermitted,
  auditEgressRejected,
  type EgressFacts,
  snatOf,
} from '../core/audit-records.ts';
import { GatewayError } from '../core/errors.ts';
import { pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import { dialUpstream } from '../upstream/dial-upstream.ts';
import type { ConnectionContext } from './connection-context.ts';
import { decideDestination, factsOf } from './decide-destination.ts';
import { type ModeHandler, resetConnection } from './handle-connection.ts';

/**
 * tcp mode: the decrypted stream goes to one fixed upstream (a BIG-IP virtual server in front of
 * tinyproxy). Every refusal is a TCP reset, like the iRule `reject`; the decision is the same
 * decideDestination that `policy check` runs.
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
    auditEgressRejected(ctx.auditBase, ctx.limit, { destination: { domain: upstream.host, port: upstream.port } });
    return resetConnection(ctx.raw);
  }
  const verdict = await decideDestination(ctx.state, ctx.listener, ctx.peer.spiffeId);
  if (!verdict.allow) {
    auditEgressRejected(ctx.auditBase, verdict, factsOf(verdict));
    return resetConnection(ctx.raw);
  }
  let socket: Awaited<ReturnType<typeof dialUpstream>>;
  try {
    socket = await dialUpstream({
      ip: verdict.ip,
      port: verdict.port,
      timeoutMs: ctx.state.timeouts.connectMs,
      ...(verdict.snat ? { localAddress: verdict.snat } : {}),
    });
  } catch (error) {
    const gatewayError = error instanceof GatewayError ? error : new GatewayError('EGW_UPSTREAM_ERROR', String(error));
    auditEgressRejected(ctx.auditBase, { code: gatewayError.code, reason: gatewayError.message }, factsOf(verdict));
    return resetConnection(ctx.raw);
  }
  const facts: EgressFacts = { ...factsOf(verdict), snat: snatOf(verdict.snat, socket) };
  auditEgressPermitted(ctx.auditBase, verdict.reason, facts);
  const ending = new AbortController();
  const untrack = ctx.runtime.tunnels.add({
    connectionId: ctx.id,
    listener: ctx.listener.name,
    spiffeId: ctx.peer.spiffeId.uri,
    destination: `${upstream.host}:${upstream.port}`,
    ...(facts.snat?.ip ? { snat: facts.snat.ip } : {}),
    startedAt: ctx.startedAt,
    bytes: upstreamCounters(socket),
    peer: ctx.peer,
    close: (reason) => ending.abort(reason),
  });
  const result = await pipeSockets(ctx.tls, socket, {
    idleTimeoutMs: ctx.state.timeouts.idleMs,
    signal: ending.signal,
  });
  untrack();
  auditEgressClosed(ctx.auditBase, facts, {
    reason: result.error ?? 'closed',
    startedAt: ctx.startedAt,
    startedNs: ctx.startedNs,
    bytesFromClient: result.bytesFromClient,
    bytesToClient: result.bytesToClient,
  });
}
