import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { type DetailedPeerCertificate, type SecureContext, TLSSocket } from 'node:tls';
import { GatewayError } from '../core/errors.ts';
import { markHandshakeDone } from '../listener/pre-handshake-gate.ts';
import { rememberChain, rememberedChain } from './resumed-chains.ts';

/**
 * Runs the server side of a TLS handshake on an accepted TCP socket and resolves once it is
 * secure. The socket is a hand-built TLSSocket (not tls.Server) so that the SecureContext's
 * `allowPartialTrustChain` applies: see docs/design.md. A client without a certificate is refused
 * by OpenSSL inside the handshake (`requestCert` + `rejectUnauthorized`); the chain itself is
 * judged afterwards by the identity stage, which the caller must run before using the socket.
 *
 * No ALPN is configured on purpose: with ALPN set and no overlap Node aborts the handshake, and
 * Istio sidecars offer `istio-peer-exchange`, which must never be selected. Selecting nothing is
 * always accepted by Envoy and curl.
 */
export function acceptTls(raw: Socket, context: SecureContext, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = new TLSSocket(raw, {
      isServer: true,
      secureContext: context,
      requestCert: true,
      rejectUnauthorized: true,
    });
    const timer = setTimeout(() => {
      fail(new GatewayError('EGW_TLS_HANDSHAKE_TIMEOUT', `TLS handshake did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    let settled = false;
    const fail = (error: GatewayError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('secure', onSecure);
      socket.destroy();
      raw.destroy();
      reject(error);
    };
    const onError = (error: NodeJS.ErrnoException) => {
      const noCert = /PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required/i.test(`${error.code} ${error.message}`);
      fail(
        noCert
          ? new GatewayError('EGW_IDENTITY_NO_CERT', 'client presented no certificate', { cause: error })
          : new GatewayError('EGW_TLS_HANDSHAKE', `TLS handshake failed: ${error.code ?? error.message}`, {
              cause: error,
            }),
      );
    };
    const onSecure = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.removeListener('end', closedEarly);
      raw.removeListener('close', closedEarly);
      socket.removeListener('end', closedEarly);
      socket.removeListener('error', onError);
      // From here the socket counts against the listener's maxConnections, not the pre-handshake budget.
      markHandshakeDone(raw);
      resolve(socket);
    };
    socket.once('error', onError);
    socket.once('secure', onSecure);
    // The listener allows half-open sockets, so a bare connect-and-close (a TCP health check)
    // shows up as 'end', not 'close': fail at once instead of waiting for the handshake timeout.
    const closedEarly = () => {
      if (!settled)
        fail(new GatewayError('EGW_TLS_HANDSHAKE', 'client closed the connection during the TLS handshake'));
    };
    raw.once('end', closedEarly);
    raw.once('close', closedEarly);
    // Once wrapped, the TLS layer reads the TCP handle itself: the EOF surfaces on the TLSSocket.
    socket.once('end', closedEarly);
  });
}

/** The leaf fingerprint of each chain presentedChain walked, so remembering it needs no second walk. */
const walkedLeaf = new WeakMap<TLSSocket, string>();

/**
 * The chain the peer sent, leaf first, as DER. Node links each certificate to its issuer among
 * the sent ones; unlinked extras are dropped. DER buffers, not X509Certificate objects: those pin
 * OpenSSL's parsed copy in native memory V8 does not see until a GC, so an anonymous client's
 * 95 KB junk certificates piled up (issue 9). So no X509Certificate is made before every
 * certificate is known to be at most `maxCertificateBytes`, and only then is the chain walked as
 * X509Certificate objects, whose linking (unlike getPeerCertificate's X509_check_issued) keeps a
 * non-CA issuer for the identity stage to name. On a resumed session OpenSSL kept only the leaf:
 * the intermediates remembered from the full handshake follow it (tls/resumed-chains.ts), to be
 * verified again like new.
 *
 * `receivedBytes` is what the client had sent when the handshake completed (the raw socket's
 * bytesRead). No certificate is larger than the bytes that carried it, so when they fit the bound
 * the sizes are known without reading them; otherwise they are read from getPeerCertificate(true)'s
 * plain DER copies, which costs ~180 µs per handshake (three certificates turned into objects).
 * This holds because the certificates arrive uncompressed: the server offers no RFC 8879
 * certificate compression (Node's OpenSSL is built without it; its CertificateRequest carries no
 * compress_certificate extension, and the context sets SSL_OP_NO_RX_CERTIFICATE_COMPRESSION in
 * case a later build has it), so a client may not send a CompressedCertificate.
 */
export function presentedChain(
  socket: TLSSocket,
  maxCertificateBytes = 16_384,
  receivedBytes = Number.POSITIVE_INFINITY,
): Buffer[] {
  if (socket.isSessionReused()) {
    const leaf = socket.getPeerX509Certificate();
    return leaf ? [leaf.raw, ...rememberedChain(leaf.fingerprint256)] : [];
  }
  if (receivedBytes > maxCertificateBytes) {
    const sizes = detailedChain(socket);
    if (sizes.some((der) => der.length > maxCertificateBytes)) return sizes;
  }
  const chain: Buffer[] = [];
  const seen = new Set<string>();
  let current: X509Certificate | undefined = socket.getPeerX509Certificate();
  if (current) walkedLeaf.set(socket, current.fingerprint256);
  while (current && !seen.has(current.fingerprint256)) {
    seen.add(current.fingerprint256);
    chain.push(current.raw);
    current = current.issuerCertificate;
  }
  return chain;
}

/** Plain DER copies of the peer chain as getPeerCertificate(true) links it (no native memory pinned). */
function detailedChain(socket: TLSSocket): Buffer[] {
  const sizes: Buffer[] = [];
  const seenDetailed = new Set<string>();
  let detailed: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (detailed?.raw && !seenDetailed.has(detailed.fingerprint256)) {
    seenDetailed.add(detailed.fingerprint256);
    sizes.push(detailed.raw);
    detailed = detailed.issuerCertificate;
  }
  return sizes;
}

/**
 * Called once the identity stage accepted `chain` (leaf first) on a full handshake, so that a
 * later resumption of this session can be verified on the same path again.
 */
export function rememberVerifiedChain(socket: TLSSocket, chain: readonly Buffer[]): void {
  if (socket.isSessionReused()) return;
  const leafFingerprint = walkedLeaf.get(socket) ?? socket.getPeerX509Certificate()?.fingerprint256;
  if (leafFingerprint) rememberChain(leafFingerprint, chain.slice(1));
}

/**
 * OpenSSL's verify result for this connection. tls.Server reads it through this same internal
 * handle; a hand-built TLSSocket leaves it unread. Required as well as our own check.
 */
export function opensslVerifyError(socket: TLSSocket): string | undefined {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })
    ._handle;
  const error = handle?.verifyError?.();
  return error ? (error.code ?? error.message) : undefined;
}
