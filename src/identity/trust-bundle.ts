import type { X509Certificate } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';
import { type CertificateFacts, certificateFacts, KeyUsage } from '../pki/certificate-facts.ts';
import { readCertificateBundle } from '../pki/pem-bundle.ts';
import { type ChainLimits, DEFAULT_CHAIN_LIMITS } from './chain-limits.ts';
import { verificationCost } from './key-policy.ts';
import { checkConstraintsEnforceable, checkCriticalExtensions } from './path-constraints.ts';
import type { RevocationState } from './revocation.ts';
import { parseTrustDomain } from './spiffe-id.ts';

/**
 * The X.509 authorities trusted for one trust domain. Every certificate in it is a full trust
 * anchor, whether it is a self-signed root or an intermediate: a mesh that hands out only its
 * signing intermediate (Istio `ca-cert.pem`) is served without its root.
 */
export interface TrustBundle {
  readonly trustDomain: string;
  readonly anchors: readonly CertificateFacts[];
  readonly source: string;
  /** Bounds on what a client's chain may cost to check (identity.limits); defaults when absent. */
  readonly limits?: ChainLimits;
  /** identity.crls / identity.crlRequired (see revocation.ts); absent means no revocation check. */
  readonly revocation?: RevocationState;
}

export function trustBundleFromCertificates(
  trustDomain: string,
  certs: readonly X509Certificate[],
  source: string,
  limits: ChainLimits = DEFAULT_CHAIN_LIMITS,
): TrustBundle {
  parseTrustDomain(trustDomain);
  const anchors = certs.map((cert, index) => {
    const facts = certificateFacts(cert);
    if (!facts.isCa) {
      throw new GatewayError(
        'EGW_PKI_FILE',
        `${source}: certificate #${index + 1} (${facts.subject || 'empty subject'}) is not a CA (basicConstraints cA is false)`,
      );
    }
    if (facts.keyUsage !== undefined && (facts.keyUsage & KeyUsage.keyCertSign) === 0) {
      throw new GatewayError(
        'EGW_PKI_FILE',
        `${source}: certificate #${index + 1} (${facts.subject}) lacks keyCertSign`,
      );
    }
    try {
      // The anchor's key verifies what clients send: the key policy bounds that cost too.
      verificationCost(cert.publicKey, `certificate #${index + 1} (${facts.subject})`);
      // An anchor every chain would be refused for is a configuration error, not a runtime one.
      checkCriticalExtensions(facts, `certificate #${index + 1}`);
      checkConstraintsEnforceable(facts);
    } catch (error) {
      throw new GatewayError('EGW_PKI_FILE', `${source}: ${(error as Error).message}`, { cause: error });
    }
    return facts;
  });
  return Object.freeze({ trustDomain, anchors: Object.freeze(anchors), source, limits: Object.freeze({ ...limits }) });
}

export function loadTrustBundle(trustDomain: string, path: string): TrustBundle {
  return trustBundleFromCertificates(trustDomain, readCertificateBundle(path), path);
}
