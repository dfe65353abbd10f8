import { splitHostPort } from '../config/listener-settings.ts';
import { startEchoServer } from '../devtools/echo-server.ts';

export async function runDevEchoServer(listen: string): Promise<void> {
  const { host, port } = splitHostPort(listen);
  await startEchoServer(host, port);
  process.stderr.write(`echo server on http://${listen}/ (answers with the peer address it sees)\n`);
}
