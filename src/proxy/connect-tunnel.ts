import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  auditEgressClosed,
  auditEgressPermitted,
  auditEgressRejected,
  type EgressFacts,
  snatOf,
} from '../core/audit-records.ts';
import { pipeSockets, upstreamCounters } from '../pipe/pipe-sockets.ts';
import { dialUpstream } from '../upstream/dial-upstream.ts';
import type { ConnectionContext } from './connection-context.ts';
import { type DestinationVerdict, decideDestination, factsOf } from './decide-destination.ts';
import { dialFailure, type HttpAnswer, httpAnswer, limitRefusal, refuseOnSocket } from './http-refusal.ts';
import { auditUrl, parseRequestTarget } from './request-target.ts';

/** Dials exactly the checked IP from the chosen SNAT address; a failure comes back as its refusal. */
async function dialChecked(
  ctx: ConnectionContext,
  verdict: Extract<DestinationVerdict, { allow: true }>,
): Promise<Socket | HttpAnswer> {
  try {
    return await dialUpstream({
      ip: verdict.ip,
      port: verdict.port,
      timeoutMs: ctx.state.timeouts.connectMs,
      ...(verdict.snat ? { localAddress: verdict.snat } : {}),
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
  auditEgressPermitted(ctx.auditBase, verdict.reason, { ...facts, http: { method: 'CONNECT', url: req.url ?? '' } });
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) upstream.write(head);
  const startedNs = process.hrtime.bigint();
  const startedAt = new Date();
  const ending = new AbortController();
  const untrack = ctx.runtime.tunnels.add({
    connectionId: ctx.id,
    listener: ctx.listener.name,
    spiffeId: ctx.peer.spiffeId.uri,
    destination: `${verdict.host}:${verdict.port}`,
    ...(facts.snat?.ip ? { snat: facts.snat.ip } : {}),
    startedAt,
    bytes: upstreamCounters(upstream),
    peer: ctx.peer,
    close: (reason) => ending.abort(reason),
  });
  const result = await pipeSockets(socket, upstream, {
    idleTimeoutMs: ctx.state.timeouts.idleMs,
    signal: ending.signal,
  });
  untrack();
  auditEgressClosed(ctx.auditBase, facts, {
    reason: result.error ?? 'closed',
    startedAt,
    startedNs,
    bytesFromClient: result.bytesFromClient,
    bytesToClient: result.bytesToClient,
  });
}
