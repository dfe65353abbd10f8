import { readFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  encodeProxyV2,
  PP2_TYPE_EGW_SPIFFE_ID,
  PP2_TYPE_UNIQUE_ID,
  parseProxyV2,
} from '../../src/listener/proxy-protocol.ts';
import type { WrittenLeaf } from './test-pki.ts';

/** Clients and peers for the PROXY protocol tests: a balancer-like client, raw senders, upstreams. */
export interface Exchange {
  readonly text: string;
  /** The client's own port, which the PROXY source port must be. */
  readonly localPort: number;
  readonly error?: string;
}

/**
 * One TLS exchange: optionally a PROXY header first on the raw socket (as a balancer would),
 * then mTLS with `leaf`, `send`, and everything until the server closes.
 */
export function exchange(
  port: number,
  leaf: WrittenLeaf,
  options: { localAddress?: string; header?: Buffer; send?: string; onOpen?: (s: Socket) => void; ca: string },
): Promise<Exchange> {
  return new Promise((resolve) => {
    const raw = netConnect({ host: '127.0.0.1', port, localAddress: options.localAddress ?? '127.0.0.1' });
    let text = '';
    let error: string | undefined;
    let localPort = 0;
    raw.once('connect', () => {
      localPort = raw.localPort ?? 0;
      if (options.header) raw.write(options.header);
      const tls = tlsConnect({
        socket: raw,
        ca: readFileSync(options.ca),
        cert: readFileSync(leaf.certPath),
        key: readFileSync(leaf.keyPath),
        servername: 'localhost',
      });
      tls.on('data', (chunk) => {
        text += chunk;
      });
      tls.once('secureConnect', () => {
        if (options.send) tls.write(options.send);
        options.onOpen?.(tls as unknown as Socket);
      });
      tls.once('error', (e: NodeJS.ErrnoException) => {
        error = e.code ?? e.message;
      });
      tls.once('close', done);
    });
    const done = () => resolve({ text, localPort, ...(error ? { error } : {}) });
    raw.once('error', (e: NodeJS.ErrnoException) => {
      error ??= e.code ?? e.message;
    });
    // A reset at accept can close the raw socket before the TLS layer notices; settle on either.
    raw.once('close', () => setImmediate(done));
  });
}

/** Writes `bytes` on a plain TCP socket and waits for the gateway to close it; says how. */
export function rawSend(
  port: number,
  bytes: Buffer,
  localAddress = '127.0.0.1',
  options: { end?: boolean } = {},
): Promise<{ error?: string }> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress }, () =>
      options.end ? socket.end(bytes) : socket.write(bytes),
    );
    let error: string | undefined;
    socket.on('data', () => {});
    socket.once('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.once('close', () => resolve(error ? { error } : {}));
  });
}

export function header(source: { ip: string; port: number }): Buffer {
  return encodeProxyV2({ source, destination: { ip: '127.0.0.1', port: 443 } });
}

/**
 * An upstream that reads the gateway's PROXY v2 header with the parser and answers what it
 * said as one JSON line, then keeps the connection open until the client closes it.
 */
export function startHeaderEcho(): Promise<Server> {
  const server = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseProxyV2(buffered);
      if (parsed.status === 'incomplete') return;
      const tlv = (type: number) =>
        parsed.status === 'ok' ? parsed.header.tlvs.find((t) => t.type === type)?.value.toString() : undefined;
      socket.write(
        `${JSON.stringify(
          parsed.status === 'ok'
            ? {
                source: parsed.header.source,
                spiffeId: tlv(PP2_TYPE_EGW_SPIFFE_ID),
                uniqueId: tlv(PP2_TYPE_UNIQUE_ID),
              }
            : { invalid: parsed.reason },
        )}\n`,
      );
      buffered = Buffer.alloc(0);
      socket.removeAllListeners('data');
      socket.on('data', () => {});
    });
    socket.on('error', () => {});
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * A minimal balancer of our own, to control how the header meets the TLS bytes: `coalesce` sends
 * the header and the client's first chunk (its ClientHello) in one write, `drip` sends the
 * header a byte at a time first. Either way the gateway must hand TLS exactly the client's bytes.
 */
export function startRelay(target: number, mode: 'coalesce' | 'drip'): Promise<Server> {
  const server = createServer((client) => {
    client.once('data', async (first: Buffer) => {
      client.pause();
      const proxyHeader = header({ ip: client.remoteAddress ?? '', port: client.remotePort ?? 0 });
      const upstream = netConnect({ host: '127.0.0.1', port: target });
      upstream.on('error', () => client.destroy());
      await new Promise((r) => upstream.once('connect', r));
      if (mode === 'coalesce') upstream.write(Buffer.concat([proxyHeader, first]));
      else {
        for (const byte of proxyHeader) {
          upstream.write(Buffer.from([byte]));
          await new Promise((r) => setTimeout(r, 2));
        }
        upstream.write(first);
      }
      client.pipe(upstream).pipe(client);
      client.resume();
    });
    client.on('error', () => {});
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
