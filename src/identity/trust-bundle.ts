import type { X509Certificate } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';
import { type CertificateFacts, certificateFacts, KeyUsage } from '../pki/certificate-facts.ts';
import { parseCertificateBundle, readCertificateBundle } from '../pki/pem-bundle.ts';
import { type ChainLimits, DEFAULT_CHAIN_LIMITS } from './chain-limits.ts';
import { verificationCost } from './key-policy.ts';
import { checkConstraintsEnforceable, checkCriticalExtensions } from './path-constraints.ts';
import type { RevocationState } from './revocation.ts';
import { looksLikeSpiffeBundle, parseSpiffeBundle } from './spiffe-bundle.ts';
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
  /**
   * The other trust domains this gateway accepts clients of (federation), by name. An SVID is
   * checked against the bundle of its own trust domain only: a partner CA never vouches for a
   * cluster identity, nor the cluster CA for a partner's.
   */
  readonly federated?: ReadonlyMap<string, TrustBundle>;
}

/** The bundle of `trustDomain`: this one or a federated one; undefined when it is not configured. */
export function bundleForDomain(bundle: TrustBundle, trustDomain: string): TrustBundle | undefined {
  return bundle.trustDomain === trustDomain ? bundle : bundle.federated?.get(trustDomain);
}

/** This bundle and every federated one, the gateway's own trust domain first. */
export function allBundles(bundle: TrustBundle): TrustBundle[] {
  return [bundle, ...(bundle.federated?.values() ?? [])];
}

/** Returns `own` with `federated` attached (each must be another trust domain, each named once). */
export function withFederated(own: TrustBundle, federated: readonly TrustBundle[]): TrustBundle {
  const byName = new Map<string, TrustBundle>();
  for (const bundle of federated) {
    if (bundle.trustDomain === own.trustDomain || byName.has(bundle.trustDomain))
      throw new GatewayError(
        'EGW_PKI_FILE',
        `${bundle.source}: trust domain ${bundle.trustDomain} has a bundle already`,
      );
    byName.set(bundle.trustDomain, bundle);
  }
  return Object.freeze({ ...own, federated: byName });
}

/** The CA certificates of a bundle file's text: PEM, or the SPIFFE bundle format (JSON). */
export function parseBundleText(text: string, source: string): X509Certificate[] {
  return looksLikeSpiffeBundle(text)
    ? [...parseSpiffeBundle(text, source).certificates]
    : parseCertificateBundle(text, source);
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
