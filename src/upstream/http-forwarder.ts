import diagnosticsChannel from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type * as Undici from 'undici';
import { type ErrorCode, GatewayError } from '../core/errors.ts';
import { dialUpstream, upstreamErrorCode } from './dial-upstream.ts';

// undici (CommonJS) costs 0.1-0.3 s to load: it is required when the first upstream pool is made, not at start.
const requireCjs = createRequire(import.meta.url);
let undici: typeof Undici | undefined;
const lib = (): typeof Undici => {
  undici ??= requireCjs('undici') as typeof Undici;
  return undici;
};

export interface ForwardRequest {
  /** The caller's SPIFFE ID: its requests get upstream connections of their own. */
  readonly identity: string;
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
  /** A parent proxy (rules[].via): dialled instead of `ip`, sent the absolute-form target `http://authority/path`. */
  readonly viaParent?: { readonly ip: string; readonly port: number; readonly authority: string };
}

export interface ForwardResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Readable;
  readonly localAddress?: string;
  readonly localPort?: number;
}

function codeFor(error: unknown): ErrorCode {
  // The SNAT connector's own dial error, as it is or as the cause of undici's.
  const own = error instanceof GatewayError ? error : (error as { cause?: unknown }).cause;
  if (own instanceof GatewayError) return own.code;
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const causeCode = (error as { cause?: NodeJS.ErrnoException }).cause?.code ?? '';
  if (error instanceof lib().errors.ConnectTimeoutError || code === 'UND_ERR_CONNECT_TIMEOUT')
    return 'EGW_UPSTREAM_TIMEOUT';
  if (error instanceof lib().errors.HeadersTimeoutError) return 'EGW_UPSTREAM_TIMEOUT';
  // undici reports socket failures either directly or as the cause of its own error.
  return upstreamErrorCode(code.startsWith('E') ? code : causeCode);
}

/** undici's connector for a SNAT address: the same dial as tunnels, with its error codes. */
function snatConnector(localAddress: string, timeoutMs: number): Undici.buildConnector.connector {
  return (options, callback) => {
    // undici hands over an IPv6 literal without brackets; strip them anyway.
    const ip = options.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80);
    dialUpstream({ ip, port, localAddress, timeoutMs }).then(
      (socket) => callback(null, socket),
      (error: Error) => callback(error, null),
    );
  };
}

/** Where a request's upstream connection left from, filled in as undici writes the request head. */
interface LocalEnd {
  localAddress?: string;
  localPort?: number;
}

// undici does not tell a request which socket carried it. Its diagnostics channels do: the
// internal request object is created synchronously inside Agent.request (tagged below), and the
// socket is published when its head is written. Process-wide, so subscribed once.
let tagging: LocalEnd | undefined;
const tagged = new WeakMap<object, LocalEnd>();
diagnosticsChannel.subscribe('undici:request:create', (message) => {
  if (!tagging) return;
  tagged.set((message as { request: object }).request, tagging);
  tagging = undefined;
});
diagnosticsChannel.subscribe('undici:client:sendHeaders', (message) => {
  const { request, socket } = message as { request: object; socket: { localAddress?: string; localPort?: number } };
  const end = tagged.get(request);
  if (!end) return;
  end.localAddress = socket.localAddress;
  end.localPort = socket.localPort;
});

interface PoolEntry {
  readonly agent: Undici.Agent;
  lastUsedMs: number;
  inFlight: number;
}

/** A pool with nothing in flight for this long is closed (undici's keep-alive is 4 s anyway). */
const POOL_IDLE_MS = 30_000;

/**
 * Forwards absolute-form HTTP requests with undici. One keep-alive Agent per caller identity and
 * SNAT address (and connect timeout), so a pooled upstream connection never carries requests of
 * two SPIFFE IDs (an origin must not see one identity's request on another's connection) nor
 * mixes source addresses. Memory is bounded: at most `maxPools()` Agents, least recently used
 * out first, and an Agent idle for POOL_IDLE_MS is closed. The caller has already resolved and
 * checked the destination IP; undici dials that IP and sends the original Host header.
 */
export class HttpForwarder {
  readonly #pools = new Map<string, PoolEntry>();
  readonly #responseTimeoutMs: number;
  readonly #maxPools: () => number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: { responseTimeoutMs: number; maxPools?: () => number }) {
    this.#responseTimeoutMs = options.responseTimeoutMs;
    this.#maxPools = options.maxPools ?? (() => 1024);
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), POOL_IDLE_MS);
    this.#sweeper.unref();
  }

  /** Pools open now (tests, /stats). */
  get pools(): number {
    return this.#pools.size;
  }

  #poolFor(request: ForwardRequest): PoolEntry {
    const parent = request.viaParent ? `${request.viaParent.ip}:${request.viaParent.port}` : '';
    const key = JSON.stringify([request.identity, request.localAddress ?? '', request.connectTimeoutMs, parent]);
    let entry = this.#pools.get(key);
    if (entry) {
      this.#pools.delete(key); // re-inserted below: Map order is least recently used first
    } else {
      this.#evictFor(this.#maxPools());
      entry = { agent: this.#newAgent(request.localAddress, request.connectTimeoutMs), lastUsedMs: 0, inFlight: 0 };
    }
    entry.lastUsedMs = Date.now();
    this.#pools.set(key, entry);
    return entry;
  }

  #newAgent(localAddress: string | undefined, connectTimeoutMs: number): Undici.Agent {
    return new (lib().Agent)({
      // From a SNAT address the gateway's own dial picks the source port (snat-ports.ts says why).
      connect: localAddress ? snatConnector(localAddress, connectTimeoutMs) : { timeout: connectTimeoutMs },
      headersTimeout: this.#responseTimeoutMs,
      bodyTimeout: this.#responseTimeoutMs,
      keepAliveTimeout: 4_000,
    });
  }

  /** Makes room for one more pool; an evicted Agent finishes its in-flight requests, then closes. */
  #evictFor(max: number): void {
    for (const [key, entry] of this.#pools) {
      if (this.#pools.size < max) return;
      this.#pools.delete(key);
      void entry.agent.close();
    }
  }

  #sweep(nowMs: number): void {
    for (const [key, entry] of this.#pools) {
      if (entry.inFlight > 0 || nowMs - entry.lastUsedMs < POOL_IDLE_MS) continue;
      this.#pools.delete(key);
      void entry.agent.close();
    }
  }

  async forward(request: ForwardRequest): Promise<ForwardResponse> {
    const via = request.viaParent;
    const dialled = via ?? request;
    const host = isIP(dialled.ip) === 6 ? `[${dialled.ip}]` : dialled.ip;
    const pool = this.#poolFor(request);
    const local: LocalEnd = {};
    pool.inFlight += 1;
    try {
      tagging = local;
      const pending = pool.agent.request({
        origin: `http://${host}:${dialled.port}`,
        path: via ? `http://${via.authority}${request.path}` : request.path,
        method: request.method as 'GET',
        headers: { ...request.headers, host: request.hostHeader },
        ...(request.body ? { body: request.body } : {}),
      });
      tagging = undefined;
      const response = await pending;
      return {
        statusCode: response.statusCode,
        headers: response.headers,
        body: response.body,
        ...(local.localAddress
          ? { localAddress: local.localAddress }
          : request.localAddress
            ? { localAddress: request.localAddress }
            : {}),
        ...(local.localPort ? { localPort: local.localPort } : {}),
      };
    } catch (cause) {
      const code = codeFor(cause);
      // A parent that cannot be dialled is the parent's failure, not the destination's.
      const parentDown = via && (cause instanceof lib().errors.ConnectTimeoutError || code !== 'EGW_UPSTREAM_ERROR');
      const where = via ? `parent proxy ${host}:${via.port} for ${via.authority}` : `${request.ip}:${request.port}`;
      throw new GatewayError(
        parentDown ? 'EGW_UPSTREAM_PARENT_UNREACHABLE' : code,
        `forwarding to ${where} failed: ${(cause as Error).message}`,
        { cause },
      );
    } finally {
      tagging = undefined;
      pool.inFlight -= 1;
      pool.lastUsedMs = Date.now();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all([...this.#pools.values()].map((entry) => entry.agent.close()));
    this.#pools.clear();
  }
}
