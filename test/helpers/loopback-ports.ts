import { type AddressInfo, connect, createServer } from 'node:net';
import { waitUntil } from './poll-until.ts';

/**
 * A port that was free a moment ago, for daemons (tinyproxy, stunnel) that need a port number in
 * their config file and cannot report one they picked. The window between close and their bind
 * is small; the caller waits with `waitForPort` and fails clearly if someone else took it.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once a TCP connect to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  await waitUntil(accepts, timeoutMs, `something to listen on ${host}:${port}`);
}
