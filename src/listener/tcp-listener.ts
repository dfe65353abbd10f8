import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { publishAudit } from '../core/audit-event.ts';
import { GatewayError } from '../core/errors.ts';
import { PreHandshakeGate, type PreHandshakeLimits, resetSocket } from './pre-handshake-gate.ts';
import { clientAddress, ProxyHeaderError, proxiedConnection, readProxyHeader } from './proxy-protocol-reader.ts';
import type { SourcePenalty } from './source-penalty.ts';

/** A listener behind an L4 balancer: every connection starts with a PROXY v2 header from a trusted peer. */
export interface ProxyProtocolSettings {
  /** True for a peer address allowed to send the header (`listeners[].proxyProtocolFrom`). */
  readonly trusts: (ip: string) => boolean;
}

export interface TcpListenerOptions {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly mode: 'connect' | 'tcp';
  /**
   * Established connections (past the TLS handshake) above this are reset at accept time and audited
   * (0 = unlimited); read per accept, so a reload applies.
   */
  readonly maxConnections: () => number;
  /** Limits for sockets still before the end of their TLS handshake; read at each accept, so reloads apply. */
  readonly preHandshake: () => PreHandshakeLimits;
  /** Read per accept, so a reload applies; undefined: no PROXY header is expected. */
  readonly proxyProtocol?: () => ProxyProtocolSettings | undefined;
  /** Sources with repeated failed handshakes, reset at accept; may be shared by every listener. */
  readonly penalty?: SourcePenalty;
  readonly onConnection: (socket: Socket) => void;
}

/**
 * The first stage: accepts TCP connections and hands raw sockets on. It knows nothing of TLS or
 * policy; it tracks open sockets so the gateway can drain them, and holds sockets that have not
 * finished their handshake to their own budget (PreHandshakeGate), apart from `maxConnections`.
 */
export class TcpListener {
  readonly name: string;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #options: TcpListenerOptions;
  readonly #gate: PreHandshakeGate;

  constructor(options: TcpListenerOptions) {
    this.name = options.name;
    this.#options = options;
    this.#gate = new PreHandshakeGate(options.name, options.mode, options.preHandshake, options.penalty);
    // allowHalfOpen: a client that shuts down its write side may still receive the response.
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
  }

  #accept(socket: Socket): void {
    // Only established connections count here: idle unauthenticated sockets must not fill this cap.
    // Sockets in their handshake may add up to the pre-handshake budget on top of it.
    const maxConnections = this.#options.maxConnections();
    const established = this.#sockets.size - this.#gate.size;
    if (maxConnections > 0 && established >= maxConnections) {
      publishAudit({
        connectionId: randomUUID(),
        action: 'egress-rejected',
        reason: `listener ${this.name} is at its limit of ${maxConnections} open connections`,
        code: 'EGW_LIMIT_LISTENER_CONNECTIONS',
        listener: this.name,
        mode: this.#options.mode,
        source: { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      });
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    const proxy = this.#options.proxyProtocol?.();
    if (proxy && !proxy.trusts(socket.remoteAddress ?? '')) {
      // Anyone could otherwise claim any source address; the balancer is the only one who may.
      this.#gate.refuse(socket.remoteAddress ?? '', 'proxy_untrusted');
      socket.on('error', () => {});
      resetSocket(socket);
      return;
    }
    if (this.#gate.admit(socket, proxy !== undefined) !== undefined) {
      // Audited in aggregate by the gate, not per socket: these are the ones an attacker multiplies.
      socket.on('error', () => {});
      resetSocket(socket);
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {}); // errors are reported by the stage that owns the socket
    if (proxy) this.#acceptProxied(socket);
    else this.#options.onConnection(socket);
  }

  /** Reads the PROXY header within the first-byte deadline; its source then counts as the client. */
  #acceptProxied(socket: Socket): void {
    readProxyHeader(socket, this.#options.preHandshake().firstByteMs).then(
      () => {
        const headerBytes = proxiedConnection(socket)?.headerBytes ?? 0;
        if (this.#gate.attribute(socket, clientAddress(socket).ip, headerBytes) !== undefined) resetSocket(socket);
        else this.#options.onConnection(socket);
      },
      (error: unknown) => {
        // Already reset by the gate's first-byte deadline, or a bare TCP probe: nothing to count.
        const silent = error instanceof ProxyHeaderError && error.silent;
        if (!socket.destroyed && !silent) this.#gate.refuse(socket.remoteAddress ?? '', 'proxy_header');
        resetSocket(socket);
      },
    );
  }

  get listening(): boolean {
    return this.#server.listening;
  }

  /** Open sockets that have not finished their TLS handshake yet. */
  get preHandshakeSockets(): number {
    return this.#gate.size;
  }

  /** The bound address, useful when port 0 was asked for. */
  get address(): { host: string; port: number } {
    const address = this.#server.address();
    if (address === null || typeof address === 'string') return { host: this.#options.host, port: this.#options.port };
    return { host: address.address, port: address.port };
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        reject(
          new GatewayError(
            'EGW_LISTEN_FAILED',
            `listener ${this.name}: cannot listen on ${this.#options.host}:${this.#options.port} (${error.code ?? error.message})`,
            { cause: error },
          ),
        );
      };
      this.#server.once('error', onError);
      this.#server.listen({ host: this.#options.host, port: this.#options.port }, () => {
        this.#server.removeListener('error', onError);
        resolve();
      });
    });
  }

  /** Stops accepting; open connections are left to finish (`drain` waits for them, then destroys the rest). */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      // close()'s callback waits for every open connection; only the listening socket matters here.
      if (this.#server.listening) this.#server.close();
      resolve();
    });
  }

  /** Waits until every connection has closed, or the deadline passes; returns how many were still open. */
  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    while (this.#sockets.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const left = this.#sockets.size;
    for (const socket of this.#sockets) socket.destroy();
    this.#gate.close();
    return left;
  }
}
