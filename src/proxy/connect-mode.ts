import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { auditEgressRejected } from '../core/audit-records.ts';
import type { HttpForwarder } from '../upstream/http-forwarder.ts';
import { handleAbsoluteForm } from './absolute-form.ts';
import { handleConnect } from './connect-tunnel.ts';
import type { ConnectionContext } from './connection-context.ts';
import { trustOf } from './connection-trust.ts';
import { guardConnection } from './error-boundary.ts';
import type { GatewayState } from './gateway-state.ts';
import type { ModeHandler } from './handle-connection.ts';
import { httpAnswer, refuseOnSocket } from './http-refusal.ts';
import type { LiveConnections } from './live-connections.ts';
import { closeAtExpiry, currentContext } from './redecide-tunnels.ts';

// The request-target parser lives in request-target.ts; re-exported for existing importers.
export { parseAuthority } from './request-target.ts';

/**
 * Slowloris guard: a request head must be complete within timeouts.requestHead of the
 * connection's start, and of the end of the previous response on a kept-alive connection. A wall
 * clock, not an idle timer, so a client dripping one byte at a time cannot hold it open. node:http
 * runs its own header timers only on servers that listen; these are fed sockets.
 */
class HeadTimers {
  readonly #timers = new WeakMap<Duplex, NodeJS.Timeout>();

  arm(ctx: ConnectionContext): void {
    this.arrived(ctx.tls);
    const limitMs = ctx.state.timeouts.requestHeadMs;
    const timer = setTimeout(() => {
      auditEgressRejected(ctx.auditBase, {
        code: 'EGW_PROXY_BAD_REQUEST',
        reason: `no complete request head within ${limitMs} ms`,
      });
      ctx.tls.destroy();
    }, limitMs);
    timer.unref();
    this.#timers.set(ctx.tls, timer);
  }

  arrived(socket: Duplex): void {
    clearTimeout(this.#timers.get(socket));
    this.#timers.delete(socket);
  }
}

/** A request node:http could not parse: audited (unless the client just went away) and answered. */
function onClientError(ctx: ConnectionContext | undefined, error: NodeJS.ErrnoException, socket: Duplex): void {
  if (ctx && error.code !== 'ECONNRESET') {
    auditEgressRejected(ctx.auditBase, {
      code: 'EGW_PROXY_BAD_REQUEST',
      reason: `malformed proxy request: ${error.code ?? error.message}`,
    });
  }
  if (socket.writable) {
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const reason = `malformed proxy request (${error.code ?? 'parse error'})`;
    refuseOnSocket(socket, httpAnswer('EGW_PROXY_BAD_REQUEST', reason, { status }));
  }
  socket.destroy();
}

export interface ConnectModeOptions {
  readonly forwarder: HttpForwarder;
  /** The state every request is decided against (the current snapshot's); default: the handshake's. */
  readonly currentState?: () => GatewayState;
  /** Where open connections are listed for the re-decision on reload. */
  readonly connections?: LiveConnections;
}

/**
 * The request limits of a kept-alive connection: the one that reaches limits.maxRequestsPerConnection
 * or timeouts.connectionMaxAge is answered with `Connection: close`, and node:http closes after it.
 */
function isLastRequest(ctx: ConnectionContext, served: number): boolean {
  const { maxRequestsPerConnection } = ctx.state;
  const { connectionMaxAgeMs } = ctx.state.timeouts;
  if (maxRequestsPerConnection > 0 && served >= maxRequestsPerConnection) return true;
  return connectionMaxAgeMs > 0 && Date.now() - ctx.startedAt.getTime() >= connectionMaxAgeMs;
}

/** Counts a connection's requests; the last one it may serve is answered with `Connection: close`. */
function countRequest(served: WeakMap<Duplex, number>, ctx: ConnectionContext, socket: Duplex, res: ServerResponse) {
  const count = (served.get(socket) ?? 0) + 1;
  served.set(socket, count);
  if (isLastRequest(ctx, count)) res.setHeader('connection', 'close');
}

/**
 * connect mode: an HTTPS forward proxy. node:http parses each authenticated TLS socket (without
 * listening itself), so header limits and keep-alive are node's; the gateway answers CONNECT
 * with a tunnel (connect-tunnel.ts) and absolute-form `http://` requests by forwarding them with
 * undici (absolute-form.ts).
 */
export function createConnectModeHandler(options: ConnectModeOptions): ModeHandler {
  const contexts = new WeakMap<Duplex, ConnectionContext>();
  const served = new WeakMap<Duplex, number>();
  const heads = new HeadTimers();
  // Every request is decided on the current snapshot, not the one of the connection's handshake.
  const live = (ctx: ConnectionContext) => currentContext(ctx, options.currentState?.() ?? ctx.state);

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
      guardConnection(ctx, () => {
        heads.arrived(socket);
        const current = live(ctx);
        return current ? handleConnect(current, req, socket, head) : undefined;
      });
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const ctx = contexts.get(req.socket);
      if (!ctx) return void res.destroy();
      guardConnection(ctx, () => {
        heads.arrived(req.socket);
        const current = live(ctx);
        if (!current) return void res.destroy();
        countRequest(served, current, req.socket, res);
        res.once('finish', () => {
          if (!req.socket.destroyed) heads.arm(ctx);
        });
        return handleAbsoluteForm(current, req, res, options.forwarder);
      });
    });
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
      const ctx = contexts.get(socket);
      if (!ctx) return void onClientError(undefined, error, socket);
      guardConnection(ctx, () => onClientError(ctx, error, socket));
    });
    servers.set(maxHeaderBytes, server);
    return server;
  };

  return (ctx) => {
    contexts.set(ctx.tls, ctx);
    const unlist = options.connections?.add(trustOf(ctx));
    ctx.tls.once('close', () => {
      heads.arrived(ctx.tls);
      unlist?.();
    });
    closeAtExpiry(ctx);
    heads.arm(ctx);
    serverFor(ctx.state.maxHeaderBytes).emit('connection', ctx.tls);
  };
}
