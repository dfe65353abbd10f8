import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { auditEgressClosed, auditEgressRejected, type EgressFacts, snatOf } from '../core/audit-records.ts';
import { pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import { dialFromSnatPool } from '../upstream/dial-snat-pool.ts';
import type { ConnectionContext } from './connection-context.ts';
import { auditAdmitted, type DestinationVerdict, decideDestination, factsOf } from './decide-destination.ts';
import { dialFailure, type HttpAnswer, httpAnswer, limitRefusal, refuseOnSocket } from './http-refusal.ts';
import { closeReason, tunnelRecheck } from './redecide-tunnels.ts';
import { auditUrl, parseRequestTarget } from './request-target.ts';

/** Dials exactly the checked IP from the chosen SNAT address; a failure comes back as its refusal. */
async function dialChecked(
  ctx: ConnectionContext,
  verdict: Extract<DestinationVerdict, { allow: true }>,
): Promise<Socket | HttpAnswer> {
  try {
    return await dialFromSnatPool({
      ip: verdict.ip,
      port: verdict.port,
      timeoutMs: ctx.state.timeouts.connectMs,
      listener: ctx.listener.name,
      ...(verdict.snat ? { localAddress: verdict.snat } : {}),
      ...(verdict.snatFallbacks ? { fallbacks: verdict.snatFallbacks } : {}),
    });
  } catch (error) {
    return dialFailure(error);
  }
}

/**
 * CONNECT: decide, dial exactly the checked IP from the chosen SNAT address, answer 200 and
 * relay bytes until either side ends. Every outcome is audited once.
 */
export async function handleConnect(
  ctx: ConnectionContext,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const limited = limitRefusal(ctx);
  if (limited) {
    auditEgressRejected(ctx.auditBase, limited, { http: { method: 'CONNECT', url: auditUrl(req.url) } });
    return refuseOnSocket(socket, limited);
  }
  const target = parseRequestTarget('CONNECT', req.url);
  if (target.form !== 'authority') {
    const answer = httpAnswer('EGW_PROXY_BAD_REQUEST', target.form === 'invalid' ? target.reason : 'bad target');
    auditEgressRejected(ctx.auditBase, { code: answer.code, reason: answer.reason });
    return refuseOnSocket(socket, answer);
  }
  const verdict = await decideDestination(ctx.state, ctx.listener, ctx.peer.spiffeId, target);
  if (!verdict.allow) {
    const answer = httpAnswer(verdict.code, verdict.reason);
    auditEgressRejected(ctx.auditBase, { code: answer.code, reason: answer.reason }, factsOf(verdict));
    return refuseOnSocket(socket, answer);
  }
  const upstream = await dialChecked(ctx, verdict);
  if (!(upstream instanceof Socket)) {
    auditEgressRejected(ctx.auditBase, { code: upstream.code, reason: upstream.reason }, factsOf(verdict));
    return refuseOnSocket(socket, upstream);
  }
  const facts: EgressFacts = { ...factsOf(verdict), snat: snatOf(verdict.snat, upstream) };
  auditAdmitted(ctx.auditBase, verdict, { ...facts, http: { method: 'CONNECT', url: req.url ?? '' } });
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) upstream.write(head);
  const startedNs = process.hrtime.bigint();
  const startedAt = new Date();
  const untrack = ctx.runtime.tunnels.add({
    connectionId: ctx.id,
    listener: ctx.listener.name,
    spiffeId: ctx.peer.spiffeId.uri,
    source: `${ctx.source.ip}:${ctx.source.port}`,
    destination: `${verdict.host}:${verdict.port}`,
    ...(facts.snat?.ip ? { snat: facts.snat.ip } : {}),
    startedAt,
    bytes: upstreamCounters(upstream),
    recheck: tunnelRecheck(ctx, verdict, upstream),
  });
  const result = await pipeSockets(socket, upstream, { idleTimeoutMs: ctx.state.timeouts.idleMs });
  untrack();
  auditEgressClosed(ctx.auditBase, facts, {
    ...closeReason(ctx, result.error),
    startedAt,
    startedNs,
    bytesFromClient: result.bytesFromClient,
    bytesToClient: result.bytesToClient,
  });
}
