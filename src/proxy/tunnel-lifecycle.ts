import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { auditEgressClosed, type EgressFacts } from '../core/audit-records.ts';
import type { ErrorCode } from '../core/errors.ts';
import { type PipeCounters, pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import type { ConnectionContext } from './connection-context.ts';
import { auditAdmitted, type DestinationVerdict } from './decide-destination.ts';
import { describeError } from './error-boundary.ts';
import { closeReason, tunnelRecheck } from './redecide-tunnels.ts';
import { resetConnection } from './reset-connection.ts';

/** How one tunnel is announced, listed and timed. */
export interface TunnelPlan {
  /** The admitting decision: egress-permitted, or egress-would-deny in report mode; re-decided on reload. */
  readonly verdict: Extract<DestinationVerdict, { allow: true }>;
  /** Destination, rule, parent and bound SNAT, shared by the admit and close records. */
  readonly facts: EgressFacts;
  /** Only on the permit record (CONNECT's request line). */
  readonly http?: EgressFacts['http'];
  /** What /connections shows as the destination. */
  readonly target: string;
  /** Where the close record's `start` and duration count from (default: the permit). */
  readonly since?: { readonly at: Date; readonly ns: bigint };
  /** Tunnel byte counts (default: the upstream socket's; CONNECT via a parent leaves out its own exchange). */
  readonly bytes?: PipeCounters;
  /** Runs after the permit and before the relay (CONNECT's 200 line), unless the client is gone. */
  readonly start?: () => void;
}

function destroyAfterFault(ctx: ConnectionContext, client: Duplex, upstream: Socket, error: unknown): string {
  client.destroy();
  upstream.destroy();
  resetConnection(ctx.raw);
  return `internal error: ${describeError(error)}`;
}

/**
 * Owns a dialled upstream (a parent proxy's tunnel too) from the moment it connects: publishes
 * egress-permitted (or egress-would-deny), lists the tunnel for /connections and reload re-checks,
 * relays, and always unlists it and publishes exactly one egress-closed, whether the client left
 * during the dial, a side reset, a reload closed it, or the code threw (`EGW_INTERNAL`, both
 * sockets destroyed, the client reset).
 */
export async function runTunnel(ctx: ConnectionContext, client: Duplex, upstream: Socket, plan: TunnelPlan) {
  const startedNs = plan.since?.ns ?? process.hrtime.bigint();
  const startedAt = plan.since?.at ?? new Date();
  const bytes = plan.bytes ?? upstreamCounters(upstream);
  let closed: { reason: string; code?: ErrorCode } = { reason: 'closed' };
  let untrack = () => {};
  try {
    auditAdmitted(ctx.auditBase, plan.verdict, { ...plan.facts, ...(plan.http ? { http: plan.http } : {}) });
    untrack = ctx.runtime.tunnels.add({
      connectionId: ctx.id,
      listener: ctx.listener.name,
      spiffeId: ctx.peer.spiffeId.uri,
      source: `${ctx.source.ip}:${ctx.source.port}`,
      destination: plan.target,
      ...(plan.facts.snat?.ip ? { snat: plan.facts.snat.ip } : {}),
      startedAt,
      bytes,
      recheck: tunnelRecheck(ctx, plan.verdict, upstream),
    });
    if (!client.destroyed) plan.start?.();
    ctx.runtime.faultProbe?.('tunnel-open', ctx);
    const result = await pipeSockets(client, upstream, { idleTimeoutMs: ctx.state.timeouts.idleMs });
    closed = closeReason(ctx, result.error);
  } catch (error) {
    closed = { reason: destroyAfterFault(ctx, client, upstream, error), code: 'EGW_INTERNAL' };
  } finally {
    untrack();
  }
  auditEgressClosed(ctx.auditBase, plan.facts, {
    ...closed,
    startedAt,
    startedNs,
    bytesFromClient: bytes.fromClient,
    bytesToClient: bytes.toClient,
  });
}
