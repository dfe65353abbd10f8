import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { auditEgressRejected } from '../core/audit-records.ts';
import type { HttpForwarder } from '../upstream/http-forwarder.ts';
import { handleAbsoluteForm } from './absolute-form.ts';
import { handleConnect } from './connect-tunnel.ts';
import type { ConnectionContext } from './connection-context.ts';
import { guardConnection } from './error-boundary.ts';
import type { ModeHandler } from './handle-connection.ts';
import { httpAnswer, refuseOnSocket } from './http-refusal.ts';

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

/**
 * connect mode: an HTTPS forward proxy. node:http parses each authenticated TLS socket (without
 * listening itself), so header limits and keep-alive are node's; the gateway answers CONNECT
 * with a tunnel (connect-tunnel.ts) and absolute-form `http://` requests by forwarding them with
 * undici (absolute-form.ts).
 */
export function createConnectModeHandler(options: { forwarder: HttpForwarder }): ModeHandler {
  const contexts = new WeakMap<Duplex, ConnectionContext>();
  const heads = new HeadTimers();

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
        return handleConnect(ctx, req, socket, head);
      });
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const ctx = contexts.get(req.socket);
      if (!ctx) return void res.destroy();
      guardConnection(ctx, () => {
        heads.arrived(req.socket);
        res.once('finish', () => {
          if (!req.socket.destroyed) heads.arm(ctx);
        });
        return handleAbsoluteForm(ctx, req, res, options.forwarder);
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
    ctx.tls.once('close', () => heads.arrived(ctx.tls));
    heads.arm(ctx);
    serverFor(ctx.state.maxHeaderBytes).emit('connection', ctx.tls);
  };
}
