import type { Socket } from 'node:net';
import { MAX_PROXY_V2_TLV_BYTES, type ProxyAddress, type ProxyHeader, parseProxyV2 } from './proxy-protocol.ts';

/** What a PROXY header said about one accepted socket, for the stages after the listener. */
export interface ProxiedConnection {
  /** The client the balancer accepted; absent for LOCAL (health checks) and AF_UNSPEC/AF_UNIX. */
  readonly source?: ProxyAddress;
  /** The address the client connected to on the balancer. */
  readonly destination?: ProxyAddress;
  /** Header bytes read off the socket before TLS. */
  readonly headerBytes: number;
}

const proxied = new WeakMap<Socket, ProxiedConnection>();

/** The PROXY header facts of `raw`, if its listener read one. */
export function proxiedConnection(raw: Socket): ProxiedConnection | undefined {
  return proxied.get(raw);
}

/** The client address: the PROXY header's source when it carried one, else the socket's peer. */
export function clientAddress(raw: Socket): ProxyAddress {
  return proxied.get(raw)?.source ?? { ip: raw.remoteAddress ?? '', port: raw.remotePort ?? 0 };
}

export class ProxyHeaderError extends Error {
  /** True when the peer closed without sending a byte: a TCP probe, not a refusal worth counting. */
  readonly silent: boolean;
  constructor(message: string, silent = false) {
    super(message);
    this.name = 'ProxyHeaderError';
    this.silent = silent;
  }
}

/**
 * Reads a PROXY v2 header off `socket` before any other stage reads it, and leaves the bytes
 * after it (the TLS ClientHello, often in the same segment) unshifted back for the TLS layer: a
 * TLSSocket built on a net.Socket first consumes what that socket has buffered. At most one
 * chunk beyond 16 + 216 + `maxTlvBytes` bytes is ever held, and only until `deadlineMs`.
 */
export function readProxyHeader(
  socket: Socket,
  deadlineMs: number,
  maxTlvBytes = MAX_PROXY_V2_TLV_BYTES,
): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (error: ProxyHeaderError | undefined, header?: ProxyHeader, length = 0) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onClosed);
      socket.removeListener('close', onClosed);
      socket.removeListener('error', onClosed);
      socket.pause();
      if (error || !header) return reject(error);
      const rest = buffered.subarray(length);
      if (rest.length > 0) socket.unshift(rest);
      proxied.set(socket, {
        ...(header.source ? { source: header.source } : {}),
        ...(header.destination ? { destination: header.destination } : {}),
        headerBytes: length,
      });
      resolve(header);
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseProxyV2(buffered, maxTlvBytes);
      if (parsed.status === 'invalid') finish(new ProxyHeaderError(`invalid PROXY v2 header: ${parsed.reason}`));
      else if (parsed.status === 'ok') finish(undefined, parsed.header, parsed.length);
    };
    const onClosed = () =>
      finish(new ProxyHeaderError('closed before a complete PROXY v2 header', socket.bytesRead === 0));
    const timer = setTimeout(
      () => finish(new ProxyHeaderError(`no complete PROXY v2 header within ${deadlineMs} ms`)),
      deadlineMs,
    );
    socket.on('data', onData);
    socket.once('end', onClosed);
    socket.once('close', onClosed);
    socket.once('error', onClosed);
  });
}
