import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface HttpsTarget {
  readonly port: number;
  /** Peer addresses seen, one per request. */
  readonly peers: string[];
  close(): Promise<void>;
}

/**
 * The "external" HTTPS site of the seed topology, on loopback: answers with the TCP peer address
 * it sees, which is whatever the last hop before it (tinyproxy) dialled from.
 */
export async function startHttpsTarget(certPath: string, keyPath: string): Promise<HttpsTarget> {
  const peers: string[] = [];
  const server: Server = createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (req, res) => {
    const peerAddress = req.socket.remoteAddress ?? '';
    peers.push(peerAddress);
    const body = `${JSON.stringify({ peerAddress, url: req.url })}\n`;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    peers,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
