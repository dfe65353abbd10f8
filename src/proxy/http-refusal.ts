import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { type ErrorCode, GatewayError } from '../core/errors.ts';
import { httpRefusalFor, type ProxyStatusError } from '../core/refusal-table.ts';
import type { ConnectionContext } from './connection-context.ts';

/** A refusal as a connect-mode client gets it; status and Proxy-Status come from the refusal table. */
export interface HttpAnswer {
  readonly code: ErrorCode;
  readonly reason: string;
  readonly status: number;
  readonly proxyStatus: ProxyStatusError;
  readonly retryAfterSeconds?: number;
  /** A next hop's own status (a parent proxy's refusal), as Proxy-Status `received-status`. */
  readonly receivedStatus?: number;
}

export function httpAnswer(
  code: ErrorCode,
  reason: string,
  extra: { status?: number; retryAfterSeconds?: number; receivedStatus?: number } = {},
): HttpAnswer {
  const http = httpRefusalFor(code);
  return { code, reason, ...http, ...extra };
}

/** `Proxy-Status` header value (RFC 9209); details are a quoted sf-string without control characters. */
export function proxyStatusHeader(error: ProxyStatusError, details: string, receivedStatus?: number): string {
  const received = receivedStatus === undefined ? '' : `; received-status=${Math.trunc(receivedStatus)}`;
  const safe = details
    .replace(/[^\x20-\x7e]/g, ' ')
    .replace(/["\\]/g, '\\$&')
    .slice(0, 300);
  return `mesh-egress-gateway; error=${error}${received}; details="${safe}"`;
}

function refusalBody(status: number, reason: string): string {
  return `${status} ${STATUS_CODES[status] ?? ''}: ${reason}\n`;
}

/** Writes a refusal on a socket that node:http has handed over (after CONNECT, or a parse error). */
export function refuseOnSocket(socket: Duplex, answer: HttpAnswer): void {
  const body = refusalBody(answer.status, answer.reason);
  socket.end(
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}\r\n` +
      `Proxy-Status: ${proxyStatusHeader(answer.proxyStatus, answer.reason, answer.receivedStatus)}\r\n` +
      (answer.retryAfterSeconds === undefined ? '' : `Retry-After: ${answer.retryAfterSeconds}\r\n`) +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

export function refuseOnResponse(res: ServerResponse, answer: HttpAnswer): void {
  const body = refusalBody(answer.status, answer.reason);
  if (res.headersSent) return void res.destroy();
  const retry = answer.retryAfterSeconds;
  res.writeHead(answer.status, {
    ...(retry === undefined ? {} : { 'retry-after': String(retry), connection: 'close' }),
    'proxy-status': proxyStatusHeader(answer.proxyStatus, answer.reason, answer.receivedStatus),
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** Draining and per-identity limits refuse before any DNS or policy work. */
export function limitRefusal(ctx: ConnectionContext): HttpAnswer | undefined {
  if (ctx.runtime.isDraining())
    return httpAnswer('EGW_DRAINING', 'the gateway is shutting down', { retryAfterSeconds: 1 });
  if (!ctx.limit.ok)
    return httpAnswer(ctx.limit.code, ctx.limit.reason, { retryAfterSeconds: ctx.limit.retryAfterSeconds });
  return undefined;
}

/** The refusal of a failed upstream dial or forward, with the error's own code. */
export function dialFailure(error: unknown): HttpAnswer {
  const code = error instanceof GatewayError ? error.code : 'EGW_UPSTREAM_ERROR';
  const received = error instanceof GatewayError ? error.details.receivedStatus : undefined;
  return httpAnswer(
    code,
    error instanceof Error ? error.message : String(error),
    typeof received === 'number' ? { receivedStatus: received } : {},
  );
}
