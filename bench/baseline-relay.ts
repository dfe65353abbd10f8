/**
 * Baseline for the benchmarks: the smallest Node mTLS relay that does the same transport work
 * (tls.createServer requiring a client certificate against the root, piping to one upstream).
 * It has no SPIFFE checks, no policy, no HTTP parsing, no audit: the gateway's figures are reported
 * as ratios against this one, measured in the same run on the same machine.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer } from 'node:tls';

const [certPath, keyPath, caPath, upstreamPort] = process.argv.slice(2);
const server = createServer(
  {
    cert: readFileSync(certPath as string),
    key: readFileSync(keyPath as string),
    ca: readFileSync(caPath as string),
    requestCert: true,
    rejectUnauthorized: true,
  },
  (client) => {
    const upstream = connect({ host: '127.0.0.1', port: Number(upstreamPort), localAddress: '127.0.0.2' });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  },
);
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
