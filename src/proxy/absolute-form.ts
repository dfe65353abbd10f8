import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type AuditBase,
  auditEgressClosed,
  auditEgressRejected,
  type EgressFacts,
  snatOf,
} from '../core/audit-records.ts';
import { GatewayError } from '../core/errors.ts';
import { authorityOf, parentAddress } from '../upstream/dial-via-parent.ts';
import type { ForwardRequest, ForwardResponse, HttpForwarder } from '../upstream/http-forwarder.ts';
import type { ConnectionContext } from './connection-context.ts';
import { auditAdmitted, type DestinationVerdict, decideDestination, factsOf } from './decide-destination.ts';
import { dialFailure, type HttpAnswer, httpAnswer, limitRefusal, refuseOnResponse } from './http-refusal.ts';
import { closeReason } from './redecide-tunnels.ts';
import { auditUrl, parseRequestTarget } from './request-target.ts';

/** RFC 7230 §6.1 hop-by-hop headers, plus the proxy-only ones, never forwarded either way. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export function stripHopByHop(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    out[lower] = value;
  }
  return out;
}

function refuse(res: ServerResponse, base: AuditBase, answer: HttpAnswer, facts: EgressFacts): void {
  auditEgressRejected(base, answer, facts);
  refuseOnResponse(res, answer);
}

/** Counts the request body on its way to undici; a 'data' listener on `req` itself would switch
 * it to flowing mode and lose the body before undici reads it. */
function countingBody(req: IncomingMessage): { body?: Transform; bytes: () => number } {
  let bytes = 0;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  if (!hasBody) return { bytes: () => bytes };
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  return { body: req.pipe(counter), bytes: () => bytes };
}

/** Relays the origin's response and reports how it ended. */
async function relayResponse(
  response: ForwardResponse,
  res: ServerResponse,
): Promise<{ error?: string; bytes: number }> {
  let bytes = 0;
  response.body.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  try {
    // Inside the try: node:http can still refuse headers an upstream sent.
    res.writeHead(response.statusCode, stripHopByHop(response.headers));
    await pipeline(response.body, res);
    return { bytes };
  } catch (cause) {
    // Neither side may be left half-open: the upstream body holds an undici socket.
    response.body.destroy();
    res.destroy();
    return { error: `response relay failed: ${(cause as Error).message}`, bytes };
  }
}

/** For a rule with `via`: the parent's address and the destination's authority, else undefined. */
async function parentOf(
  ctx: ConnectionContext,
  verdict: Extract<DestinationVerdict, { allow: true }>,
): Promise<NonNullable<ForwardRequest['viaParent']> | undefined | GatewayError> {
  const via = verdict.rule?.via;
  if (!via) return undefined;
  try {
    const ip = await parentAddress(via, (host) => ctx.state.resolver.resolve(host, { key: ctx.peer.spiffeId.uri }));
    return { ip, port: via.port, authority: authorityOf(verdict) };
  } catch (error) {
    return error as GatewayError;
  }
}

/**
 * Absolute-form `http://` requests: decide per request (on the state `ctx` carries, the current
 * one: see connect-mode.ts), forward with undici to exactly the checked IP from the chosen SNAT
 * address over a pool of this identity's own, relay the response.
 */
export async function handleAbsoluteForm(
  ctx: ConnectionContext,
  req: IncomingMessage,
  res: ServerResponse,
  forwarder: HttpForwarder,
): Promise<void> {
  const method = req.method ?? 'GET';
  const limited = limitRefusal(ctx);
  if (limited) return refuse(res, ctx.auditBase, limited, { http: { method, url: auditUrl(req.url) } });
  const target = parseRequestTarget(method, req.url);
  if (target.form !== 'absolute') {
    const reason = target.form === 'invalid' ? target.reason : 'CONNECT is not a request';
    const answer = httpAnswer('EGW_PROXY_BAD_REQUEST', reason);
    return refuse(res, ctx.auditBase, answer, { http: { method, url: auditUrl(req.url) } });
  }
  const http = { method, url: auditUrl(target.url) };
  const verdict = await decideDestination(ctx.state, ctx.listener, ctx.peer.spiffeId, target);
  if (!verdict.allow)
    return refuse(res, ctx.auditBase, httpAnswer(verdict.code, verdict.reason), { ...factsOf(verdict), http });
  const parent = await parentOf(ctx, verdict);
  if (parent instanceof GatewayError)
    return refuse(res, ctx.auditBase, dialFailure(parent), { ...factsOf(verdict), http });
  const startedNs = process.hrtime.bigint();
  const startedAt = new Date();
  const requestBody = countingBody(req);
  let response: ForwardResponse;
  try {
    response = await forwarder.forward({
      // Pooled upstream connections are never shared across identities (nor SNAT addresses).
      identity: ctx.peer.spiffeId.uri,
      connectTimeoutMs: ctx.state.timeouts.connectMs,
      ip: verdict.ip,
      port: verdict.port,
      hostHeader: target.hostHeader,
      method,
      path: target.path,
      headers: stripHopByHop(req.headers),
      ...(requestBody.body ? { body: requestBody.body } : {}),
      ...(verdict.snat ? { localAddress: verdict.snat } : {}),
      ...(parent ? { viaParent: parent } : {}),
    });
  } catch (error) {
    return refuse(res, ctx.auditBase, dialFailure(error), { ...factsOf(verdict, parent?.ip), http });
  }
  const facts: EgressFacts = { ...factsOf(verdict, parent?.ip), snat: snatOf(verdict.snat, response), http };
  auditAdmitted(ctx.auditBase, verdict, facts, response.statusCode);
  const relayed = await relayResponse(response, res);
  auditEgressClosed(ctx.auditBase, facts, {
    ...closeReason(ctx, relayed.error),
    startedAt,
    startedNs,
    bytesFromClient: requestBody.bytes(),
    bytesToClient: relayed.bytes,
    statusCode: response.statusCode,
  });
}
