/**
 * The bench's upstreams, in their own process so that neither their CPU nor their file
 * descriptors count against the load generator or a subject: a discarding sink (10k idle
 * tunnels end here), a byte echo (latency), and a one-line HTTP/1.0 server that answers and
 * closes (for `openssl s_time -www`, which only reads TLS 1.3 tickets when it reads a page).
 * Prints "discard echo web" ports on one line.
 */
import { createServer, type Server } from 'node:net';

const listen = (server: Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );

const discard = createServer((s) => {
  s.on('error', () => {});
  s.resume();
});
const echo = createServer((s) => {
  s.on('error', () => {});
  s.setNoDelay(true);
  s.pipe(s);
});
const web = createServer((s) => {
  s.on('error', () => {});
  let head = '';
  s.on('data', (chunk: Buffer) => {
    head += chunk.toString('latin1');
    if (head.includes('\r\n\r\n')) s.end('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
});
for (const server of [discard, echo, web]) server.maxConnections = 100_000;
const ports = [await listen(discard), await listen(echo), await listen(web)];
process.stdout.write(`${ports.join(' ')}\n`);
