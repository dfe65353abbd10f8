import { constants } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { GatewayError } from '../core/errors.ts';

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
 * tls.Server rebuilds its context without that flag (docs/design.md). OpenSSL's verdict is a
 * second opinion only: identity/verify-chain.ts is the gate.
 */
export function createServerTlsContext(material: ServerTlsMaterial): SecureContext {
  try {
    return createSecureContext({
      cert: material.certPem,
      key: material.keyPem,
      ca: material.anchorsPem,
      allowPartialTrustChain: true,
      minVersion: material.minVersion ?? 'TLSv1.2',
      // No session tickets: a resumed session carries no peer chain to re-verify, and the
      // verification here is ours, not OpenSSL's. Every connection presents its chain.
      // No renegotiation: on a hand-built TLSSocket Node enforces neither its renegotiation
      // limit nor disableRenegotiation(), and a renegotiated handshake could swap the client
      // certificate after the identity stage judged it. Only the context option refuses it.
      secureOptions: constants.SSL_OP_NO_TICKET | constants.SSL_OP_NO_RENEGOTIATION,
    } as Parameters<typeof createSecureContext>[0]);
  } catch (cause) {
    throw new GatewayError(
      'EGW_PKI_FILE',
      `gateway certificate/key/trust anchors are not usable: ${(cause as Error).message}`,
      { cause },
    );
  }
}
