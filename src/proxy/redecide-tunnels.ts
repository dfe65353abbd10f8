import type { Socket } from 'node:net';
import type { ErrorCode, GatewayError } from '../core/errors.ts';
import type { ConnectionContext } from './connection-context.ts';
import { type ClosedBecause, type TrustMemo, trustOf } from './connection-trust.ts';
import { decideDialled } from './decide-destination.ts';
import type { GatewayState } from './gateway-state.ts';
import type { LiveConnections } from './live-connections.ts';
import type { LiveTunnels, TunnelRecheck } from './live-tunnels.ts';

/** The close reason of everything a reload ends; the record's `code` says which check refused. */
export const RELOAD_DENIED = 'reload-denied';
/** The close reason of everything ended when its client certificate chain expired. */
export const IDENTITY_EXPIRED = 'identity-expired';

export interface RedecideOptions {
  /** false (`reload.redecideTunnels: false`): rule changes spare open tunnels; identity is still checked. */
  readonly rules: boolean;
}

/**
 * Re-decides every open tunnel and connection against a new state (called on every snapshot
 * swap): an identity the state no longer trusts (anchor removed, expired) ends its tunnels and
 * its kept-alive connections; a tunnel the rules now refuse is closed. Identity is verified once
 * per distinct chain. Returns how many were closed.
 */
export function redecideOpen(
  open: { readonly tunnels: LiveTunnels; readonly connections?: LiveConnections },
  state: GatewayState,
  options: RedecideOptions,
  now: Date = new Date(),
): number {
  const memo: TrustMemo = new Map();
  let closed = 0;
  for (const { recheck } of open.tunnels.list()) {
    const because = recheck && refusalOf(recheck, state, options, now, memo);
    if (!recheck || !because) continue;
    recheck.close(because);
    closed += 1;
  }
  for (const trust of open.connections?.list() ?? []) {
    if (trust.closedBecause) continue; // its tunnel was closed above, with its own record
    const problem = trust.check(state, now, memo);
    if (!problem) continue;
    trust.endAudited(endedBecause(problem));
    closed += 1;
  }
  return closed;
}

function reloadDenied(reason: string, code: ErrorCode): ClosedBecause {
  return { reason: `${RELOAD_DENIED}: ${reason}`, code };
}

/** An identity that stopped being trusted: expired by time, or refused by the current state. */
function endedBecause(problem: GatewayError): ClosedBecause {
  if (problem.code === 'EGW_IDENTITY_EXPIRED')
    return { reason: `${IDENTITY_EXPIRED}: ${problem.message}`, code: problem.code };
  return reloadDenied(`identity no longer trusted: ${problem.message}`, problem.code);
}

function refusalOf(
  recheck: TunnelRecheck,
  state: GatewayState,
  options: RedecideOptions,
  now: Date,
  memo: TrustMemo,
): ClosedBecause | undefined {
  const problem = recheck.trust.check(state, now, memo);
  if (problem) return endedBecause(problem);
  if (!options.rules) return undefined;
  const listener = state.listeners.get(recheck.listener);
  if (!listener) return reloadDenied(`listener ${recheck.listener} is gone`, 'EGW_POLICY_DENIED');
  const verdict = decideDialled(state, listener, recheck.identity, recheck.destination);
  return verdict.allow ? undefined : reloadDenied(verdict.reason, verdict.code);
}

/** What a tunnel of `ctx` to `dialled` registers so that it can be re-decided and closed. */
export function tunnelRecheck(
  ctx: ConnectionContext,
  dialled: { readonly host: string; readonly port: number; readonly ip: string },
  upstream: Socket,
): TunnelRecheck {
  const trust = trustOf(ctx);
  return {
    trust,
    identity: ctx.peer.spiffeId,
    listener: ctx.listener.name,
    destination: { host: dialled.host, port: dialled.port, ip: dialled.ip },
    close: (because) => {
      trust.end(because);
      upstream.destroy();
    },
  };
}

/** The reason (and code) of a tunnel's `egress-closed` record: the gateway's, else the pipe's. */
export function closeReason(
  ctx: ConnectionContext,
  pipeError: string | undefined,
): { reason: string; code?: ErrorCode } {
  const because = trustOf(ctx).closedBecause;
  return because ? { reason: because.reason, code: because.code } : { reason: pipeError ?? 'closed' };
}

// setTimeout holds at most 2^31-1 ms (~24.8 days); a later expiry is reached in steps.
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Ends the connection (and a tunnel on it) when its client certificate chain expires: a timer per
 * connection, unref'd, cleared when the connection closes.
 */
export function closeAtExpiry(ctx: ConnectionContext): void {
  const trust = trustOf(ctx);
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    const problem = trust.expired();
    if (!problem) return arm();
    const because = endedBecause(problem);
    const tunnels = ctx.runtime.tunnels.list().filter((t) => t.connectionId === ctx.id && t.recheck);
    for (const tunnel of tunnels) tunnel.recheck?.close(because);
    // A tunnel's egress-closed record tells; a kept-alive connection without one is audited here.
    if (tunnels.length === 0) trust.endAudited(because);
  };
  const arm = () => {
    timer = setTimeout(fire, Math.min(Math.max(trust.expiresAtMs - Date.now() + 1, 1), MAX_TIMER_MS));
    timer.unref();
  };
  ctx.tls.once('close', () => clearTimeout(timer));
  arm();
}

/**
 * The context a request on a kept-alive connection runs with: the current state and listener
 * settings. When the current state no longer trusts the identity, the refusal is audited as
 * `identity-rejected`, the connection is ended, and undefined is returned.
 */
export function currentContext(ctx: ConnectionContext, state: GatewayState): ConnectionContext | undefined {
  const trust = trustOf(ctx);
  const problem = trust.check(state);
  if (problem) {
    trust.endAudited(endedBecause(problem));
    return undefined;
  }
  if (state === ctx.state) return ctx;
  return { ...ctx, state, listener: state.listeners.get(ctx.listener.name) ?? ctx.listener };
}
