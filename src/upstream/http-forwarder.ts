import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { Agent, errors as undiciErrors } from 'undici';
import { type ErrorCode, GatewayError } from '../core/errors.ts';
import { upstreamErrorCode } from './dial-upstream.ts';

export interface ForwardRequest {
  readonly connectTimeoutMs: number;
  readonly ip: string;
  readonly port: number;
  /** Host header value as the client sent it (the origin sees the name, not the IP). */
  readonly hostHeader: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly body?: Readable;
  readonly localAddress?: string;
}

export interface ForwardResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Readable;
  readonly localAddress?: string;
  readonly localPort?: number;
}

function codeFor(error: unknown): ErrorCode {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const causeCode = (error as { cause?: NodeJS.ErrnoException }).cause?.code ?? '';
  if (error instanceof undiciErrors.ConnectTimeoutError || code === 'UND_ERR_CONNECT_TIMEOUT')
    return 'EGW_UPSTREAM_TIMEOUT';
  if (error instanceof undiciErrors.HeadersTimeoutError) return 'EGW_UPSTREAM_TIMEOUT';
  // undici reports socket failures either directly or as the cause of its own error.
  return upstreamErrorCode(code.startsWith('E') ? code : causeCode);
}

/**
 * Forwards absolute-form HTTP requests with undici, one keep-alive Agent per SNAT address so
 * pooled connections never mix source addresses. The caller has already resolved and checked
 * the destination IP; undici dials that IP and sends the original Host header.
 */
export class HttpForwarder {
  readonly #agents = new Map<string, Agent>();
  readonly #responseTimeoutMs: number;

  constructor(options: { responseTimeoutMs: number }) {
    this.#responseTimeoutMs = options.responseTimeoutMs;
  }

  /** Keyed by source address and connect timeout, so a reload that changes either takes effect. */
  #agentFor(localAddress: string | undefined, connectTimeoutMs: number): Agent {
    const key = `${localAddress ?? ''}|${connectTimeoutMs}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = new Agent({
        // undici's Client owns the source address (its connector overrides connect.localAddress).
        ...(localAddress ? { localAddress } : {}),
        connect: { timeout: connectTimeoutMs },
        headersTimeout: this.#responseTimeoutMs,
        bodyTimeout: this.#responseTimeoutMs,
        keepAliveTimeout: 4_000,
      });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  async forward(request: ForwardRequest): Promise<ForwardResponse> {
    const host = isIP(request.ip) === 6 ? `[${request.ip}]` : request.ip;
    let localAddress: string | undefined;
    let localPort: number | undefined;
    try {
      const response = await this.#agentFor(request.localAddress, request.connectTimeoutMs).request({
        origin: `http://${host}:${request.port}`,
        path: request.path,
        method: request.method as 'GET',
        headers: { ...request.headers, host: request.hostHeader },
        ...(request.body ? { body: request.body } : {}),
      });
      const socketInfo = (
        response as unknown as { context?: { socket?: { localAddress?: string; localPort?: number } } }
      ).context;
      localAddress = socketInfo?.socket?.localAddress;
      localPort = socketInfo?.socket?.localPort;
      return {
        statusCode: response.statusCode,
        headers: response.headers,
        body: response.body,
        ...(localAddress ? { localAddress } : request.localAddress ? { localAddress: request.localAddress } : {}),
        ...(localPort ? { localPort } : {}),
      };
    } catch (cause) {
      throw new GatewayError(
        codeFor(cause),
        `forwarding to ${request.ip}:${request.port} failed: ${(cause as Error).message}`,
        { cause },
      );
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#agents.values()].map((agent) => agent.close()));
    this.#agents.clear();
  }
}
