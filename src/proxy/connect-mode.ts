import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import { type Duplex, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { publishAudit } from '../core/audit-event.ts';
import type { ErrorCode } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import { dialUpstream } from '../upstream/dial-upstream.ts';
import type { HttpForwarder } from '../upstream/http-forwarder.ts';
import {
  type Authorization,
  authorizeDestination,
  type ProxyStatusError,
  proxyStatusHeader,
  refusalForUpstreamError,
} from './authorize-destination.ts';
import type { ConnectionContext } from './connection-context.ts';
import { elapsedNs, type ModeHandler } from './handle-connection.ts';
import { guardConnection, runTunnel } from './tunnel-lifecycle.ts';

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

/**
 * A request target as audit records show it: no credentials (`user:pass@`), at most 2048
 * characters, because records are queued for SIEMs and must not carry secrets or grow unbounded.
 */
function auditUrl(target: URL | string | undefined): string {
  const text = typeof target === 'string' || target === undefined ? (target ?? '') : target.href;
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i, '$1').slice(0, 2048);
}

/**
 * Parses CONNECT's authority-form target (`host:port` or `[v6]:port`) into the canonical host
 * that policy, resolver and audit all use; undefined when the host could be read two ways.
 */
export function parseAuthority(target: string | undefined): { host: string; port: number } | undefined {
  if (!target) return undefined;
  const match = /^(\[[^\]]+\]|[^\s:/?#[\]@]+):(\d{1,5})$/.exec(target);
  if (!match) return undefined;
  const host = canonicalHost(match[1] as string);
  const port = Number(match[2]);
  if (!host || port < 1 || port > 65535) return undefined;
  return { host, port };
}

function refusalBody(status: number, reason: string): string {
  return `${status} ${STATUS_CODES[status] ?? ''}: ${reason}\n`;
}

/** Writes a refusal on a socket that node:http has handed over (after CONNECT). */
function refuseOnSocket(
  socket: Duplex,
  status: number,
  proxyStatus: ProxyStatusError,
  reason: string,
  retryAfterSeconds?: number,
): void {
  const body = refusalBody(status, reason);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Proxy-Status: ${proxyStatusHeader(proxyStatus, reason)}\r\n` +
      (retryAfterSeconds === undefined ? '' : `Retry-After: ${retryAfterSeconds}\r\n`) +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

function refuseOnResponse(
  res: ServerResponse,
  status: number,
  proxyStatus: ProxyStatusError,
  reason: string,
  retryAfterSeconds?: number,
): void {
  const body = refusalBody(status, reason);
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, {
    ...(retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds), connection: 'close' }),
    'proxy-status': proxyStatusHeader(proxyStatus, reason),
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

type Refusal = Extract<Authorization, { allow: false }> & { retryAfterSeconds: number };

/** Draining and per-identity limits refuse before any DNS or policy work. */
function limitRefusal(ctx: ConnectionContext): Refusal | undefined {
  if (ctx.runtime.isDraining()) {
    return {
      allow: false,
      status: 503,
      proxyStatus: 'connection_limit_reached',
      code: 'EGW_DRAINING',
      reason: 'the gateway is shutting down',
      retryAfterSeconds: 1,
    };
  }
  if (!ctx.limit.ok) {
    return {
      allow: false,
      status: 429,
      proxyStatus: 'connection_limit_reached',
      code: ctx.limit.code,
      reason: ctx.limit.reason,
      retryAfterSeconds: ctx.limit.retryAfterSeconds,
    };
  }
  return undefined;
}

function auditRefusal(
  ctx: ConnectionContext,
  refusal: Extract<Authorization, { allow: false }>,
  destination: { domain?: string; ip?: string; port?: number },
  http?: { method: string; url?: string },
) {
  publishAudit({
    ...ctx.auditBase,
    action: 'egress-rejected',
    reason: refusal.reason,
    code: refusal.code,
    destination,
    ...(refusal.decision?.rule ? { rule: { name: refusal.decision.rule.name } } : {}),
    ...(http ? { http: { ...http, statusCode: refusal.status } } : {}),
  });
}

/**
 * connect mode: an HTTPS forward proxy. node:http parses each authenticated TLS socket (without
 * listening itself), so header limits and keep-alive are node's; the gateway answers CONNECT
 * with a tunnel and absolute-form `http://` requests by forwarding them with undici.
 */
export function createConnectModeHandler(options: { forwarder: HttpForwarder }): ModeHandler {
  const contexts = new WeakMap<Duplex, ConnectionContext>();
  const headTimers = new WeakMap<Duplex, NodeJS.Timeout>();

  // Slowloris guard: a request head must be complete within timeouts.requestHead of the
  // connection's start, and of the end of the previous response on a kept-alive connection. A
  // wall clock, not an idle timer, so a client dripping one byte at a time cannot hold it open.
  // node:http runs its own header timers only on servers that listen; these are fed sockets.
  const armHeadTimer = (ctx: ConnectionContext) => {
    clearTimeout(headTimers.get(ctx.tls));
    const limitMs = ctx.state.timeouts.requestHeadMs;
    const timer = setTimeout(() => {
      publishAudit({
        ...ctx.auditBase,
        action: 'egress-rejected',
        reason: `no complete request head within ${limitMs} ms`,
        code: 'EGW_PROXY_BAD_REQUEST',
      });
      ctx.tls.destroy();
    }, limitMs);
    timer.unref();
    headTimers.set(ctx.tls, timer);
  };
  const headArrived = (socket: Duplex) => {
    clearTimeout(headTimers.get(socket));
    headTimers.delete(socket);
  };

  // One parser configuration per header limit, so a reload that changes limits.maxHeaderBytes
  // applies to new connections.
  const servers = new Map<number, Server>();
  const serverFor = (maxHeaderBytes: number): Server => {
    let server = servers.get(maxHeaderBytes);
    if (server) return server;
    server = createServer({ maxHeaderSize: maxHeaderBytes, requireHostHeader: false, keepAliveTimeout: 5_000 });
    server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const ctx = contexts.get(socket);
      if (!ctx) return void socket.destroy();
      headArrived(socket);
      guardConnection(ctx, () => handleConnect(ctx, req, socket, head));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const ctx = contexts.get(req.socket);
      if (!ctx) return void res.destroy();
      headArrived(req.socket);
      res.once('finish', () => {
        if (!req.socket.destroyed) armHeadTimer(ctx);
      });
      guardConnection(ctx, () => handleAbsoluteForm(ctx, req, res, options.forwarder));
    });
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
      const ctx = contexts.get(socket);
      if (ctx && error.code !== 'ECONNRESET') {
        publishAudit({
          ...ctx.auditBase,
          action: 'egress-rejected',
          reason: `malformed proxy request: ${error.code ?? error.message}`,
          code: 'EGW_PROXY_BAD_REQUEST',
        });
      }
      if (socket.writable) {
        const status =
          error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
        refuseOnSocket(
          socket,
          status,
          'http_request_error',
          `malformed proxy request (${error.code ?? 'parse error'})`,
        );
      }
      socket.destroy();
    });
    servers.set(maxHeaderBytes, server);
    return server;
  };

  return (ctx) => {
    contexts.set(ctx.tls, ctx);
    ctx.tls.once('close', () => headArrived(ctx.tls));
    armHeadTimer(ctx);
    serverFor(ctx.state.maxHeaderBytes).emit('connection', ctx.tls);
  };
}

async function handleConnect(
  ctx: ConnectionContext,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const limited = limitRefusal(ctx);
  if (limited) {
    auditRefusal(ctx, limited, {}, { method: 'CONNECT', url: auditUrl(req.url) });
    return refuseOnSocket(socket, limited.status, limited.proxyStatus, limited.reason, limited.retryAfterSeconds);
  }
  const target = parseAuthority(req.url);
  if (!target) {
    const reason = `CONNECT target must be host:port, got ${JSON.stringify(req.url?.slice(0, 100))}`;
    auditRefusal(
      ctx,
      { allow: false, status: 400, proxyStatus: 'http_request_error', code: 'EGW_PROXY_BAD_REQUEST', reason },
      {},
    );
    return refuseOnSocket(socket, 400, 'http_request_error', reason);
  }
  const destination = { domain: target.host, port: target.port };
  const auth = await authorizeDestination(ctx.state, ctx.listener, ctx.peer.spiffeId, target.host, target.port);
  if (!auth.allow) {
    auditRefusal(ctx, auth, { ...destination, ...(auth.ip ? { ip: auth.ip } : {}) });
    return refuseOnSocket(socket, auth.status, auth.proxyStatus, auth.reason);
  }
  const rule = auth.decision.rule ? { rule: { name: auth.decision.rule.name } } : {};
  const dest = { ...destination, ip: auth.ip };
  let upstream: Awaited<ReturnType<typeof dialUpstream>>;
  try {
    upstream = await dialUpstream({
      ip: auth.ip,
      port: target.port,
      timeoutMs: ctx.state.timeouts.connectMs,
      ...(auth.snat ? { localAddress: auth.snat } : {}),
    });
  } catch (error) {
    const refusal = refusalForUpstreamError(error);
    publishAudit({
      ...ctx.auditBase,
      action: 'egress-rejected',
      reason: refusal.reason,
      code: refusal.code,
      destination: dest,
      ...rule,
    });
    return refuseOnSocket(socket, refusal.status, refusal.proxyStatus, refusal.reason);
  }
  // runTunnel owns the upstream from here: one egress-closed per egress-permitted on every path.
  await runTunnel(
    ctx,
    socket,
    upstream,
    {
      reason: auth.decision.reason,
      destination: dest,
      ...rule,
      ...(auth.snat ? { snat: auth.snat } : {}),
      http: { method: 'CONNECT', url: req.url ?? '' },
      target: `${target.host}:${target.port}`,
    },
    () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
    },
  );
}

async function handleAbsoluteForm(
  ctx: ConnectionContext,
  req: IncomingMessage,
  res: ServerResponse,
  forwarder: HttpForwarder,
): Promise<void> {
  const method = req.method ?? 'GET';
  let url: URL | undefined;
  try {
    url = req.url && /^[a-z][a-z0-9+.-]*:\/\//i.test(req.url) ? new URL(req.url) : undefined;
  } catch {
    url = undefined;
  }
  const refuseBadRequest = (reason: string, code: ErrorCode = 'EGW_PROXY_BAD_REQUEST') => {
    auditRefusal(
      ctx,
      { allow: false, status: 400, proxyStatus: 'http_request_error', code, reason },
      {},
      { method, url: auditUrl(req.url) },
    );
    refuseOnResponse(res, 400, 'http_request_error', reason);
  };
  const limited = limitRefusal(ctx);
  if (limited) {
    auditRefusal(ctx, limited, {}, { method, url: auditUrl(req.url) });
    return refuseOnResponse(res, limited.status, limited.proxyStatus, limited.reason, limited.retryAfterSeconds);
  }
  if (!url)
    return refuseBadRequest('this is a forward proxy: send CONNECT host:port or an absolute-form http:// request');
  if (url.protocol !== 'http:')
    return refuseBadRequest(`absolute-form ${url.protocol}// is not supported; use CONNECT for TLS destinations`);
  const host = canonicalHost(url.hostname);
  if (!host) return refuseBadRequest(`host ${JSON.stringify(url.hostname)} is not a valid host name or IP address`);
  const port = url.port ? Number(url.port) : 80;
  const destination = { domain: host, port };
  const http = { method, url: auditUrl(url) };
  const auth = await authorizeDestination(ctx.state, ctx.listener, ctx.peer.spiffeId, host, port);
  if (!auth.allow) {
    auditRefusal(ctx, auth, { ...destination, ...(auth.ip ? { ip: auth.ip } : {}) }, http);
    return refuseOnResponse(res, auth.status, auth.proxyStatus, auth.reason);
  }
  const rule = auth.decision.rule ? { rule: { name: auth.decision.rule.name } } : {};
  const dest = { ...destination, ip: auth.ip };
  const startedNs = process.hrtime.bigint();
  const started = new Date();
  let bytesFromClient = 0;
  // Count the request body on its way to undici; a 'data' listener on `req` itself would switch
  // it to flowing mode and lose the body before undici reads it.
  const countedBody = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytesFromClient += chunk.length;
      done(null, chunk);
    },
  });
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  let response: Awaited<ReturnType<HttpForwarder['forward']>>;
  try {
    response = await forwarder.forward({
      connectTimeoutMs: ctx.state.timeouts.connectMs,
      ip: auth.ip,
      port,
      hostHeader: url.host,
      method,
      path: `${url.pathname}${url.search}`,
      headers: stripHopByHop(req.headers),
      ...(hasBody ? { body: req.pipe(countedBody) } : {}),
      ...(auth.snat ? { localAddress: auth.snat } : {}),
    });
  } catch (error) {
    const refusal = refusalForUpstreamError(error);
    publishAudit({
      ...ctx.auditBase,
      action: 'egress-rejected',
      reason: refusal.reason,
      code: refusal.code,
      destination: dest,
      ...rule,
      http: { ...http, statusCode: refusal.status },
    });
    return refuseOnResponse(res, refusal.status, refusal.proxyStatus, refusal.reason);
  }
  const snat = {
    snat: { ip: response.localAddress ?? auth.snat ?? '', ...(response.localPort ? { port: response.localPort } : {}) },
  };
  publishAudit({
    ...ctx.auditBase,
    action: 'egress-permitted',
    reason: auth.decision.reason,
    destination: dest,
    ...rule,
    ...snat,
    http: { ...http, statusCode: response.statusCode },
  });
  let bytesToClient = 0;
  response.body.on('data', (chunk: Buffer) => {
    bytesToClient += chunk.length;
  });
  let error: string | undefined;
  try {
    // Inside the try: headers an upstream sent can still be refused by node:http here.
    res.writeHead(response.statusCode, stripHopByHop(response.headers));
    await pipeline(response.body, res);
  } catch (cause) {
    error = `response relay failed: ${(cause as Error).message}`;
    response.body.destroy();
    res.destroy();
  }
  publishAudit({
    ...ctx.auditBase,
    action: 'egress-closed',
    reason: error ?? 'closed',
    destination: dest,
    ...rule,
    ...snat,
    http: { ...http, statusCode: response.statusCode },
    start: started.toISOString(),
    end: new Date().toISOString(),
    durationNs: elapsedNs(startedNs),
    bytesFromClient,
    bytesToClient,
  });
}
