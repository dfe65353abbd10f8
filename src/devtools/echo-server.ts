import { type Server, createServer } from 'node:http';

/**
 * A target for trying the gateway locally: answers every HTTP request with the address it was
 * reached from, so the SNAT source address is visible (`{"peer":"127.0.0.2:41234",...}`).
 */
export function startEchoServer(host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const body = JSON.stringify({
      peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      peerAddress: req.socket.remoteAddress,
      method: req.method,
      url: req.url,
      host: req.headers.host,
      headers: req.headers,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) + 1 });
    res.end(`${body}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
