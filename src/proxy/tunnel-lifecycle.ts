import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type AuditRecord, publishAudit } from '../core/audit-event.ts';
import type { ErrorCode } from '../core/errors.ts';
import { type PipeResult, pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import type { ConnectionContext } from './connection-context.ts';

/** Points where a test-only fault probe (ProxyRuntime.faultProbe) may throw into a connection. */
export type FaultPoint = 'identified' | 'tunnel-open';

/** The audit fields an egress-permitted record and its egress-closed record share. */
export interface TunnelAudit {
  readonly reason: string;
  readonly destination: NonNullable<AuditRecord['destination']>;
  readonly rule?: { readonly name: string };
  /** On the egress-permitted record only (CONNECT's request line). */
  readonly http?: NonNullable<AuditRecord['http']>;
  /** The SNAT address asked for; the record carries the bound one when the socket knows it. */
  readonly snat?: string;
  /** What /connections shows as the destination. */
  readonly target: string;
  /** When the close record's `start` and duration count from (default: now, the permit). */
  readonly since?: { readonly at: Date; readonly ns: bigint };
}

/** Sends a TCP RST, like an F5 iRule `reject`. Must be called on the raw socket: TLSSocket throws. */
export function resetConnection(raw: Socket): void {
  if (raw.destroyed) return;
  try {
    raw.resetAndDestroy();
  } catch {
    raw.destroy();
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Closes one connection after an unexpected error: audited as `EGW_INTERNAL`, client reset. */
export function failConnection(ctx: Pick<ConnectionContext, 'raw' | 'auditBase'>, error: unknown): void {
  try {
    publishAudit({
      ...ctx.auditBase,
      action: 'egress-rejected',
      reason: `internal error: ${describe(error)}`,
      code: 'EGW_INTERNAL',
    });
  } finally {
    resetConnection(ctx.raw);
  }
}

/**
 * The per-connection error boundary. Handlers run as fire-and-forget promises; a throw or a
 * rejection that escapes one must close that connection only, never the process: it is audited
 * as `EGW_INTERNAL` (counted by egw_internal_errors_total) and the client gets a reset.
 */
export function guardConnection(ctx: Pick<ConnectionContext, 'raw' | 'auditBase'>, task: () => unknown): void {
  try {
    Promise.resolve(task()).catch((error: unknown) => failConnection(ctx, error));
  } catch (error) {
    failConnection(ctx, error);
  }
}

function snatOf(upstream: Socket, asked: string | undefined): NonNullable<AuditRecord['snat']> {
  return { ip: upstream.localAddress ?? asked ?? '', ...(upstream.localPort ? { port: upstream.localPort } : {}) };
}

function destroyAfterInternalError(ctx: ConnectionContext, client: Duplex, upstream: Socket, error: unknown) {
  client.destroy();
  upstream.destroy();
  resetConnection(ctx.raw);
  const counters = upstreamCounters(upstream);
  return {
    bytesFromClient: counters.fromClient,
    bytesToClient: counters.toClient,
    error: `internal error: ${describe(error)}`,
  };
}

/**
 * Owns a dialled upstream from the moment it connects: publishes egress-permitted, lists the
 * tunnel, relays, and always publishes exactly one egress-closed and unlists it, whether the
 * client left during the dial, a side reset, or the code threw (`EGW_INTERNAL`, both sockets
 * destroyed). `start` runs after the permit (e.g. CONNECT's 200 line) and before the relay.
 */
export async function runTunnel(
  ctx: ConnectionContext,
  client: Duplex,
  upstream: Socket,
  audit: TunnelAudit,
  start?: () => void,
): Promise<void> {
  const snat = snatOf(upstream, audit.snat);
  const shared = {
    ...ctx.auditBase,
    destination: audit.destination,
    ...(audit.rule ? { rule: audit.rule } : {}),
    snat,
  };
  const startedNs = audit.since?.ns ?? process.hrtime.bigint();
  const started = audit.since?.at ?? new Date();
  let result: PipeResult = { bytesFromClient: 0, bytesToClient: 0 };
  let code: ErrorCode | undefined;
  let untrack = () => {};
  try {
    publishAudit({
      ...shared,
      action: 'egress-permitted',
      reason: audit.reason,
      ...(audit.http ? { http: audit.http } : {}),
    });
    untrack = ctx.runtime.tunnels.add({
      connectionId: ctx.id,
      listener: ctx.listener.name,
      spiffeId: ctx.peer.spiffeId.uri,
      destination: audit.target,
      ...(snat.ip ? { snat: snat.ip } : {}),
      startedAt: started,
      bytes: upstreamCounters(upstream),
    });
    if (!client.destroyed) start?.();
    ctx.runtime.faultProbe?.('tunnel-open', ctx);
    result = await pipeSockets(client, upstream, { idleTimeoutMs: ctx.state.timeouts.idleMs });
  } catch (error) {
    code = 'EGW_INTERNAL';
    result = destroyAfterInternalError(ctx, client, upstream, error);
  } finally {
    untrack();
  }
  publishAudit({
    ...shared,
    action: 'egress-closed',
    reason: result.error ?? 'closed',
    ...(code ? { code } : {}),
    start: started.toISOString(),
    end: new Date().toISOString(),
    durationNs: Number(process.hrtime.bigint() - startedNs),
    bytesFromClient: result.bytesFromClient,
    bytesToClient: result.bytesToClient,
  });
}
