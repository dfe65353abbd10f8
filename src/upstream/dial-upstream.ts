import { connect, type Socket } from 'node:net';
import { type ErrorCode, GatewayError } from '../core/errors.ts';

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

/** Opens a TCP connection to exactly `ip:port` from `localAddress`. Rejects with EGW_UPSTREAM_* codes. */
export function dialUpstream(options: DialOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: options.ip,
      port: options.port,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
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
