import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';

/**
 * A target for trying the gateway locally: answers every HTTP request with the address it was
 * reached from, so the SNAT source address is visible (`{"peer":"127.0.0.2:41234",...}`).
 */
export function startEchoServer(host: string, port: number): Promise<Server> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const received = Buffer.concat(chunks);
    const body = JSON.stringify({
      peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      peerAddress: req.socket.remoteAddress,
      method: req.method,
      url: req.url,
      host: req.headers.host,
      headers: req.headers,
      bodyBytes: received.length,
      bodySha256: createHash('sha256').update(received).digest('hex'),
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) + 1 });
    res.end(`${body}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
