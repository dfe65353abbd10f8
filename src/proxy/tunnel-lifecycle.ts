import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { auditEgressClosed, auditEgressPermitted, type EgressFacts } from '../core/audit-records.ts';
import type { ErrorCode } from '../core/errors.ts';
import { type PipeResult, pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import type { ConnectionContext } from './connection-context.ts';
import { describeError } from './error-boundary.ts';
import { resetConnection } from './reset-connection.ts';

/** How one tunnel is announced, listed and timed. */
export interface TunnelPlan {
  /** The allowing decision's reason (egress-permitted). */
  readonly reason: string;
  /** Destination, rule and bound SNAT, shared by the permit and close records. */
  readonly facts: EgressFacts;
  /** Only on the permit record (CONNECT's request line). */
  readonly http?: EgressFacts['http'];
  /** What /connections shows as the destination. */
  readonly target: string;
  /** Where the close record's `start` and duration count from (default: the permit). */
  readonly since?: { readonly at: Date; readonly ns: bigint };
  /** Runs after the permit and before the relay (CONNECT's 200 line), unless the client is gone. */
  readonly start?: () => void;
}

function destroyAfterFault(ctx: ConnectionContext, client: Duplex, upstream: Socket, error: unknown): PipeResult {
  client.destroy();
  upstream.destroy();
  resetConnection(ctx.raw);
  const counters = upstreamCounters(upstream);
  return {
    bytesFromClient: counters.fromClient,
    bytesToClient: counters.toClient,
    error: `internal error: ${describeError(error)}`,
  };
}

/**
 * Owns a dialled upstream from the moment it connects: publishes egress-permitted, lists the
 * tunnel, relays, and always unlists it and publishes exactly one egress-closed, whether the
 * client left during the dial, a side reset, or the code threw (`EGW_INTERNAL`, both sockets
 * destroyed, the client reset).
 */
export async function runTunnel(ctx: ConnectionContext, client: Duplex, upstream: Socket, plan: TunnelPlan) {
  const startedNs = plan.since?.ns ?? process.hrtime.bigint();
  const startedAt = plan.since?.at ?? new Date();
  let result: PipeResult = { bytesFromClient: 0, bytesToClient: 0 };
  let code: ErrorCode | undefined;
  let untrack = () => {};
  try {
    auditEgressPermitted(ctx.auditBase, plan.reason, { ...plan.facts, ...(plan.http ? { http: plan.http } : {}) });
    untrack = ctx.runtime.tunnels.add({
      connectionId: ctx.id,
      listener: ctx.listener.name,
      spiffeId: ctx.peer.spiffeId.uri,
      destination: plan.target,
      ...(plan.facts.snat?.ip ? { snat: plan.facts.snat.ip } : {}),
      startedAt,
      bytes: upstreamCounters(upstream),
    });
    if (!client.destroyed) plan.start?.();
    ctx.runtime.faultProbe?.('tunnel-open', ctx);
    result = await pipeSockets(client, upstream, { idleTimeoutMs: ctx.state.timeouts.idleMs });
  } catch (error) {
    code = 'EGW_INTERNAL';
    result = destroyAfterFault(ctx, client, upstream, error);
  } finally {
    untrack();
  }
  auditEgressClosed(ctx.auditBase, plan.facts, {
    reason: result.error ?? 'closed',
    ...(code ? { code } : {}),
    startedAt,
    startedNs,
    bytesFromClient: result.bytesFromClient,
    bytesToClient: result.bytesToClient,
  });
}
