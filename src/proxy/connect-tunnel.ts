import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { auditEgressRejected, snatOf } from '../core/audit-records.ts';
import { type PipeCounters, upstreamCounters } from '../pipe/pipe-sockets.ts';
import { dialFromSnatPool } from '../upstream/dial-snat-pool.ts';
import { dialViaParent, type ParentTunnel } from '../upstream/dial-via-parent.ts';
import type { ConnectionContext } from './connection-context.ts';
import { type DestinationVerdict, decideDestination, factsOf } from './decide-destination.ts';
import { dialFailure, type HttpAnswer, httpAnswer, limitRefusal, refuseOnSocket } from './http-refusal.ts';
import { auditUrl, parseRequestTarget } from './request-target.ts';
import { runTunnel } from './tunnel-lifecycle.ts';

interface Dialled {
  readonly socket: Socket;
  /** Set when the rule's parent proxy carries the tunnel (rules[].via). */
  readonly parent?: ParentTunnel;
}

/**
 * Dials exactly the checked IP from the chosen SNAT address, or, for a rule with `via`, the
 * parent proxy from that address with a CONNECT of its own; a failure comes back as its refusal.
 */
async function dialChecked(
  ctx: ConnectionContext,
  verdict: Extract<DestinationVerdict, { allow: true }>,
): Promise<Dialled | HttpAnswer> {
  const timeoutMs = ctx.state.timeouts.connectMs;
  const local = verdict.snat ? { localAddress: verdict.snat } : {};
  try {
    const via = verdict.rule?.via;
    if (!via) {
      const socket = await dialFromSnatPool({
        ip: verdict.ip,
        port: verdict.port,
        timeoutMs,
        listener: ctx.listener.name,
        ...local,
        ...(verdict.snatFallbacks ? { fallbacks: verdict.snatFallbacks } : {}),
      });
      return { socket };
    }
    const resolve = (host: string) => ctx.state.resolver.resolve(host, { key: ctx.peer.spiffeId.uri });
    const parent = await dialViaParent({ parent: via, target: verdict, timeoutMs, resolve, ...local });
    return { socket: parent.socket, parent };
  } catch (error) {
    return dialFailure(error);
  }
}

/** Tunnel byte counts without the gateway's own CONNECT exchange with a parent proxy. */
function tunnelCounters(upstream: Socket, parent: ParentTunnel | undefined): PipeCounters {
  const counters = upstreamCounters(upstream);
  const handshake = parent?.handshake ?? { written: 0, read: 0 };
  return {
    get fromClient() {
      return Math.max(0, counters.fromClient - handshake.written);
    },
    get toClient() {
      return Math.max(0, counters.toClient - handshake.read);
    },
  };
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
  const dialled = await dialChecked(ctx, verdict);
  if (!('socket' in dialled)) {
    auditEgressRejected(ctx.auditBase, { code: dialled.code, reason: dialled.reason }, factsOf(verdict));
    return refuseOnSocket(socket, dialled);
  }
  // runTunnel owns the upstream (a parent's tunnel too) from here: one egress-closed per admitted
  // record on every path, including a client that reset while the dial was in flight.
  const upstream = dialled.socket;
  await runTunnel(ctx, socket, upstream, {
    verdict,
    facts: { ...factsOf(verdict, dialled.parent?.parentIp), snat: snatOf(verdict.snat, upstream) },
    http: { method: 'CONNECT', url: req.url ?? '' },
    target: `${verdict.host}:${verdict.port}`,
    bytes: tunnelCounters(upstream, dialled.parent),
    start: () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
    },
  });
}
