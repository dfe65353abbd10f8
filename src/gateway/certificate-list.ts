import { allBundles } from '../identity/trust-bundle.ts';
import type { GatewayState } from '../proxy/gateway-state.ts';

/** A certificate whose expiry makes the replica unready and is exported as a metric. */
export interface WatchedCertificate {
  readonly role: 'gateway' | 'anchor';
  /** The metric label: the gateway's SPIFFE ID (or subject), an anchor's subject. */
  readonly subject: string;
  /** How readiness names it. */
  readonly label: string;
  readonly notAfter: Date;
}

/**
 * The gateway's own leaf and every trust anchor of every trust domain (federated ones too), from
 * one state: readiness and metrics read the same list. A federated anchor's subject carries its
 * trust domain, so two domains' CAs of the same name stay two metric series.
 */
export function watchedCertificates(state: GatewayState): WatchedCertificate[] {
  const leaf = state.serverCertificate;
  const own = state.trustBundle.trustDomain;
  return [
    { role: 'gateway', subject: leaf.uris[0] ?? leaf.subject, label: 'gateway certificate', notAfter: leaf.notAfter },
    ...allBundles(state.trustBundle).flatMap((bundle) =>
      bundle.anchors.map((anchor) => {
        const of = bundle.trustDomain === own ? '' : ` (trust domain ${bundle.trustDomain})`;
        return {
          role: 'anchor' as const,
          subject: `${anchor.subject}${of}`,
          label: `trust anchor "${anchor.subject}"${of}`,
          notAfter: anchor.notAfter,
        };
      }),
    ),
  ];
}

/** Seconds left per certificate (negative once expired), for `egw_certificate_expiry_seconds`. */
export function secondsUntilExpiry(
  certificates: readonly WatchedCertificate[],
  nowMs: number,
): Array<{ role: 'gateway' | 'anchor'; subject: string; secondsLeft: number }> {
  return certificates.map((c) => ({
    role: c.role,
    subject: c.subject,
    secondsLeft: (c.notAfter.getTime() - nowMs) / 1000,
  }));
}
