import { constants } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { GatewayError } from '../core/errors.ts';
import { processTicketKeys, sessionIdContextFor, type TicketKeyRing } from './ticket-keys.ts';

/**
 * OpenSSL 3.2+'s option (1 << 33; Node does not export it): never accept an RFC 8879
 * CompressedCertificate. Node's OpenSSL is built without compression today, so this only keeps
 * that true if a later build enables it. OpenSSL before 3.2 ignores the unknown bit.
 */
const SSL_OP_NO_RX_CERTIFICATE_COMPRESSION = 2 ** 33;

export interface ServerTlsMaterial {
  /** The gateway's own SVID chain, leaf first. */
  readonly certPem: string;
  readonly keyPem: string;
  /** Trust anchors for client certificates; any of them may be an intermediate. */
  readonly anchorsPem: string;
  readonly minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

/**
 * Builds the server-side SecureContext. `allowPartialTrustChain` lets OpenSSL accept a chain that
 * ends at an intermediate anchor; it only takes effect on a hand-built TLSSocket, because
 * tls.Server rebuilds its context without that flag (docs/design.md). Both verdicts are required:
 * identity/verify-chain.ts decides the path and SVID rules, and OpenSSL's own result must agree.
 */
export function createServerTlsContext(
  material: ServerTlsMaterial,
  tickets: TicketKeyRing = processTicketKeys(),
): SecureContext {
  let context: SecureContext;
  try {
    context = createSecureContext({
      cert: material.certPem,
      key: material.keyPem,
      ca: material.anchorsPem,
      allowPartialTrustChain: true,
      minVersion: material.minVersion ?? 'TLSv1.2',
      // Session tickets (TLS 1.2 and 1.3) are on: a resumed session still carries the peer's leaf,
      // and the identity stage re-verifies it against the current anchors on every connection
      // (tls/resumed-chains.ts supplies the intermediates). The id context ties a session to
      // these anchors; the lifetime is one ticket-key rotation period.
      sessionIdContext: sessionIdContextFor(material.anchorsPem),
      sessionTimeout: tickets.lifetimeSeconds,
      // No renegotiation: on a hand-built TLSSocket Node enforces neither its renegotiation
      // limit nor disableRenegotiation(), and a renegotiated handshake could swap the client
      // certificate after the identity stage judged it. Only the context option refuses it.
      // No certificate compression received either (tls/accept-tls.ts bounds certificate sizes by
      // the bytes the client sent, which only holds for uncompressed certificates).
      secureOptions: constants.SSL_OP_NO_RENEGOTIATION + SSL_OP_NO_RX_CERTIFICATE_COMPRESSION,
    } as Parameters<typeof createSecureContext>[0]);
  } catch (cause) {
    throw new GatewayError(
      'EGW_PKI_FILE',
      `gateway certificate/key/trust anchors are not usable: ${(cause as Error).message}`,
      { cause },
    );
  }
  tickets.install(context);
  return context;
}
