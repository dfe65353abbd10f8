import { createServer, type Server } from 'node:net';

/** A TCP server that echoes every byte back, for tunnels that must carry data both ways. */
export function startTcpEchoServer(): Promise<{ server: Server; port: number; close(): void }> {
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        server,
        port: (server.address() as { port: number }).port,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    );
  });
}
