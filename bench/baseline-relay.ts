/**
 * The floor for the benchmarks: the smallest Node mTLS relay doing the same transport work
 * (tls.createServer requiring a client certificate against the same anchor, piping to one
 * upstream from a SNAT address). No SPIFFE checks, no policy, no HTTP parsing, no audit.
 * Arguments: cert key ca snatAddress upstreamPort...; listens once per upstream and prints the ports.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer } from 'node:tls';

const [certPath, keyPath, caPath, localAddress, ...upstreamPorts] = process.argv.slice(2);
const options = {
  cert: readFileSync(certPath as string),
  key: readFileSync(keyPath as string),
  ca: readFileSync(caPath as string),
  requestCert: true,
  rejectUnauthorized: true,
};
const ports = upstreamPorts.map(
  (upstreamPort) =>
    new Promise<number>((resolve) => {
      const server = createServer(options, (client) => {
        const upstream = connect({ host: '127.0.0.1', port: Number(upstreamPort), localAddress });
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.pipe(upstream).pipe(client);
      });
      server.maxConnections = 100_000;
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    }),
);
process.stdout.write(`${(await Promise.all(ports)).join(' ')}\n`);
