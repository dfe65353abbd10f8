import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { Client } from 'undici';
import type { WrittenLeaf } from './test-pki.ts';

export interface Tunnel {
  readonly socket: TLSSocket;
  /** Everything received after the CONNECT response. */
  received(): Buffer;
  /** Resolves once at least `length` bytes arrived after the CONNECT response. */
  waitFor(length: number, timeoutMs?: number): Promise<Buffer>;
  close(): void;
}

/** A finished mTLS handshake with the gateway as `client` (Node's TLS client). */
export async function openTlsClient(port: number, client: WrittenLeaf, caPath: string): Promise<TLSSocket> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    ca: readFileSync(caPath),
    cert: readFileSync(client.certPath),
    key: readFileSync(client.keyPath),
    servername: 'localhost',
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the TLS handshake finished')));
  });
  return socket;
}

/** Opens a CONNECT tunnel through the gateway with Node's TLS client, for tests that hold tunnels open. */
export async function openTunnel(port: number, client: WrittenLeaf, caPath: string, target: string): Promise<Tunnel> {
  const socket = await openTlsClient(port, client, caPath);
  let head = Buffer.alloc(0);
  let body = Buffer.alloc(0);
  let headerDone = false;
  const waiters: Array<() => void> = [];
  socket.on('data', (chunk: Buffer) => {
    if (headerDone) body = Buffer.concat([body, chunk]);
    else {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end !== -1) {
        headerDone = true;
        body = head.subarray(end + 4);
        head = head.subarray(0, end + 4);
      }
    }
    for (const waiter of waiters.splice(0)) waiter();
  });
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const deadline = Date.now() + 5000;
  while (!headerDone) {
    if (Date.now() > deadline || socket.destroyed) throw new Error(`no CONNECT response: ${head.toString()}`);
    await new Promise<void>((r) => {
      waiters.push(r);
      setTimeout(r, 50);
    });
  }
  const status = head.toString().split('\r\n')[0] ?? '';
  if (!/^HTTP\/1\.1 200/.test(status)) {
    socket.destroy();
    throw Object.assign(new Error(`CONNECT refused: ${head.toString()}`), { response: head.toString() });
  }
  return {
    socket,
    received: () => body,
    async waitFor(length, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      while (body.length < length) {
        if (Date.now() > until) throw new Error(`only ${body.length} of ${length} bytes arrived`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return body;
    },
    close: () => socket.end(),
  };
}

/** One kept-alive mTLS connection to the gateway (pipelining 1), for absolute-form requests. */
export function keptAliveClient(gatewayPort: number, client: WrittenLeaf, caPath: string): Client {
  return new Client(`https://127.0.0.1:${gatewayPort}`, {
    connect: {
      ca: readFileSync(caPath),
      cert: readFileSync(client.certPath),
      key: readFileSync(client.keyPath),
      servername: 'localhost',
    },
    keepAliveTimeout: 30_000,
  });
}
