import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { auditEgressRejected, snatOf } from '../core/audit-records.ts';
import { dialUpstream } from '../upstream/dial-upstream.ts';
import type { ConnectionContext } from './connection-context.ts';
import { type DestinationVerdict, decideDestination, factsOf } from './decide-destination.ts';
import { dialFailure, type HttpAnswer, httpAnswer, limitRefusal, refuseOnSocket } from './http-refusal.ts';
import { auditUrl, parseRequestTarget } from './request-target.ts';
import { runTunnel } from './tunnel-lifecycle.ts';

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
 * relay bytes until both sides have closed. Every outcome is audited once.
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
  // runTunnel owns the upstream from here: one egress-closed per egress-permitted on every path,
  // including a client that reset while the dial was in flight.
  await runTunnel(ctx, socket, upstream, {
    reason: verdict.reason,
    facts: { ...factsOf(verdict), snat: snatOf(verdict.snat, upstream) },
    http: { method: 'CONNECT', url: req.url ?? '' },
    target: `${verdict.host}:${verdict.port}`,
    start: () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
    },
  });
}
