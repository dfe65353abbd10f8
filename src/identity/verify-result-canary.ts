import { createServer, type Server } from 'node:net';
import { connect, type SecureContext, type TLSSocket } from 'node:tls';
import { GatewayError } from '../core/errors.ts';
import { createRootCa, type IssuedCertificate, issueLeaf } from '../pki/issue-certificate.ts';
import { exportPrivateKeyPem } from '../pki/key-pair.ts';
import { acceptTls, opensslVerifyError } from '../tls/accept-tls.ts';
import { createServerTlsContext } from '../tls/server-tls-context.ts';

/** What the server side of one throw-away handshake read from OpenSSL. */
interface Verdict {
  readonly handleReadable: boolean;
  readonly error: string | undefined;
}

function unavailable(why: string): GatewayError {
  return new GatewayError(
    'EGW_TLS_VERIFY_RESULT_UNAVAILABLE',
    `OpenSSL's verify result is not readable on Node ${process.version}: ${why}. The identity stage reads it through the private TLSSocket._handle.verifyError() and requires it; refusing to start without it`,
  );
}

/** One handshake on loopback through the data path's own acceptTls and opensslVerifyError. */
async function handshake(
  server: Server,
  context: SecureContext,
  client: IssuedCertificate,
  timeoutMs: number,
): Promise<Verdict> {
  const serverSide = new Promise<Verdict>((resolve, reject) => {
    server.once('connection', (raw) => {
      raw.on('error', () => {});
      acceptTls(raw, context, timeoutMs).then((tls: TLSSocket) => {
        const handle = (tls as unknown as { _handle?: { verifyError?: unknown } })._handle;
        resolve({ handleReadable: typeof handle?.verifyError === 'function', error: opensslVerifyError(tls) });
        tls.destroy();
      }, reject);
    });
  });
  const address = server.address() as { port: number };
  const socket = connect({
    host: '127.0.0.1',
    port: address.port,
    cert: client.certPem,
    key: await exportPrivateKeyPem(client.keys.privateKey),
    rejectUnauthorized: false,
  });
  socket.on('error', () => {});
  try {
    return await serverSide;
  } finally {
    socket.destroy();
  }
}

/**
 * Start-up self-check (issue 10 item 6): on a throw-away TLS pair over loopback, a client from an
 * unknown CA must produce an OpenSSL verify error and one from the trusted CA must not. If a Node
 * upgrade makes the private handle return nothing, the required second verdict would silently vanish:
 * this throws EGW_TLS_VERIFY_RESULT_UNAVAILABLE instead. Costs three P-256 keys and two handshakes.
 */
export async function checkVerifyResultReadable(timeoutMs = 5_000): Promise<void> {
  const ca = await createRootCa({ commonName: 'egw verify-result canary CA' });
  const stranger = await createRootCa({ commonName: 'egw verify-result canary stranger' });
  const serverLeaf = await issueLeaf(ca, { dnsNames: ['localhost'] });
  const spiffeIds = ['spiffe://canary.invalid/canary'];
  const trusted = await issueLeaf(ca, { spiffeIds });
  const untrusted = await issueLeaf(stranger, { spiffeIds });
  const context = createServerTlsContext({
    certPem: serverLeaf.certPem,
    keyPem: await exportPrivateKeyPem(serverLeaf.keys.privateKey),
    anchorsPem: ca.certPem,
  });
  const server = createServer();
  // exclusive: in a cluster worker a plain listen(0) is shared through the primary, which hands the
  // canary's connection to whichever worker listens on that key and counts it as a listener bound.
  await new Promise<void>((resolve, reject) =>
    server.once('error', reject).listen({ port: 0, host: '127.0.0.1', exclusive: true }, resolve),
  );
  try {
    const good = await handshake(server, context, trusted, timeoutMs);
    const bad = await handshake(server, context, untrusted, timeoutMs);
    if (!good.handleReadable || !bad.handleReadable)
      throw unavailable('TLSSocket._handle.verifyError is not a function');
    if (good.error !== undefined) throw unavailable(`a chain from the trusted CA was reported as ${good.error}`);
    if (bad.error === undefined) throw unavailable('a chain from an unknown CA was reported as valid');
  } finally {
    server.close();
  }
}
