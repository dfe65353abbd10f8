import type { X509Certificate } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';

/**
 * What one unauthenticated client may make the verifier hold and compute. Checked on the DER
 * lengths before any ASN.1 parse of ours and before any signature check: until the chain is
 * validated the peer is anonymous, and everything it sends is attacker-controlled.
 */
export interface ChainLimits {
  /** Largest DER certificate accepted (bytes). A mesh SVID is 1–2 KB, an RSA-8192 CA about 2.5 KB. */
  readonly maxCertificateBytes: number;
  /** Certificates the client may send, leaf included. */
  readonly maxChainCertificates: number;
  /** Sum of the DER lengths of all certificates the client sent. */
  readonly maxChainBytes: number;
  /**
   * Signature-check work one connection may cost, in units of one ECDSA P-256 (≈ RSA-2048)
   * verification; an RSA-8192 check costs 16 (see key-policy.ts). Path building is a search a
   * client can make explode with look-alike CAs, on the event loop, before any identity is known.
   */
  readonly verifyWorkBudget: number;
}

export const DEFAULT_CHAIN_LIMITS: ChainLimits = Object.freeze({
  maxCertificateBytes: 16_384,
  maxChainCertificates: 9,
  maxChainBytes: 65_536,
  verifyWorkBudget: 32,
});

/** DER bytes as TLS delivered them, or an already built certificate (tests, CLI). */
export type PresentedCertificate = Buffer | X509Certificate;

/** Refuses a presented chain (leaf first) that breaks a size or count limit. Reads only lengths. */
export function checkChainSize(presented: readonly PresentedCertificate[], limits: ChainLimits): void {
  if (presented.length > limits.maxChainCertificates) {
    throw new GatewayError(
      'EGW_IDENTITY_CHAIN_TOO_LARGE',
      `the client sent ${presented.length} certificates; at most ${limits.maxChainCertificates} are accepted`,
    );
  }
  let total = 0;
  for (const [index, cert] of presented.entries()) {
    const bytes = Buffer.isBuffer(cert) ? cert.length : cert.raw.length;
    if (bytes > limits.maxCertificateBytes) {
      throw new GatewayError(
        'EGW_IDENTITY_CHAIN_TOO_LARGE',
        `certificate #${index + 1} is ${bytes} bytes; at most ${limits.maxCertificateBytes} are accepted`,
      );
    }
    total += bytes;
  }
  if (total > limits.maxChainBytes) {
    throw new GatewayError(
      'EGW_IDENTITY_CHAIN_TOO_LARGE',
      `the client chain is ${total} bytes; at most ${limits.maxChainBytes} are accepted`,
    );
  }
}
