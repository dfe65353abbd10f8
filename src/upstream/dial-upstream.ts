import { connect, type Socket } from 'node:net';
import { type ErrorCode, GatewayError } from '../core/errors.ts';
import { SnatPortCursor } from './snat-ports.ts';

export interface DialOptions {
  readonly ip: string;
  readonly port: number;
  /** SNAT source address; undefined lets the OS choose. */
  readonly localAddress?: string;
  readonly timeoutMs: number;
}

/** Maps a socket errno to the gateway's upstream error code; shared with the undici forwarder. */
export function upstreamErrorCode(errno: string | undefined): ErrorCode {
  switch (errno) {
    case 'ECONNREFUSED':
      return 'EGW_UPSTREAM_REFUSED';
    case 'ETIMEDOUT':
      return 'EGW_UPSTREAM_TIMEOUT';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return 'EGW_UPSTREAM_UNREACHABLE';
    default:
      return 'EGW_UPSTREAM_ERROR';
  }
}

/** How many source ports one dial tries before the address counts as exhausted (failover). */
const PORT_ATTEMPTS = 32;
/** Made at the first SNAT dial: reading the host's port range is no business of a CLI that only imports this. */
let ports: SnatPortCursor | undefined;

/**
 * This port of the source address is not usable for this destination: a listener holds it
 * (EADDRINUSE on bind) or the four-tuple is taken (EADDRNOTAVAIL on connect). EADDRNOTAVAIL on
 * bind means the address itself left the host: no other port helps.
 */
function portTaken(error: unknown): boolean {
  const cause = (error instanceof GatewayError ? error.cause : error) as NodeJS.ErrnoException | undefined;
  if (cause?.code === 'EADDRINUSE') return true;
  return cause?.code === 'EADDRNOTAVAIL' && cause.syscall === 'connect';
}

/**
 * Opens a TCP connection to exactly `ip:port` from `localAddress`. Rejects with EGW_UPSTREAM_* codes.
 * A SNAT dial picks its own source port (snat-ports.ts says why) and moves to the next port while
 * the chosen one is taken; the last error after PORT_ATTEMPTS is the address's exhaustion.
 */
export async function dialUpstream(options: DialOptions): Promise<Socket> {
  const { localAddress } = options;
  if (!localAddress) return dialOnce(options, undefined);
  ports ??= new SnatPortCursor();
  const deadline = Date.now() + options.timeoutMs;
  for (let attempt = 1; ; attempt += 1) {
    const timeoutMs = Math.max(1, deadline - Date.now());
    try {
      return await dialOnce({ ...options, timeoutMs }, ports.next(localAddress));
    } catch (error) {
      if (attempt >= PORT_ATTEMPTS || !portTaken(error)) throw error;
    }
  }
}

function dialOnce(options: DialOptions, localPort: number | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: options.ip,
      port: options.port,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      ...(localPort ? { localPort } : {}),
      noDelay: true,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new GatewayError(
          'EGW_UPSTREAM_TIMEOUT',
          `connect to ${options.ip}:${options.port} timed out after ${options.timeoutMs} ms`,
        ),
      );
    }, options.timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new GatewayError(
          upstreamErrorCode(error.code),
          `connect to ${options.ip}:${options.port} failed: ${error.code ?? error.message}`,
          { cause: error },
        ),
      );
    });
  });
}
